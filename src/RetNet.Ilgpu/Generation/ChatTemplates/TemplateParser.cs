using System.Globalization;

namespace RetNet.Ilgpu.Generation.ChatTemplates;

/// <summary>
/// Reads <see cref="TemplateLexer"/>'s tokens into statements and expressions with jinja2's grammar and precedence:
/// conditional expressions, or, and, not, comparisons (chained), + -, ~, * / // %, **, unary - +, then primaries with
/// attribute, subscript, slice and call postfixes, filters (<c>|</c>) and tests (<c>is</c>).
/// </summary>
internal sealed class TemplateParser
{
    private static readonly HashSet<string> CompareOperators = ["==", "!=", "<", "<=", ">", ">="];

    // Deeper nesting than any real template, and shallow enough that recursion cannot exhaust the stack.
    private const int MaxNesting = 200;

    private int nesting;

    private readonly List<TemplateToken> tokens;
    private readonly Func<int, (int Line, int Column)> position;
    private int index;

    private TemplateParser(List<TemplateToken> tokens, Func<int, (int Line, int Column)> position)
    {
        this.tokens = tokens;
        this.position = position;
    }

    /// <summary>The statements of <paramref name="tokens"/>.</summary>
    internal static IReadOnlyList<Statement> Parse(List<TemplateToken> tokens,
        Func<int, (int Line, int Column)> position)
    {
        var parser = new TemplateParser(tokens, position);
        var (body, end) = parser.Body(inLoop: false, inMacro: false);
        if (end is not null)
            throw parser.Error($"Unexpected '{{% {end.Value.Value} %}}' with no block open.", end.Value.At);
        return body;
    }

    private TemplateToken Current => tokens[index];

    private ChatTemplateSyntaxException Error(string message, int at)
    {
        var (line, column) = position(at);
        return new ChatTemplateSyntaxException(message, line, column);
    }

    private TemplateToken Next() => tokens[index++];

    private bool IsOperator(string op) => Current.Kind == TokenKind.Operator && Current.Value == op;

    private bool IsName(string name) => Current.Kind == TokenKind.Name && Current.Value == name;

    private bool Accept(string op)
    {
        if (!IsOperator(op))
            return false;
        index++;
        return true;
    }

    private bool AcceptName(string name)
    {
        if (!IsName(name))
            return false;
        index++;
        return true;
    }

    private void Expect(string op)
    {
        if (!Accept(op))
            throw Error($"Expected '{op}' but found {Describe(Current)}.", Current.At);
    }

    private string ExpectName()
    {
        if (Current.Kind != TokenKind.Name)
            throw Error($"Expected a name but found {Describe(Current)}.", Current.At);
        return Next().Value;
    }

    private void ExpectStatementEnd()
    {
        if (Current.Kind != TokenKind.StatementEnd)
            throw Error($"Expected the end of the statement ('%}}') but found {Describe(Current)}.", Current.At);
        index++;
    }

    private static string Describe(TemplateToken token) => token.Kind switch
    {
        TokenKind.EndOfTemplate => "the end of the template",
        TokenKind.StatementEnd => "'%}'",
        TokenKind.OutputEnd => "'}}'",
        TokenKind.Text => "text",
        TokenKind.String => $"the string '{token.Value}'",
        _ => $"'{token.Value}'",
    };

    // A body ends at the end of the template (end = null) or at a statement whose keyword the caller handles
    // (elif, else, endif, endfor, ...), which is left unconsumed after its '{%'.
    private (List<Statement> Body, TemplateToken? End) Body(bool inLoop, bool inMacro)
    {
        var body = new List<Statement>();
        while (true)
        {
            var token = Current;
            switch (token.Kind)
            {
                case TokenKind.EndOfTemplate:
                    return (body, null);
                case TokenKind.Text:
                    index++;
                    body.Add(new TextStatement(token.Value, token.At));
                    break;
                case TokenKind.OutputBegin:
                    index++;
                    var value = Expression();
                    if (Current.Kind != TokenKind.OutputEnd)
                        throw Error($"Expected '}}}}' but found {Describe(Current)}.", Current.At);
                    index++;
                    body.Add(new OutputStatement(value, token.At));
                    break;
                case TokenKind.StatementBegin:
                    index++;
                    var keyword = Current;
                    if (keyword.Kind != TokenKind.Name)
                        throw Error($"Expected a statement keyword but found {Describe(keyword)}.", keyword.At);
                    if (keyword.Value is "elif" or "else" or "endif" or "endfor" or "endmacro" or "endset"
                        or "endgeneration")
                        return (body, keyword);
                    index++;
                    body.Add(Nested(() => Statement(keyword, inLoop, inMacro)));
                    break;
                default:
                    throw Error($"Unexpected {Describe(token)}.", token.At);
            }
        }
    }

