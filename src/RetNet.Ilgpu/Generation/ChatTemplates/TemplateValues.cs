using System.Globalization;
using System.Text;

namespace RetNet.Ilgpu.Generation.ChatTemplates;

/// <summary>
/// jinja2's default Undefined: a name or member that is not there. It prints as nothing, is false, iterates as empty
/// and has length 0; taking its attributes or items, calling it, or computing with it fails, naming what was missing.
/// </summary>
internal sealed class Undefined(string hint)
{
    /// <summary>What jinja2 says when the value is used where it fails ("'x' is undefined").</summary>
    public string Hint { get; } = hint;

    public override string ToString() => "";
}

/// <summary>jinja2's <c>namespace(...)</c>: attributes that <c>{% set ns.attr = … %}</c> may change from inside a
/// loop.</summary>
internal sealed class TemplateNamespace
{
    public Dictionary<string, object?> Attributes { get; } = new(StringComparer.Ordinal);
}

/// <summary>A <c>{% macro %}</c> with the scope it was defined in.</summary>
internal sealed record TemplateMacro(MacroStatement Definition, Scope Closure);

/// <summary>A global function (raise_exception, strftime_now, range, namespace, dict).</summary>
internal delegate object? TemplateFunction(IReadOnlyList<object?> positional, IReadOnlyDictionary<string, object?> named,
    int at);

/// <summary>A for loop's <c>loop</c> variable.</summary>
internal sealed class LoopState(IReadOnlyList<object?> items)
{
    public IReadOnlyList<object?> Items { get; } = items;

    public int Index0 { get; set; }

    public object? Attribute(string name) => name switch
    {
        "index" => (long)Index0 + 1,
        "index0" => (long)Index0,
        "revindex" => (long)(Items.Count - Index0),
        "revindex0" => (long)(Items.Count - Index0 - 1),
        "first" => Index0 == 0,
        "last" => Index0 == Items.Count - 1,
        "length" => (long)Items.Count,
        "depth" => 1L,
        "depth0" => 0L,
        "previtem" => Index0 > 0 ? Items[Index0 - 1] : new Undefined("there is no previous item"),
        "nextitem" => Index0 + 1 < Items.Count ? Items[Index0 + 1] : new Undefined("there is no next item"),
        _ => new Undefined($"'LoopContext' object has no attribute '{name}'"),
    };
}

/// <summary>Variables: a frame and the frame it is nested in (a for loop's iteration, a macro call, the template).
/// </summary>
internal sealed class Scope(Scope? parent)
{
    private readonly Dictionary<string, object?> variables = new(StringComparer.Ordinal);

    private Scope? Parent { get; } = parent;

    public bool TryGet(string name, out object? value)
    {
        for (var scope = this; scope is not null; scope = scope.Parent)
            if (scope.variables.TryGetValue(name, out value))
                return true;
        value = null;
        return false;
    }

    public void Set(string name, object? value) => variables[name] = value;
}

/// <summary>Python's view of whitespace and of values as text: what jinja2 prints and compares.</summary>
internal static class PyText
{
    /// <summary>The characters Python's str.strip() removes by default.</summary>
    public static readonly char[] WhitespaceChars = Enumerable.Range(0, 0x3001).Select(c => (char)c)
        .Where(IsSpace).ToArray();

    /// <summary>Python's str.isspace for one character.</summary>
    public static bool IsSpace(char c) => char.IsWhiteSpace(c) || c is >= '\x1c' and <= '\x1f';

    /// <summary>Python's str(value), with jinja2's empty text for Undefined.</summary>
    public static string Str(object? value) => value switch
    {
        string s => s,
        _ => Repr(value),
    };

    /// <summary>Python's repr(value).</summary>
    public static string Repr(object? value)
    {
        switch (value)
        {
            case null: return "None";
            case bool b: return b ? "True" : "False";
            case long l: return l.ToString(CultureInfo.InvariantCulture);
            case double d: return Float(d);
            case string s: return QuoteString(s);
            case Undefined: return "";
            case List<object?> list: return "[" + string.Join(", ", list.Select(Repr)) + "]";
            case object?[] tuple:
                return tuple.Length == 1 ? "(" + Repr(tuple[0]) + ",)" : "(" + string.Join(", ", tuple.Select(Repr)) + ")";
            case Dictionary<object, object?> dict:
                return "{" + string.Join(", ", dict.Select(p => Repr(p.Key) + ": " + Repr(p.Value))) + "}";
            case TemplateNamespace ns:
                return "<Namespace {" + string.Join(", ", ns.Attributes.Select(p => Repr(p.Key) + ": " + Repr(p.Value))) +
                       "}>";
            case LoopState loop: return $"<LoopContext {loop.Index0 + 1}/{loop.Items.Count}>";
            case TemplateMacro macro: return $"<Macro '{macro.Definition.Name}'>";
            default: return value.ToString() ?? "";
        }
    }

