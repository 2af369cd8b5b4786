using System.Globalization;
using System.Text;

namespace RetNet.Ilgpu.Generation.ChatTemplates;

/// <summary>
/// Runs a parsed template over a context with jinja2's semantics (as transformers configures it): Python's values
/// (None, bool, int, float, str, list, tuple, dict), jinja2's default Undefined, loop scoping (a variable set inside a
/// loop body is gone after the iteration; <c>namespace</c> carries values out), the filters, tests and methods that
/// chat templates use. Every loop iteration and macro call counts against <see cref="TemplateLimits.MaxSteps"/>, and
/// output and built strings against <see cref="TemplateLimits.MaxOutputChars"/>.
/// </summary>
internal sealed partial class TemplateRenderer
{
    private readonly StringBuilder output = new();
    private readonly TemplateLimits limits;
    private readonly Func<int, (int Line, int Column)> position;
    private readonly Func<DateTime> clock;
    private int steps;
    private int depth;

    private TemplateRenderer(TemplateLimits limits, Func<int, (int Line, int Column)> position, Func<DateTime> clock)
    {
        this.limits = limits;
        this.position = position;
        this.clock = clock;
    }

    private enum Flow
    {
        Normal,
        Break,
        Continue,
    }

    /// <summary>The text <paramref name="body"/> renders to over <paramref name="context"/>.</summary>
    internal static string Render(IReadOnlyList<Statement> body, IReadOnlyDictionary<string, object?> context,
        TemplateLimits limits, Func<int, (int Line, int Column)> position, Func<DateTime> clock)
    {
        var renderer = new TemplateRenderer(limits, position, clock);
        var globals = new Scope(null);
        renderer.AddGlobals(globals);
        var scope = new Scope(globals);
        foreach (var (name, value) in context)
            scope.Set(name, value);
        renderer.Run(body, new Scope(scope), renderer.output);
        return renderer.output.ToString();
    }

    private ChatTemplateRenderException Error(string message, int at)
    {
        var (line, column) = position(at);
        return new ChatTemplateRenderException(message, line, column);
    }

    private void Step(int at)
    {
        if (++steps > limits.MaxSteps)
            throw Error($"The template took more than {limits.MaxSteps} loop iterations and macro calls; it is " +
                        "stopped as a runaway.", at);
    }

    private string Checked(string text, int at) => text.Length <= limits.MaxOutputChars
        ? text
        : throw Error($"The template built a string of more than {limits.MaxOutputChars} characters.", at);

    private void Write(StringBuilder target, string text, int at)
    {
        if (target.Length + text.Length > limits.MaxOutputChars)
            throw Error($"The template's output is longer than {limits.MaxOutputChars} characters.", at);
        target.Append(text);
    }

    private Flow Run(IReadOnlyList<Statement> body, Scope scope, StringBuilder target)
    {
        foreach (var statement in body)
        {
            var flow = Run(statement, scope, target);
            if (flow != Flow.Normal)
                return flow;
        }
        return Flow.Normal;
    }

    private Flow Run(Statement statement, Scope scope, StringBuilder target)
    {
        switch (statement)
        {
            case TextStatement text:
                Write(target, text.Text, text.At);
                return Flow.Normal;
            case OutputStatement o:
                Write(target, PyText.Str(Evaluate(o.Value, scope)), o.At);
                return Flow.Normal;
            case IfStatement i:
                foreach (var (test, branch) in i.Branches)
                    if (Truthy(Evaluate(test, scope)))
                        return Run(branch, scope, target);
                return Run(i.Else, scope, target);
            case ForStatement f:
                return For(f, scope, target);
            case SetStatement s:
                Set(s, scope);
                return Flow.Normal;
            case MacroStatement m:
                scope.Set(m.Name, new TemplateMacro(m, scope));
                return Flow.Normal;
            case BlockStatement b:
                return Run(b.Body, scope, target);
            case BreakStatement:
                return Flow.Break;
            case ContinueStatement:
                return Flow.Continue;
            default:
                throw Error($"Unknown statement {statement.GetType().Name}.", statement.At);
        }
    }

