using System.Globalization;
using System.Text;

namespace RetNet.Ilgpu.Generation.ChatTemplates;

/// <summary>Calls, filters, tests, methods and globals.</summary>
internal sealed partial class TemplateRenderer
{
    private void AddGlobals(Scope globals)
    {
        globals.Set("raise_exception", (TemplateFunction)((args, _, at) =>
        {
            var (line, column) = position(at);
            throw new ChatTemplateRaisedException(args.Count > 0 ? PyText.Str(args[0]) : "", line, column);
        }));
        globals.Set("strftime_now", (TemplateFunction)((args, _, at) =>
            args.Count == 1 && args[0] is string format
                ? Strftime(clock(), format)
                : throw Error("strftime_now takes one format string.", at)));
        globals.Set("namespace", (TemplateFunction)((args, named, at) =>
        {
            var ns = new TemplateNamespace();
            foreach (var arg in args)
            {
                if (arg is not Dictionary<object, object?> d)
                    throw Error("namespace() takes keyword arguments or a dict.", at);
                foreach (var (k, v) in d)
                    ns.Attributes[PyText.Str(k)] = v;
            }
            foreach (var (k, v) in named)
                ns.Attributes[k] = v;
            return ns;
        }));
        globals.Set("dict", (TemplateFunction)((args, named, at) =>
        {
            var d = args.Count == 1 && args[0] is Dictionary<object, object?> from
                ? new Dictionary<object, object?>(from)
                : args.Count == 0 ? new Dictionary<object, object?>() : throw Error("dict() takes keyword arguments.", at);
            foreach (var (k, v) in named)
                d[k] = v;
            return d;
        }));
        globals.Set("range", (TemplateFunction)((args, _, at) =>
        {
            if (args.Count is < 1 or > 3 || args.Any(a => a is not long))
                throw Error("range() takes one to three integers.", at);
            var (start, stop, step) = args.Count switch
            {
                1 => (0L, (long)args[0]!, 1L),
                2 => ((long)args[0]!, (long)args[1]!, 1L),
                _ => ((long)args[0]!, (long)args[1]!, (long)args[2]!),
            };
            if (step == 0)
                throw Error("range() arg 3 must not be zero", at);
            var count = step > 0 ? Math.Max(0, (stop - start + step - 1) / step) : Math.Max(0, (start - stop - step - 1) / -step);
            if (count > limits.MaxSteps)
                throw Error($"range() of {count} items is more than the template's {limits.MaxSteps} steps.", at);
            var items = new List<object?>((int)count);
            for (long i = 0; i < count; i++)
                items.Add(start + i * step);
            return items;
        }));
    }

    /// <summary>Python's datetime.strftime for the directives templates use.</summary>
    internal static string Strftime(DateTime time, string format)
    {
        var text = new StringBuilder();
        var culture = CultureInfo.InvariantCulture;
        for (var i = 0; i < format.Length; i++)
        {
            if (format[i] != '%' || i + 1 == format.Length)
            {
                text.Append(format[i]);
                continue;
            }
            var directive = format[++i];
            text.Append(directive switch
            {
                'd' => time.ToString("dd", culture),
                'm' => time.ToString("MM", culture),
                'Y' => time.ToString("yyyy", culture),
                'y' => time.ToString("yy", culture),
                'H' => time.ToString("HH", culture),
                'I' => time.ToString("hh", culture),
                'M' => time.ToString("mm", culture),
                'S' => time.ToString("ss", culture),
                'p' => time.Hour < 12 ? "AM" : "PM",
                'b' => time.ToString("MMM", culture),
                'B' => time.ToString("MMMM", culture),
                'a' => time.ToString("ddd", culture),
                'A' => time.ToString("dddd", culture),
                'j' => time.DayOfYear.ToString("000", culture),
                'e' => time.Day.ToString(culture).PadLeft(2),
                '%' => "%",
                _ => "%" + directive,
            });
        }
        return text.ToString();
    }

    private (List<object?> Positional, Dictionary<string, object?> Named) Arguments(Arguments arguments, Scope scope)
    {
        var positional = arguments.Positional.Select(a => Evaluate(a, scope)).ToList();
        var named = new Dictionary<string, object?>(StringComparer.Ordinal);
        foreach (var (name, value) in arguments.Named)
            named[name] = Evaluate(value, scope);
        return (positional, named);
    }

