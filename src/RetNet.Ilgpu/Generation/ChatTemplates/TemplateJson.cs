using System.Globalization;
using System.Text;

namespace RetNet.Ilgpu.Generation.ChatTemplates;

/// <summary>
/// The <c>tojson</c> filter as transformers defines it: Python's <c>json.dumps(value, ensure_ascii=False,
/// indent=indent, separators=separators, sort_keys=sort_keys)</c>, not jinja2's HTML-escaping one.
/// </summary>
internal static class TemplateJson
{
    internal static string Dumps(object? value, int? indent, bool ensureAscii, bool sortKeys, object? separators,
        int maxChars, Func<string, Exception> error)
    {
        var (item, key) = separators switch
        {
            object?[] { Length: 2 } s when s[0] is string a && s[1] is string b => (a, b),
            List<object?> { Count: 2 } s when s[0] is string a && s[1] is string b => (a, b),
            null => (indent is null ? ", " : ",", ": "),
            _ => throw error("tojson's separators must be a pair of strings."),
        };
        var text = new StringBuilder();
        Write(value, 0);
        return text.ToString();

        void Write(object? v, int level)
        {
            if (text.Length > maxChars)
                throw error($"tojson built more than {maxChars} characters.");
            switch (v)
            {
                case null: text.Append("null"); break;
                case bool b: text.Append(b ? "true" : "false"); break;
                case long l: text.Append(l.ToString(CultureInfo.InvariantCulture)); break;
                case double d:
                    text.Append(double.IsNaN(d) ? "NaN" : double.IsInfinity(d) ? d > 0 ? "Infinity" : "-Infinity"
                        : PyText.Float(d));
                    break;
                case string s: Quote(s); break;
                case List<object?> or object?[]:
                    var items = v is List<object?> list ? list : ((object?[])v).ToList();
                    Container('[', ']', items.Count, i => Write(items[i], level + 1), level);
                    break;
                case Dictionary<object, object?> dict:
                    var pairs = dict.ToList();
                    if (sortKeys)
                        pairs = pairs.OrderBy(p => PyText.Str(p.Key), StringComparer.Ordinal).ToList();
                    Container('{', '}', pairs.Count, i =>
                    {
                        Quote(pairs[i].Key is string s ? s : KeyText(pairs[i].Key));
                        text.Append(key);
                        Write(pairs[i].Value, level + 1);
                    }, level);
                    break;
                default:
                    throw error($"Object of type {TemplateRenderer.TypeName(v)} is not JSON serializable");
            }
        }

        void Container(char open, char close, int count, Action<int> writeItem, int level)
        {
            text.Append(open);
            if (count == 0)
            {
                text.Append(close);
                return;
            }
            for (var i = 0; i < count; i++)
            {
                if (i > 0)
                    text.Append(item);
                if (indent is { } n)
                    text.Append('\n').Append(' ', n * (level + 1));
                writeItem(i);
            }
            if (indent is { } m)
                text.Append('\n').Append(' ', m * level);
            text.Append(close);
        }

        void Quote(string s)
        {
            text.Append('"');
            foreach (var c in s)
            {
                switch (c)
                {
                    case '"': text.Append("\\\""); break;
                    case '\\': text.Append("\\\\"); break;
                    case '\n': text.Append("\\n"); break;
                    case '\r': text.Append("\\r"); break;
                    case '\t': text.Append("\\t"); break;
                    case '\b': text.Append("\\b"); break;
                    case '\f': text.Append("\\f"); break;
                    default:
                        if (c < ' ' || (ensureAscii && c > '~'))
                            text.Append("\\u").Append(((int)c).ToString("x4", CultureInfo.InvariantCulture));
                        else
                            text.Append(c);
                        break;
                }
            }
            text.Append('"');
        }
    }

    private static string KeyText(object key) => key switch
    {
        bool b => b ? "true" : "false",
        _ => PyText.Str(key),
    };
}