    private Flow For(ForStatement f, Scope scope, StringBuilder target)
    {
        var items = Iterate(Evaluate(f.Iterable, scope), f.Iterable.At).ToList();
        if (f.Filter is not null)
            items = items.Where(item =>
            {
                Step(f.At);
                var filterScope = new Scope(scope);
                Bind(f.Targets, item, filterScope, f.At);
                return Truthy(Evaluate(f.Filter, filterScope));
            }).ToList();
        if (items.Count == 0)
            return Run(f.Else, scope, target);
        var loop = new LoopState(items);
        for (var i = 0; i < items.Count; i++)
        {
            Step(f.At);
            loop.Index0 = i;
            var iteration = new Scope(scope);
            iteration.Set("loop", loop);
            Bind(f.Targets, items[i], iteration, f.At);
            if (Run(f.Body, iteration, target) == Flow.Break)
                break;
        }
        return Flow.Normal;
    }

    private void Bind(IReadOnlyList<string> targets, object? value, Scope scope, int at)
    {
        if (targets.Count == 1)
        {
            scope.Set(targets[0], value);
            return;
        }
        var parts = Iterate(value, at).ToList();
        if (parts.Count != targets.Count)
            throw Error($"Cannot unpack {parts.Count} values into {targets.Count} names.", at);
        for (var i = 0; i < targets.Count; i++)
            scope.Set(targets[i], parts[i]);
    }

    private void Set(SetStatement s, Scope scope)
    {
        object? value;
        if (s.Body is not null)
        {
            var text = new StringBuilder();
            Run(s.Body, new Scope(scope), text);
            value = text.ToString();
        }
        else
            value = Evaluate(s.Value!, scope);
        if (s.Attribute is not null)
        {
            if (!scope.TryGet(s.Targets[0], out var target) || target is not TemplateNamespace ns)
                throw Error($"Cannot assign attribute '{s.Attribute}' of '{s.Targets[0]}': only a namespace's " +
                            "attributes can be set.", s.At);
            ns.Attributes[s.Attribute] = value;
            return;
        }
        Bind(s.Targets, value, scope, s.At);
    }

    /// <summary>Python's truth value, with Undefined false.</summary>
    internal static bool Truthy(object? value) => value switch
    {
        null or Undefined => false,
        bool b => b,
        long l => l != 0,
        double d => d != 0,
        string s => s.Length > 0,
        List<object?> list => list.Count > 0,
        object?[] tuple => tuple.Length > 0,
        Dictionary<object, object?> dict => dict.Count > 0,
        _ => true,
    };

    /// <summary>The items of a value a for loop or filter walks: a list's or tuple's items, a dict's keys, a string's
    /// characters, nothing for Undefined.</summary>
    private IEnumerable<object?> Iterate(object? value, int at) => value switch
    {
        Undefined => [],
        List<object?> list => list,
        object?[] tuple => tuple,
        Dictionary<object, object?> dict => dict.Keys,
        string s => StringElements(s),
        _ => throw Error($"'{TypeName(value)}' object is not iterable.", at),
    };

    private static IEnumerable<object?> StringElements(string s)
    {
        for (var i = 0; i < s.Length; i++)
        {
            if (char.IsHighSurrogate(s[i]) && i + 1 < s.Length && char.IsLowSurrogate(s[i + 1]))
            {
                yield return s.Substring(i, 2);
                i++;
            }
            else
                yield return s[i].ToString();
        }
    }

    internal static string TypeName(object? value) => value switch
    {
        null => "NoneType",
        bool => "bool",
        long => "int",
        double => "float",
        string => "str",
        List<object?> => "list",
        object?[] => "tuple",
        Dictionary<object, object?> => "dict",
        Undefined => "Undefined",
        TemplateNamespace => "Namespace",
        LoopState => "LoopContext",
        TemplateMacro or TemplateFunction => "function",
        _ => value.GetType().Name,
    };