    private Statement Statement(TemplateToken keyword, bool inLoop, bool inMacro)
    {
        switch (keyword.Value)
        {
            case "if":
                return If(keyword, inLoop, inMacro);
            case "for":
                return For(keyword, inMacro);
            case "set":
                return Set(keyword, inLoop, inMacro);
            case "macro":
                return Macro(keyword, inLoop);
            case "generation":
                ExpectStatementEnd();
                var (body, _) = Closed(keyword, ["endgeneration"], inLoop, inMacro);
                return new BlockStatement(body, keyword.At);
            case "break" or "continue":
                if (!inLoop)
                    throw Error($"'{keyword.Value}' outside a for loop.", keyword.At);
                ExpectStatementEnd();
                return keyword.Value == "break" ? new BreakStatement(keyword.At) : new ContinueStatement(keyword.At);
            default:
                throw Error($"Unknown or unsupported statement '{keyword.Value}'.", keyword.At);
        }
    }

    // The body up to one of the keywords in ends, consuming that keyword (not its '%}').
    private (List<Statement> Body, string End) Closed(TemplateToken opener, string[] ends, bool inLoop, bool inMacro)
    {
        var (body, end) = Body(inLoop, inMacro);
        if (end is null)
        {
            throw Error($"'{{% {opener.Value} %}}' is not closed: expected '{{% {ends[^1]} %}}' before the end of " +
                        "the template.", opener.At);
        }
        if (!ends.Contains(end.Value.Value))
            throw Error($"Unexpected '{{% {end.Value.Value} %}}' inside '{{% {opener.Value} %}}'.", end.Value.At);
        index++;
        return (body, end.Value.Value);
    }

    private IfStatement If(TemplateToken keyword, bool inLoop, bool inMacro)
    {
        var branches = new List<(Expression, IReadOnlyList<Statement>)>();
        var test = Expression();
        ExpectStatementEnd();
        while (true)
        {
            var (body, end) = Closed(keyword, ["elif", "else", "endif"], inLoop, inMacro);
            branches.Add((test, body));
            if (end == "endif")
            {
                ExpectStatementEnd();
                return new IfStatement(branches, [], keyword.At);
            }
            if (end == "else")
            {
                ExpectStatementEnd();
                var (otherwise, _) = Closed(keyword, ["endif"], inLoop, inMacro);
                ExpectStatementEnd();
                return new IfStatement(branches, otherwise, keyword.At);
            }
            test = Expression();
            ExpectStatementEnd();
        }
    }

    private ForStatement For(TemplateToken keyword, bool inMacro)
    {
        var targets = new List<string> { ExpectName() };
        while (Accept(","))
            targets.Add(ExpectName());
        if (!AcceptName("in"))
            throw Error($"Expected 'in' but found {Describe(Current)}.", Current.At);
        var iterable = Or(allowConditional: false);
        var filter = AcceptName("if") ? Expression() : null;
        if (IsName("recursive"))
            throw Error("Recursive for loops are not supported.", Current.At);
        ExpectStatementEnd();
        var (body, end) = Closed(keyword, ["else", "endfor"], inLoop: true, inMacro);
        List<Statement> otherwise = [];
        if (end == "else")
        {
            ExpectStatementEnd();
            (otherwise, _) = Closed(keyword, ["endfor"], inLoop: false, inMacro);
        }
        ExpectStatementEnd();
        return new ForStatement(targets, iterable, filter, body, otherwise, keyword.At);
    }

    private SetStatement Set(TemplateToken keyword, bool inLoop, bool inMacro)
    {
        var targets = new List<string> { ExpectName() };
        string? attribute = null;
        if (Accept("."))
            attribute = ExpectName();
        else
            while (Accept(","))
                targets.Add(ExpectName());
        if (attribute is null && targets.Count == 1 && Current.Kind == TokenKind.StatementEnd)
        {
            ExpectStatementEnd();
            var (body, _) = Closed(keyword, ["endset"], inLoop, inMacro);
            ExpectStatementEnd();
            return new SetStatement(targets, null, null, body, keyword.At);
        }
        Expect("=");
        var value = TupleOrExpression();
        ExpectStatementEnd();
        return new SetStatement(targets, attribute, value, null, keyword.At);
    }