    private object? Call(CallExpression call, Scope scope)
    {
        if (call.Callee is AttributeExpression member)
        {
            var target = Evaluate(member.Target, scope);
            if (target is string or Dictionary<object, object?> or List<object?> && IsMethod(target, member.Name))
            {
                var (args, _) = Arguments(call.Arguments, scope);
                return Method(target, member.Name, args, call.At);
            }
            return Invoke(Attribute(target, member.Name, member.At), call, scope);
        }
        return Invoke(Evaluate(call.Callee, scope), call, scope);
    }

    private object? Invoke(object? callee, CallExpression call, Scope scope)
    {
        var (positional, named) = Arguments(call.Arguments, scope);
        switch (callee)
        {
            case TemplateFunction function:
                return function(positional, named, call.At);
            case TemplateMacro macro:
                return CallMacro(macro, positional, named, call.At);
            case Undefined u:
                throw UndefinedError(u, call.At);
            default:
                throw Error($"'{TypeName(callee)}' object is not callable", call.At);
        }
    }

    private string CallMacro(TemplateMacro macro, List<object?> positional, Dictionary<string, object?> named, int at)
    {
        Step(at);
        if (++depth > limits.MaxCallDepth)
            throw Error($"Macro calls are nested more than {limits.MaxCallDepth} deep.", at);
        try
        {
            var definition = macro.Definition;
            var frame = new Scope(macro.Closure);
            if (positional.Count > definition.Parameters.Count)
                throw Error($"macro '{definition.Name}' takes not more than {definition.Parameters.Count} " +
                            $"argument(s)", at);
            for (var i = 0; i < definition.Parameters.Count; i++)
            {
                var (name, fallback) = definition.Parameters[i];
                frame.Set(name, i < positional.Count ? positional[i]
                    : named.Remove(name, out var value) ? value
                    : fallback is not null ? Evaluate(fallback, frame)
                    : new Undefined($"parameter '{name}' was not provided"));
            }
            if (named.Count > 0)
                throw Error($"macro '{definition.Name}' takes no keyword argument '{named.Keys.First()}'", at);
            var text = new StringBuilder();
            Run(definition.Body, frame, text);
            return Checked(text.ToString(), at);
        }
        finally
        {
            depth--;
        }
    }

    private static bool IsMethod(object target, string name) => target switch
    {
        string => name is "strip" or "lstrip" or "rstrip" or "startswith" or "endswith" or "split" or "upper"
            or "lower" or "title" or "capitalize" or "replace" or "find" or "count" or "join" or "isdigit"
            or "isspace" or "isalpha",
        Dictionary<object, object?> => name is "items" or "get" or "keys" or "values",
        List<object?> => name is "index" or "count",
        _ => false,
    };