    private object? Evaluate(Expression expression, Scope scope)
    {
        switch (expression)
        {
            case LiteralExpression l:
                return l.Value;
            case NameExpression n:
                return scope.TryGet(n.Name, out var value) ? value : new Undefined($"'{n.Name}' is undefined");
            case ListExpression list:
                var items = list.Items.Select(i => Evaluate(i, scope)).ToList();
                return list.IsTuple ? items.ToArray() : items;
            case DictExpression d:
                var dict = new Dictionary<object, object?>();
                foreach (var (k, v) in d.Items)
                    dict[Key(Evaluate(k, scope), k.At)] = Evaluate(v, scope);
                return dict;
            case AttributeExpression a:
                return Attribute(Evaluate(a.Target, scope), a.Name, a.At);
            case ItemExpression i:
                return Item(Evaluate(i.Target, scope), Evaluate(i.Index, scope), i.At);
            case SliceExpression s:
                return Slice(Evaluate(s.Target, scope), s.Start is null ? null : Evaluate(s.Start, scope),
                    s.Stop is null ? null : Evaluate(s.Stop, scope), s.Step is null ? null : Evaluate(s.Step, scope),
                    s.At);
            case CallExpression c:
                return Call(c, scope);
            case FilterExpression f:
                return Filter(f, scope);
            case TestExpression t:
                return Test(t, scope) != t.Negated;
            case UnaryExpression u:
                var operand = Evaluate(u.Operand, scope);
                return u.Operator switch
                {
                    "not" => !Truthy(operand),
                    "-" => Arithmetic("-", 0L, operand, u.At),
                    _ => Arithmetic("+", 0L, operand, u.At),
                };
            case BinaryExpression b:
                return Binary(b, scope);
            case CompareExpression c:
                var left = Evaluate(c.First, scope);
                foreach (var (op, operandExpression) in c.Rest)
                {
                    var right = Evaluate(operandExpression, scope);
                    if (!Compare(op, left, right, c.At))
                        return false;
                    left = right;
                }
                return true;
            case ConditionalExpression c:
                return Truthy(Evaluate(c.Test, scope))
                    ? Evaluate(c.Then, scope)
                    : c.Else is null
                        ? new Undefined("the conditional expression has no else")
                        : Evaluate(c.Else, scope);
            default:
                throw Error($"Unknown expression {expression.GetType().Name}.", expression.At);
        }
    }

    private object Key(object? key, int at) => key switch
    {
        null or Undefined or List<object?> or Dictionary<object, object?> =>
            throw Error($"A dict key must be a string, number or boolean; got {TypeName(key)}.", at),
        double d when d == Math.Floor(d) && Math.Abs(d) < 1e18 => (long)d,
        _ => key,
    };

    private object? Binary(BinaryExpression b, Scope scope)
    {
        if (b.Operator == "and")
        {
            var left = Evaluate(b.Left, scope);
            return Truthy(left) ? Evaluate(b.Right, scope) : left;
        }
        if (b.Operator == "or")
        {
            var left = Evaluate(b.Left, scope);
            return Truthy(left) ? left : Evaluate(b.Right, scope);
        }
        var l = Evaluate(b.Left, scope);
        var r = Evaluate(b.Right, scope);
        if (b.Operator == "~")
            return Checked(PyText.Str(l) + PyText.Str(r), b.At);
        return Arithmetic(b.Operator, l, r, b.At);
    }

    private ChatTemplateRenderException UndefinedError(Undefined u, int at) => Error(u.Hint, at);