    private MacroStatement Macro(TemplateToken keyword, bool inLoop)
    {
        var name = ExpectName();
        var parameters = new List<(string, Expression?)>();
        Expect("(");
        while (!Accept(")"))
        {
            if (parameters.Count > 0)
                Expect(",");
            if (Accept(")"))
                break;
            var parameter = ExpectName();
            parameters.Add((parameter, Accept("=") ? Expression() : null));
        }
        ExpectStatementEnd();
        var (body, _) = Closed(keyword, ["endmacro"], inLoop: false, inMacro: true);
        if (Current.Kind == TokenKind.Name && Current.Value == name)
            index++;
        ExpectStatementEnd();
        _ = inLoop;
        return new MacroStatement(name, parameters, body, keyword.At);
    }

    private Expression TupleOrExpression()
    {
        var first = Expression();
        if (!IsOperator(","))
            return first;
        var items = new List<Expression> { first };
        while (Accept(","))
        {
            if (Current.Kind is TokenKind.StatementEnd or TokenKind.OutputEnd)
                break;
            items.Add(Expression());
        }
        return new ListExpression(items, IsTuple: true, first.At);
    }

    private Expression Expression() => Nested(() => Or(allowConditional: true));

    private T Nested<T>(Func<T> parse)
    {
        if (++nesting > MaxNesting)
            throw Error($"The template nests expressions or statements more than {MaxNesting} deep.", Current.At);
        try
        {
            return parse();
        }
        finally
        {
            nesting--;
        }
    }

    private Expression Or(bool allowConditional)
    {
        var at = Current.At;
        var left = And();
        while (AcceptName("or"))
            left = new BinaryExpression("or", left, And(), at);
        if (allowConditional && IsName("if"))
        {
            index++;
            var test = Or(allowConditional: false);
            var otherwise = AcceptName("else") ? Or(allowConditional: true) : null;
            return new ConditionalExpression(test, left, otherwise, at);
        }
        return left;
    }

    private Expression And()
    {
        var at = Current.At;
        var left = Not();
        while (AcceptName("and"))
            left = new BinaryExpression("and", left, Not(), at);
        return left;
    }

    private Expression Not()
    {
        var at = Current.At;
        return AcceptName("not") ? new UnaryExpression("not", Nested(Not), at) : Compare();
    }

    private Expression Compare()
    {
        var at = Current.At;
        var first = Sum();
        var rest = new List<(string, Expression)>();
        while (true)
        {
            if (Current.Kind == TokenKind.Operator && CompareOperators.Contains(Current.Value))
                rest.Add((Next().Value, Sum()));
            else if (AcceptName("in"))
                rest.Add(("in", Sum()));
            else if (IsName("not") && tokens[index + 1] is { Kind: TokenKind.Name, Value: "in" })
            {
                index += 2;
                rest.Add(("not in", Sum()));
            }
            else
                break;
        }
        return rest.Count == 0 ? first : new CompareExpression(first, rest, at);
    }

    private Expression Sum()
    {
        var at = Current.At;
        var left = Concat();
        while (IsOperator("+") || IsOperator("-"))
            left = new BinaryExpression(Next().Value, left, Concat(), at);
        return left;
    }

    private Expression Concat()
    {
        var at = Current.At;
        var left = Product();
        while (Accept("~"))
            left = new BinaryExpression("~", left, Product(), at);
        return left;
    }

    private Expression Product()
    {
        var at = Current.At;
        var left = Power();
        while (IsOperator("*") || IsOperator("/") || IsOperator("//") || IsOperator("%"))
            left = new BinaryExpression(Next().Value, left, Power(), at);
        return left;
    }

    private Expression Power()
    {
        var at = Current.At;
        var left = Unary(withFilter: true);
        while (Accept("**"))
            left = new BinaryExpression("**", left, Unary(withFilter: true), at);
        return left;
    }

    private Expression Unary(bool withFilter)
    {
        var at = Current.At;
        Expression node;
        if (IsOperator("-") || IsOperator("+"))
        {
            var op = Next().Value;
            node = new UnaryExpression(op, Nested(() => Unary(withFilter: false)), at);
        }
        else
            node = Primary();
        node = Postfix(node);
        return withFilter ? FiltersAndTests(node) : node;
    }