    private object? Method(object target, string name, List<object?> args, int at)
    {
        string Arg(int i, string what) => i < args.Count && args[i] is string s
            ? s
            : throw Error($"{name}() needs a string {what}.", at);
        char[]? Chars() => args.Count == 0 || args[0] is null ? null : Arg(0, "argument").ToCharArray();
        switch (target)
        {
            case string s:
                switch (name)
                {
                    case "strip": return Chars() is { } c1 ? s.Trim(c1) : s.Trim(PyText.WhitespaceChars);
                    case "lstrip": return Chars() is { } c2 ? s.TrimStart(c2) : s.TrimStart(PyText.WhitespaceChars);
                    case "rstrip": return Chars() is { } c3 ? s.TrimEnd(c3) : s.TrimEnd(PyText.WhitespaceChars);
                    case "upper": return PyText.Upper(s);
                    case "lower": return s.ToLowerInvariant();
                    case "title": return PyText.Title(s);
                    case "capitalize": return PyText.Capitalize(s);
                    case "isdigit": return s.Length > 0 && s.All(char.IsDigit);
                    case "isspace": return s.Length > 0 && s.All(PyText.IsSpace);
                    case "isalpha": return s.Length > 0 && s.All(char.IsLetter);
                    case "startswith" or "endswith":
                        var prefixes = args.Count > 0 && args[0] is object?[] tuple
                            ? tuple.Select(t => t as string ?? throw Error($"{name}() needs strings.", at))
                            : [Arg(0, "argument")];
                        return prefixes.Any(p => name == "startswith"
                            ? s.StartsWith(p, StringComparison.Ordinal)
                            : s.EndsWith(p, StringComparison.Ordinal));
                    case "replace":
                        var old = Arg(0, "to replace");
                        var replacement = Arg(1, "replacement");
                        return Checked(old.Length == 0
                            ? replacement + string.Join(replacement, StringElements(s)) + replacement
                            : s.Replace(old, replacement, StringComparison.Ordinal), at);
                    case "find": return (long)s.IndexOf(Arg(0, "argument"), StringComparison.Ordinal);
                    case "count":
                        var needle = Arg(0, "argument");
                        return needle.Length == 0 ? s.Length + 1L : (long)((s.Length - s.Replace(needle, "",
                            StringComparison.Ordinal).Length) / needle.Length);
                    case "join":
                        return Checked(string.Join(s, Iterate(args.Count > 0 ? args[0] : null, at).Select(PyText.Str)), at);
                    case "split":
                        var max = args.Count > 1 && args[1] is long m ? m : -1;
                        if (args.Count == 0 || args[0] is null)
                        {
                            var words = s.Split(PyText.WhitespaceChars, StringSplitOptions.RemoveEmptyEntries);
                            return words.Cast<object?>().ToList();
                        }
                        var separator = Arg(0, "separator");
                        if (separator.Length == 0)
                            throw Error("empty separator", at);
                        var parts = max >= 0
                            ? s.Split(separator, (int)Math.Min(max + 1, int.MaxValue), StringSplitOptions.None)
                            : s.Split(separator);
                        return parts.Cast<object?>().ToList();
                }
                break;
            case Dictionary<object, object?> d:
                switch (name)
                {
                    case "items": return d.Select(p => (object?)new[] { p.Key, p.Value }).ToList();
                    case "keys": return d.Keys.Cast<object?>().ToList();
                    case "values": return d.Values.ToList();
                    case "get":
                        if (args.Count is < 1 or > 2)
                            throw Error("get() takes a key and an optional default.", at);
                        return args[0] is not null and not Undefined && d.TryGetValue(Key(args[0], at), out var v)
                            ? v
                            : args.Count > 1 ? args[1] : null;
                }
                break;
            case List<object?> list:
                switch (name)
                {
                    case "count": return (long)list.Count(x => PyEquals(x, args.Count > 0 ? args[0] : null));
                    case "index":
                        var found = list.FindIndex(x => PyEquals(x, args.Count > 0 ? args[0] : null));
                        return found >= 0 ? found : throw Error("The value is not in the list.", at);
                }
                break;
        }
        throw Error($"'{TypeName(target)}' object has no method '{name}'", at);
    }