    private object? Arithmetic(string op, object? l, object? r, int at)
    {
        if (l is Undefined ul)
            throw UndefinedError(ul, at);
        if (r is Undefined ur)
            throw UndefinedError(ur, at);
        switch (op, l, r)
        {
            case ("+", string a, string c):
                return Checked(a + c, at);
            case ("+", List<object?> a, List<object?> c):
                if (a.Count + c.Count > limits.MaxOutputChars)
                    throw Error("The template built a list that is too long.", at);
                return a.Concat(c).ToList();
            case ("+", object?[] a, object?[] c):
                return a.Concat(c).ToArray();
            case ("*", string s, long n):
                return Repeat(s, n, at);
            case ("*", long n, string s):
                return Repeat(s, n, at);
            case ("*", List<object?> list, long n):
                if (list.Count * Math.Max(n, 0) > limits.MaxOutputChars)
                    throw Error("The template built a list that is too long.", at);
                return Enumerable.Repeat(list, (int)Math.Max(n, 0)).SelectMany(x => x).ToList();
            case ("%", string, _):
                throw Error("printf-style string formatting ('...' % values) is not supported.", at);
        }
        if (!IsNumber(l) || !IsNumber(r))
        {
            throw Error(op == "+" && l is string
                ? $"can only concatenate str (not \"{TypeName(r)}\") to str"
                : $"unsupported operand type(s) for {op}: '{TypeName(l)}' and '{TypeName(r)}'", at);
        }
        if (l is double || r is double || op == "/")
        {
            var a = ToDouble(l);
            var c = ToDouble(r);
            if (op is "/" or "//" or "%" && c == 0)
                throw Error("division by zero", at);
            return op switch
            {
                "+" => a + c,
                "-" => a - c,
                "*" => a * c,
                "/" => a / c,
                "//" => Math.Floor(a / c),
                "%" => a - c * Math.Floor(a / c),
                "**" => Math.Pow(a, c),
                _ => throw Error($"Unknown operator {op}.", at),
            };
        }
        var x = ToLong(l);
        var y = ToLong(r);
        try
        {
            checked
            {
                switch (op)
                {
                    case "+": return x + y;
                    case "-": return x - y;
                    case "*": return x * y;
                    case "//" or "%" when y == 0: throw Error("integer division or modulo by zero", at);
                    case "//": return FloorDiv(x, y);
                    case "%": return x - y * FloorDiv(x, y);
                    case "**":
                        if (y < 0)
                            return Math.Pow(x, y);
                        long result = 1;
                        for (var i = 0; i < y && result != 0; i++)
                        {
                            result *= x;
                            if (x is 1 or -1 && i > 1)
                                return y % 2 == 0 ? 1L : x;
                        }
                        return result;
                    default: throw Error($"Unknown operator {op}.", at);
                }
            }
        }
        catch (OverflowException)
        {
            throw Error("An integer result does not fit in 64 bits.", at);
        }
    }

    private static long FloorDiv(long x, long y)
    {
        var q = x / y;
        return (x % y != 0) && ((x < 0) != (y < 0)) ? q - 1 : q;
    }

    private string Repeat(string s, long n, int at)
    {
        if (n <= 0)
            return "";
        if (s.Length * n > limits.MaxOutputChars)
            throw Error($"The template built a string of more than {limits.MaxOutputChars} characters.", at);
        return string.Concat(Enumerable.Repeat(s, (int)n));
    }

    private static bool IsNumber(object? value) => value is long or double or bool;

    private static double ToDouble(object? value) => value switch
    {
        long l => l,
        double d => d,
        bool b => b ? 1 : 0,
        _ => double.NaN,
    };

    private static long ToLong(object? value) => value switch
    {
        long l => l,
        bool b => b ? 1 : 0,
        _ => 0,
    };

    /// <summary>Python's ==: numbers by value (True == 1), sequences and dicts item by item, Undefined equal only to
    /// Undefined.</summary>
    internal static bool PyEquals(object? a, object? b)
    {
        switch (a, b)
        {
            case (null, null): return true;
            case (Undefined, Undefined): return true;
            case (string x, string y): return string.Equals(x, y, StringComparison.Ordinal);
            case (long or double or bool, long or double or bool):
                return a is double || b is double ? ToDouble(a) == ToDouble(b) : ToLong(a) == ToLong(b);
            case (List<object?> x, List<object?> y): return x.Count == y.Count && x.Zip(y).All(p => PyEquals(p.First, p.Second));
            case (object?[] x, object?[] y): return x.Length == y.Length && x.Zip(y).All(p => PyEquals(p.First, p.Second));
            case (Dictionary<object, object?> x, Dictionary<object, object?> y):
                return x.Count == y.Count && x.All(p => y.TryGetValue(p.Key, out var v) && PyEquals(p.Value, v));
            default: return ReferenceEquals(a, b);
        }
    }

    private bool Compare(string op, object? l, object? r, int at)
    {
        switch (op)
        {
            case "==": return PyEquals(l, r);
            case "!=": return !PyEquals(l, r);
            case "in": return Contains(r, l, at);
            case "not in": return !Contains(r, l, at);
        }
        if (l is Undefined ul)
            throw UndefinedError(ul, at);
        if (r is Undefined ur)
            throw UndefinedError(ur, at);
        int order;
        if (IsNumber(l) && IsNumber(r))
            order = ToDouble(l).CompareTo(ToDouble(r));
        else if (l is string x && r is string y)
            order = string.CompareOrdinal(x, y);
        else if (l is List<object?> || l is object?[])
            order = CompareSequences(Iterate(l, at).ToList(), Iterate(r, at).ToList(), at);
        else
            throw Error($"'{op}' not supported between instances of '{TypeName(l)}' and '{TypeName(r)}'", at);
        return op switch
        {
            "<" => order < 0,
            "<=" => order <= 0,
            ">" => order > 0,
            _ => order >= 0,
        };
    }