    /// <summary>Python's repr of a float: the shortest digits that read back, in positional notation for exponents
    /// in [-4, 16), else as 1e+20.</summary>
    public static string Float(double d)
    {
        if (double.IsNaN(d))
            return "nan";
        if (double.IsInfinity(d))
            return d > 0 ? "inf" : "-inf";
        if (d == 0)
            return double.IsNegative(d) ? "-0.0" : "0.0";
        // Shortest round-trip digits: "R" gives them, in either notation; normalise to digits and an exponent.
        var shortest = d.ToString("R", CultureInfo.InvariantCulture);
        var negative = shortest.StartsWith('-');
        if (negative)
            shortest = shortest[1..];
        int exponent;
        string mantissa;
        var e = shortest.IndexOfAny(['E', 'e']);
        if (e >= 0)
        {
            exponent = int.Parse(shortest[(e + 1)..], CultureInfo.InvariantCulture);
            mantissa = shortest[..e];
        }
        else
        {
            exponent = 0;
            mantissa = shortest;
        }
        var dot = mantissa.IndexOf('.');
        var intPart = dot >= 0 ? mantissa[..dot] : mantissa;
        var fracPart = dot >= 0 ? mantissa[(dot + 1)..] : "";
        var digits = (intPart + fracPart).TrimStart('0');
        var leadingZeros = (intPart + fracPart).Length - (intPart + fracPart).TrimStart('0').Length;
        var pointExponent = intPart.Length + exponent - leadingZeros;
        digits = digits.TrimEnd('0');
        if (digits.Length == 0)
            digits = "0";
        var decimalExponent = pointExponent - 1;
        string body;
        if (decimalExponent is >= -4 and < 16)
        {
            if (pointExponent <= 0)
                body = "0." + new string('0', -pointExponent) + digits;
            else if (pointExponent >= digits.Length)
                body = digits + new string('0', pointExponent - digits.Length) + ".0";
            else
                body = digits[..pointExponent] + "." + digits[pointExponent..];
        }
        else
        {
            body = digits.Length == 1 ? digits : digits[0] + "." + digits[1..];
            body += (decimalExponent < 0 ? "e-" : "e+") + Math.Abs(decimalExponent).ToString("00",
                CultureInfo.InvariantCulture);
        }
        return negative ? "-" + body : body;
    }

    /// <summary>Python's repr of a string: single quotes unless it holds one and no double quote.</summary>
    public static string QuoteString(string s)
    {
        var quote = s.Contains('\'') && !s.Contains('"') ? '"' : '\'';
        var text = new StringBuilder().Append(quote);
        foreach (var c in s)
        {
            switch (c)
            {
                case '\\': text.Append("\\\\"); break;
                case '\n': text.Append("\\n"); break;
                case '\r': text.Append("\\r"); break;
                case '\t': text.Append("\\t"); break;
                default:
                    if (c == quote)
                        text.Append('\\').Append(c);
                    else if (c < ' ' || c == '\x7f')
                        text.Append("\\x").Append(((int)c).ToString("x2", CultureInfo.InvariantCulture));
                    else
                        text.Append(c);
                    break;
            }
        }
        return text.Append(quote).ToString();
    }

    /// <summary>Python's str.title(): a cased letter after an uncased character starts a word.</summary>
    public static string Title(string s)
    {
        var text = new StringBuilder(s.Length);
        var previousCased = false;
        foreach (var c in s)
        {
            text.Append(previousCased ? char.ToLowerInvariant(c) : char.ToUpperInvariant(c));
            previousCased = char.IsLetter(c);
        }
        return text.ToString();
    }

    /// <summary>Python's str.upper(), with its full mapping of ß to SS.</summary>
    public static string Upper(string s) => s.ToUpperInvariant().Replace("ß", "SS", StringComparison.Ordinal);

    /// <summary>Python's str.capitalize(): the first character upper case, the rest lower case.</summary>
    public static string Capitalize(string s) =>
        s.Length == 0 ? s : char.ToUpperInvariant(s[0]) + s[1..].ToLowerInvariant();
}