    private Expression Primary()
    {
        var token = Next();
        switch (token.Kind)
        {
            case TokenKind.Name:
                return token.Value switch
                {
                    "true" or "True" => new LiteralExpression(true, token.At),
                    "false" or "False" => new LiteralExpression(false, token.At),
                    "none" or "None" => new LiteralExpression(null, token.At),
                    _ => new NameExpression(token.Value, token.At),
                };
            case TokenKind.String:
                var text = token.Value;
                while (Current.Kind == TokenKind.String)
                    text += Next().Value;
                return new LiteralExpression(text, token.At);
            case TokenKind.Integer:
                return long.TryParse(token.Value, NumberStyles.None, CultureInfo.InvariantCulture, out var integer)
                    ? new LiteralExpression(integer, token.At)
                    : throw Error($"The integer {token.Value} is too large.", token.At);
            case TokenKind.Float:
                return new LiteralExpression(double.Parse(token.Value, CultureInfo.InvariantCulture), token.At);
            case TokenKind.Operator when token.Value == "(":
                if (Accept(")"))
                    return new ListExpression([], IsTuple: true, token.At);
                var first = Expression();
                if (Accept(")"))
                    return first;
                var items = new List<Expression> { first };
                while (Accept(","))
                {
                    if (IsOperator(")"))
                        break;
                    items.Add(Expression());
                }
                Expect(")");
                return new ListExpression(items, IsTuple: true, token.At);
            case TokenKind.Operator when token.Value == "[":
                var list = new List<Expression>();
                while (!Accept("]"))
                {
                    if (list.Count > 0)
                    {
                        Expect(",");
                        if (Accept("]"))
                            break;
                    }
                    list.Add(Expression());
                }
                return new ListExpression(list, IsTuple: false, token.At);
            case TokenKind.Operator when token.Value == "{":
                var pairs = new List<(Expression, Expression)>();
                while (!Accept("}"))
                {
                    if (pairs.Count > 0)
                    {
                        Expect(",");
                        if (Accept("}"))
                            break;
                    }
                    var key = Expression();
                    Expect(":");
                    pairs.Add((key, Expression()));
                }
                return new DictExpression(pairs, token.At);
            default:
                throw Error($"Expected an expression but found {Describe(token)}.", token.At);
        }
    }

    private Expression Postfix(Expression node)
    {
        while (true)
        {
            var at = Current.At;
            if (Accept("."))
            {
                if (Current.Kind == TokenKind.Integer)
                    node = new ItemExpression(node, new LiteralExpression(long.Parse(Next().Value,
                        CultureInfo.InvariantCulture), at), at);
                else
                    node = new AttributeExpression(node, ExpectName(), at);
            }
            else if (Accept("["))
                node = Subscript(node, at);
            else if (IsOperator("("))
                node = new CallExpression(node, CallArguments(), at);
            else
                return node;
        }
    }

    private Expression Subscript(Expression target, int at)
    {
        Expression? start = null;
        if (!IsOperator(":"))
        {
            start = Expression();
            if (Accept("]"))
                return new ItemExpression(target, start, at);
        }
        Expect(":");
        var stop = IsOperator(":") || IsOperator("]") ? null : Expression();
        Expression? step = null;
        if (Accept(":") && !IsOperator("]"))
            step = Expression();
        Expect("]");
        return new SliceExpression(target, start, stop, step, at);
    }

    private Arguments CallArguments()
    {
        Expect("(");
        var positional = new List<Expression>();
        var named = new List<(string, Expression)>();
        while (!Accept(")"))
        {
            if (positional.Count + named.Count > 0)
            {
                Expect(",");
                if (Accept(")"))
                    break;
            }
            if (Current.Kind == TokenKind.Name && tokens[index + 1] is { Kind: TokenKind.Operator, Value: "=" })
            {
                var name = Next().Value;
                index++;
                named.Add((name, Expression()));
            }
            else if (named.Count > 0)
                throw Error("A positional argument follows a keyword argument.", Current.At);
            else
                positional.Add(Expression());
        }
        return new Arguments(positional, named);
    }

    private Expression FiltersAndTests(Expression node)
    {
        while (true)
        {
            var at = Current.At;
            if (Accept("|"))
            {
                var name = ExpectName();
                var arguments = IsOperator("(") ? CallArguments() : Arguments.None;
                node = new FilterExpression(node, name, arguments, at);
            }
            else if (AcceptName("is"))
            {
                var negated = AcceptName("not");
                var name = ExpectName();
                Arguments arguments;
                if (IsOperator("("))
                    arguments = CallArguments();
                else if (Current.Kind is TokenKind.Name or TokenKind.String or TokenKind.Integer or TokenKind.Float
                         && Current.Value is not ("else" or "or" or "and" or "is" or "if" or "in" or "not")
                         || IsOperator("[") || IsOperator("{"))
                    arguments = new Arguments([Postfix(Primary())], []);
                else
                    arguments = Arguments.None;
                node = new TestExpression(node, name, arguments, negated, at);
            }
            else if (IsOperator("("))
                node = new CallExpression(node, CallArguments(), at);
            else
                return node;
        }
    }
}