    private int CompareSequences(List<object?> a, List<object?> b, int at)
    {
        for (var i = 0; i < Math.Min(a.Count, b.Count); i++)
        {
            if (PyEquals(a[i], b[i]))
                continue;
            return Compare("<", a[i], b[i], at) ? -1 : 1;
        }
        return a.Count.CompareTo(b.Count);
    }

    private bool Contains(object? container, object? item, int at) => container switch
    {
        string s when item is string t => s.Contains(t, StringComparison.Ordinal),
        string => throw Error($"'in <string>' requires string as left operand, not {TypeName(item)}", at),
        Dictionary<object, object?> d => item is not null && item is not Undefined && d.ContainsKey(
            item is double x && x == Math.Floor(x) ? (long)x : item),
        List<object?> or object?[] => Iterate(container, at).Any(x => PyEquals(x, item)),
        Undefined u => throw UndefinedError(u, at),
        _ => throw Error($"argument of type '{TypeName(container)}' is not iterable", at),
    };

    private object? Attribute(object? target, string name, int at) => target switch
    {
        Undefined u => throw UndefinedError(u, at),
        Dictionary<object, object?> d => d.TryGetValue(name, out var value)
            ? value
            : new Undefined($"'dict object' has no attribute '{name}'"),
        TemplateNamespace ns => ns.Attributes.TryGetValue(name, out var value)
            ? value
            : new Undefined($"'Namespace' object has no attribute '{name}'"),
        LoopState loop => loop.Attribute(name),
        _ => new Undefined($"'{TypeName(target)}' object has no attribute '{name}'"),
    };

    private object? Item(object? target, object? index, int at)
    {
        switch (target)
        {
            case Undefined u:
                throw UndefinedError(u, at);
            case Dictionary<object, object?> d:
                if (index is not null && index is not Undefined && d.TryGetValue(Key(index, at), out var value))
                    return value;
                return new Undefined($"'dict object' has no attribute {PyText.Repr(index)}");
            case List<object?> or object?[] or string when index is long or bool:
                var items = target is string s ? StringElements(s).ToList() : Iterate(target, at).ToList();
                var i = ToLong(index);
                if (i < 0)
                    i += items.Count;
                return i >= 0 && i < items.Count
                    ? items[(int)i]
                    : new Undefined($"{TypeName(target)} object has no element {ToLong(index)}");
            case TemplateNamespace or LoopState when index is string name:
                return Attribute(target, name, at);
            default:
                return new Undefined($"'{TypeName(target)}' object has no attribute {PyText.Repr(index)}");
        }
    }

    private object? Slice(object? target, object? start, object? stop, object? step, int at)
    {
        if (target is Undefined u)
            throw UndefinedError(u, at);
        var items = target switch
        {
            string s => StringElements(s).ToList(),
            List<object?> or object?[] => Iterate(target, at).ToList(),
            _ => throw Error($"'{TypeName(target)}' object is not subscriptable", at),
        };
        long Bound(object? v, string what) => v switch
        {
            long l => l,
            bool b => b ? 1 : 0,
            _ => throw Error($"Slice {what} must be an integer or none; got {TypeName(v)}.", at),
        };
        var n = items.Count;
        var by = step is null ? 1 : Bound(step, "step");
        if (by == 0)
            throw Error("slice step cannot be zero", at);
        long Clamp(object? v, long fallback)
        {
            if (v is null)
                return fallback;
            var i = Bound(v, "index");
            if (i < 0)
                i += n;
            return by > 0 ? Math.Clamp(i, 0, n) : Math.Clamp(i, -1, n - 1);
        }
        var from = Clamp(start, by > 0 ? 0 : n - 1);
        var to = Clamp(stop, by > 0 ? n : -1);
        var picked = new List<object?>();
        for (var i = from; by > 0 ? i < to : i > to; i += by)
            picked.Add(items[(int)i]);
        return target switch
        {
            string => string.Concat(picked.Cast<string>()),
            object?[] => picked.ToArray(),
            _ => picked,
        };
    }
}