    private object? Filter(FilterExpression f, Scope scope)
    {
        var value = Evaluate(f.Value, scope);
        var (args, named) = Arguments(f.Arguments, scope);
        object? Arg(int i, string key, object? fallback) =>
            i < args.Count ? args[i] : named.TryGetValue(key, out var v) ? v : fallback;
        switch (f.Name)
        {
            case "default" or "d":
                var boolean = Truthy(Arg(1, "boolean", false));
                return value is Undefined || (boolean && !Truthy(value)) ? Arg(0, "default_value", "") : value;
            case "trim":
                return Arg(0, "chars", null) is string chars ? PyText.Str(value).Trim(chars.ToCharArray())
                    : PyText.Str(value).Trim(PyText.WhitespaceChars);
            case "upper": return PyText.Upper(PyText.Str(value));
            case "lower": return PyText.Str(value).ToLowerInvariant();
            case "capitalize": return PyText.Capitalize(PyText.Str(value));
            case "title": return JinjaTitle(PyText.Str(value));
            case "string": return PyText.Str(value);
            case "safe": return value;
            case "length" or "count":
                return value switch
                {
                    string s => (long)StringElements(s).Count(),
                    Undefined => 0L,
                    _ => (long)Iterate(value, f.At).Count(),
                };
            case "first":
                foreach (var item in Iterate(value, f.At))
                    return item;
                return new Undefined("No first item, sequence was empty.");
            case "last":
                var all = Iterate(value, f.At).ToList();
                return all.Count > 0 ? all[^1] : new Undefined("No last item, sequence was empty.");
            case "list":
                return Iterate(value, f.At).ToList();
            case "reverse":
                return value is string rs ? string.Concat(StringElements(rs).Reverse()) : Iterate(value, f.At).Reverse().ToList();
            case "join":
                var separator = PyText.Str(Arg(0, "d", ""));
                var attribute = Arg(1, "attribute", null);
                var pieces = Iterate(value, f.At).Select(x => attribute is null ? x : Lookup(x, attribute, f.At));
                return Checked(string.Join(separator, pieces.Select(PyText.Str)), f.At);
            case "replace":
                var old = PyText.Str(Arg(0, "old", ""));
                var replacement = PyText.Str(Arg(1, "new", ""));
                var text = PyText.Str(value);
                return Checked(old.Length == 0 ? replacement + string.Join(replacement, StringElements(text)) +
                    replacement : text.Replace(old, replacement, StringComparison.Ordinal), f.At);
            case "items":
                return value switch
                {
                    Undefined => new List<object?>(),
                    Dictionary<object, object?> d => d.Select(p => (object?)new[] { p.Key, p.Value }).ToList(),
                    _ => throw Error($"Can only get item pairs from a mapping, not {TypeName(value)}.", f.At),
                };
            case "tojson":
                var indent = Arg(0, "indent", null);
                return TemplateJson.Dumps(value, indent is long n ? (int)n : null,
                    Truthy(Arg(1, "ensure_ascii", false)), Truthy(Arg(3, "sort_keys", false)),
                    Arg(2, "separators", null), limits.MaxOutputChars, message => Error(message, f.At));
            case "abs":
                return value switch
                {
                    long l => Math.Abs(l),
                    double d => Math.Abs(d),
                    _ => throw Error($"bad operand type for abs(): '{TypeName(value)}'", f.At),
                };
            case "int":
                return value switch
                {
                    long l => l,
                    double d => (long)Math.Truncate(d),
                    bool b => b ? 1L : 0L,
                    string s when long.TryParse(s.Trim(), NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture,
                        out var parsed) => parsed,
                    string s when double.TryParse(s.Trim(), NumberStyles.Float, CultureInfo.InvariantCulture,
                        out var real) => (long)Math.Truncate(real),
                    _ => Arg(0, "default", 0L),
                };
            case "float":
                return value switch
                {
                    long l => (double)l,
                    double d => d,
                    string s when double.TryParse(s.Trim(), NumberStyles.Float, CultureInfo.InvariantCulture,
                        out var real) => real,
                    _ => Arg(0, "default", 0.0),
                };
            case "map":
                if (named.TryGetValue("attribute", out var mapped))
                    return Iterate(value, f.At).Select(x => Lookup(x, mapped, f.At)).ToList();
                if (args.Count > 0 && args[0] is string filterName)
                    return Iterate(value, f.At).Select(x => Filter(new FilterExpression(
                        new LiteralExpression(x, f.At), filterName, global::RetNet.Ilgpu.Generation.ChatTemplates
                            .Arguments.None, f.At), scope)).ToList();
                throw Error("map needs a filter name or attribute=.", f.At);
            case "selectattr" or "rejectattr":
                var keep = f.Name == "selectattr";
                var name = Arg(0, "attribute", null) ?? throw Error($"{f.Name} needs an attribute.", f.At);
                return Iterate(value, f.At).Where(x =>
                {
                    var field = Lookup(x, name, f.At);
                    var passes = args.Count > 1
                        ? RunTest(PyText.Str(args[1]), field, args.Skip(2).ToList(), f.At)
                        : Truthy(field);
                    return passes == keep;
                }).ToList();
            case "select" or "reject":
                var wanted = f.Name == "select";
                return Iterate(value, f.At).Where(x => (args.Count > 0
                    ? RunTest(PyText.Str(args[0]), x, args.Skip(1).ToList(), f.At)
                    : Truthy(x)) == wanted).ToList();
            case "unique":
                var unique = new List<object?>();
                foreach (var item in Iterate(value, f.At))
                    if (!unique.Any(u => PyEquals(u, item)))
                        unique.Add(item);
                return unique;
            case "indent":
                var width = Arg(0, "width", 4L) is long w ? (int)w : 4;
                var first = Truthy(Arg(1, "first", false));
                var blank = Truthy(Arg(2, "blank", false));
                var pad = new string(' ', width);
                var lines = PyText.Str(value).Split('\n');
                var indented = lines.Select((line, i) =>
                    (i == 0 && !first) || (!blank && line.Trim(PyText.WhitespaceChars).Length == 0) ? line : pad + line);
                return Checked(string.Join("\n", indented), f.At);
            case "round":
                var digits = Arg(0, "precision", 0L) is long p ? (int)p : 0;
                return Math.Round(value is long rl ? rl : value is double rd ? rd : 0, digits, MidpointRounding.ToEven);
            case "sum":
                object? total = 0L;
                foreach (var item in Iterate(value, f.At))
                    total = Arithmetic("+", total, item, f.At);
                return total;
            case "min" or "max":
                var values = Iterate(value, f.At).ToList();
                if (values.Count == 0)
                    return new Undefined($"No {f.Name} item, sequence was empty.");
                return values.Aggregate((a, b) => Compare(f.Name == "min" ? "<" : ">", b, a, f.At) ? b : a);
            case "wordcount":
                return (long)PyText.Str(value).Split(PyText.WhitespaceChars, StringSplitOptions.RemoveEmptyEntries).Length;
        }
        throw Error($"No filter named '{f.Name}'.", f.At);
    }

