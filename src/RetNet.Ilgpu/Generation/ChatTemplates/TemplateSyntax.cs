namespace RetNet.Ilgpu.Generation.ChatTemplates;

/// <summary>A statement of a parsed template; <see cref="At"/> is its offset in the source, for error positions.</summary>
internal abstract record Statement(int At);

internal sealed record TextStatement(string Text, int At) : Statement(At);

internal sealed record OutputStatement(Expression Value, int At) : Statement(At);

internal sealed record IfStatement(IReadOnlyList<(Expression Test, IReadOnlyList<Statement> Body)> Branches,
    IReadOnlyList<Statement> Else, int At) : Statement(At);

internal sealed record ForStatement(IReadOnlyList<string> Targets, Expression Iterable, Expression? Filter,
    IReadOnlyList<Statement> Body, IReadOnlyList<Statement> Else, int At) : Statement(At);

/// <summary><c>{% set name = value %}</c>, <c>{% set a, b = value %}</c>, or with <see cref="Attribute"/>
/// <c>{% set ns.attr = value %}</c>; a block set (<c>{% set name %}…{% endset %}</c>) has a <see cref="Body"/>.</summary>
internal sealed record SetStatement(IReadOnlyList<string> Targets, string? Attribute, Expression? Value,
    IReadOnlyList<Statement>? Body, int At) : Statement(At);

internal sealed record MacroStatement(string Name, IReadOnlyList<(string Name, Expression? Default)> Parameters,
    IReadOnlyList<Statement> Body, int At) : Statement(At);

/// <summary>A body rendered as is: transformers' <c>{% generation %}</c> block, which only marks assistant text.
/// </summary>
internal sealed record BlockStatement(IReadOnlyList<Statement> Body, int At) : Statement(At);

internal sealed record BreakStatement(int At) : Statement(At);

internal sealed record ContinueStatement(int At) : Statement(At);

/// <summary>An expression of a parsed template.</summary>
internal abstract record Expression(int At);

internal sealed record LiteralExpression(object? Value, int At) : Expression(At);

internal sealed record NameExpression(string Name, int At) : Expression(At);

internal sealed record ListExpression(IReadOnlyList<Expression> Items, bool IsTuple, int At) : Expression(At);

internal sealed record DictExpression(IReadOnlyList<(Expression Key, Expression Value)> Items, int At)
    : Expression(At);

internal sealed record AttributeExpression(Expression Target, string Name, int At) : Expression(At);

internal sealed record ItemExpression(Expression Target, Expression Index, int At) : Expression(At);

internal sealed record SliceExpression(Expression Target, Expression? Start, Expression? Stop, Expression? Step,
    int At) : Expression(At);

internal sealed record Arguments(IReadOnlyList<Expression> Positional,
    IReadOnlyList<(string Name, Expression Value)> Named)
{
    public static Arguments None { get; } = new([], []);
}

internal sealed record CallExpression(Expression Callee, Arguments Arguments, int At) : Expression(At);

internal sealed record FilterExpression(Expression Value, string Name, Arguments Arguments, int At) : Expression(At);

internal sealed record TestExpression(Expression Value, string Name, Arguments Arguments, bool Negated, int At)
    : Expression(At);

internal sealed record UnaryExpression(string Operator, Expression Operand, int At) : Expression(At);

internal sealed record BinaryExpression(string Operator, Expression Left, Expression Right, int At) : Expression(At);

internal sealed record CompareExpression(Expression First, IReadOnlyList<(string Operator, Expression Operand)> Rest,
    int At) : Expression(At);

internal sealed record ConditionalExpression(Expression Test, Expression Then, Expression? Else, int At)
    : Expression(At);