    private object? Lookup(object? item, object? attribute, int at)
    {
        var value = item;
        foreach (var part in PyText.Str(attribute).Split('.'))
            value = long.TryParse(part, NumberStyles.None, CultureInfo.InvariantCulture, out var i)
                ? Item(value, i, at)
                : Item(value, part, at);
        return value;
    }

    // jinja2's title filter: a word starts after a space, dash, or opening bracket.
    private static string JinjaTitle(string s)
    {
        var text = new StringBuilder(s.Length);
        var start = true;
        foreach (var c in s)
        {
            var boundary = PyText.IsSpace(c) || c is '-' or '(' or '{' or '[' or '<';
            text.Append(boundary ? c : start ? char.ToUpperInvariant(c) : char.ToLowerInvariant(c));
            start = boundary;
        }
        return text.ToString();
    }

    private bool Test(TestExpression t, Scope scope)
    {
        var value = Evaluate(t.Value, scope);
        var (args, _) = Arguments(t.Arguments, scope);
        return RunTest(t.Name, value, args, t.At);
    }

    private bool RunTest(string name, object? value, List<object?> args, int at)
    {
        object? Arg() => args.Count > 0 ? args[0] : throw Error($"The test '{name}' needs an argument.", at);
        return name switch
        {
            "defined" => value is not Undefined,
            "undefined" => value is Undefined,
            "none" => value is null,
            "boolean" => value is bool,
            "true" => value is true,
            "false" => value is false,
            "string" => value is string,
            "number" => value is long or double or bool,
            "integer" => value is long,
            "float" => value is double,
            "mapping" => value is Dictionary<object, object?>,
            "sequence" => value is string or List<object?> or object?[] or Dictionary<object, object?>,
            "iterable" => value is string or List<object?> or object?[] or Dictionary<object, object?>,
            "callable" => value is TemplateFunction or TemplateMacro,
            "odd" => value is long lo && lo % 2 != 0,
            "even" => value is long le && le % 2 == 0,
            "divisibleby" => value is long ld && Arg() is long by && by != 0 && ld % by == 0,
            "lower" => value is string sl && sl == sl.ToLowerInvariant(),
            "upper" => value is string su && su == su.ToUpperInvariant(),
            "equalto" or "eq" or "==" or "sameas" => PyEquals(value, Arg()),
            "ne" or "!=" => !PyEquals(value, Arg()),
            "in" => Contains(Arg(), value, at),
            "lt" or "lessthan" or "<" => Compare("<", value, Arg(), at),
            "le" or "<=" => Compare("<=", value, Arg(), at),
            "gt" or "greaterthan" or ">" => Compare(">", value, Arg(), at),
            "ge" or ">=" => Compare(">=", value, Arg(), at),
            _ => throw Error($"No test named '{name}'.", at),
        };
    }
}
