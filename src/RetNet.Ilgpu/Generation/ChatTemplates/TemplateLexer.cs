using System.Globalization;
using System.Text;

namespace RetNet.Ilgpu.Generation.ChatTemplates;

/// <summary>The kinds of <see cref="TemplateToken"/>.</summary>
internal enum TokenKind
{
    Text,
    OutputBegin,
    OutputEnd,
    StatementBegin,
    StatementEnd,
    Name,
    String,
    Integer,
    Float,
    Operator,
    EndOfTemplate,
}

/// <summary>One token of a template: literal text, a tag delimiter, or a token of an expression; <see cref="At"/> is
/// its offset in the (newline-normalised) source.</summary>
internal readonly record struct TemplateToken(TokenKind Kind, string Value, int At);

/// <summary>
/// Splits a template into tokens as jinja2's lexer does under transformers' settings: newlines normalised to \n and
/// one trailing newline dropped (keep_trailing_newline off); comments removed; <c>-</c> inside a delimiter strips all
/// whitespace on that side; trim_blocks drops the first newline after a statement or comment; lstrip_blocks drops the
/// spaces and tabs between the start of a line and a statement or comment (<c>+</c> turns either off for one tag).
/// </summary>
internal sealed class TemplateLexer
{
    private static readonly string[] Operators =
        ["//", "**", "==", "!=", "<=", ">=", "+", "-", "*", "/", "%", "~", "<", ">", "=", "(", ")", "[", "]", "{", "}",
            ",", ".", ":", "|"];

    private readonly string source;
    private readonly List<int> lineStarts = [0];
    private readonly List<TemplateToken> tokens = [];
    private int pos;

    private TemplateLexer(string source)
    {
        this.source = source;
        for (var i = 0; i < source.Length; i++)
            if (source[i] == '\n')
                lineStarts.Add(i + 1);
    }

    /// <summary>The source jinja2 lexes: \r\n and \r as \n, one trailing newline dropped.</summary>
    internal static string Normalize(string template)
    {
        var text = template.Replace("\r\n", "\n").Replace('\r', '\n');
        return text.EndsWith('\n') ? text[..^1] : text;
    }

    /// <summary>The tokens of <paramref name="source"/> (already <see cref="Normalize"/>d) and a way to turn offsets
    /// into positions.</summary>
    internal static (List<TemplateToken> Tokens, Func<int, (int Line, int Column)> Position) Lex(string source)
    {
        var lexer = new TemplateLexer(source);
        lexer.Run();
        return (lexer.tokens, lexer.Position);
    }

    internal (int Line, int Column) Position(int at)
    {
        var line = lineStarts.BinarySearch(at);
        if (line < 0)
            line = ~line - 1;
        return (line + 1, at - lineStarts[line] + 1);
    }

    private ChatTemplateSyntaxException Error(string message, int at)
    {
        var (line, column) = Position(at);
        return new ChatTemplateSyntaxException(message, line, column);
    }

    private void Run()
    {
        var stripLeading = false;
        var dropNewline = false;
        while (true)
        {
            var next = NextTagStart(pos);
            var textEnd = next < 0 ? source.Length : next;
            var start = pos;
            if (stripLeading)
                while (start < textEnd && PyText.IsSpace(source[start]))
                    start++;
            else if (dropNewline && start < textEnd && source[start] == '\n')
                start++;
            var text = source[start..textEnd];
            if (next < 0)
            {
                Emit(text, start);
                tokens.Add(new TemplateToken(TokenKind.EndOfTemplate, "", source.Length));
                return;
            }
            var kind = source[next + 1];
            var sign = next + 2 < source.Length ? source[next + 2] : '\0';
            if (sign == '-')
                text = text.TrimEnd(PyText.WhitespaceChars);
            else if (sign != '+' && kind != '{')
            {
                var lineStart = text.LastIndexOf('\n') + 1;
                var lineStarting = start == 0 || source[start - 1] == '\n';
                if ((lineStart > 0 || lineStarting) && text[lineStart..].All(c => c is ' ' or '\t' || PyText.IsSpace(c)))
                    text = text[..lineStart];
            }
            Emit(text, start);
            pos = next + 2 + (sign is '-' or '+' ? 1 : 0);
            (stripLeading, dropNewline) = kind switch
            {
                '#' => Comment(next),
                '{' => Tag(next, TokenKind.OutputBegin, TokenKind.OutputEnd, "}}"),
                _ => Tag(next, TokenKind.StatementBegin, TokenKind.StatementEnd, "%}"),
            };
        }
    }

    private int NextTagStart(int from)
    {
        for (var i = source.IndexOf('{', from); i >= 0 && i + 1 < source.Length; i = source.IndexOf('{', i + 1))
            if (source[i + 1] is '{' or '%' or '#')
                return i;
        return -1;
    }

    private void Emit(string text, int at)
    {
        if (text.Length > 0)
            tokens.Add(new TemplateToken(TokenKind.Text, text, at));
    }

    private (bool StripLeading, bool DropNewline) Comment(int begin)
    {
        var end = source.IndexOf("#}", pos, StringComparison.Ordinal);
        if (end < 0)
            throw Error("The comment is not closed with '#}'.", begin);
        var sign = end > pos ? source[end - 1] : '\0';
        pos = end + 2;
        return (sign == '-', sign != '+');
    }

    private (bool StripLeading, bool DropNewline) Tag(int begin, TokenKind open, TokenKind close, string closer)
    {
        tokens.Add(new TemplateToken(open, "", begin));
        var depth = 0;
        while (true)
        {
            while (pos < source.Length && PyText.IsSpace(source[pos]))
                pos++;
            if (pos >= source.Length)
                throw Error($"The tag is not closed with '{closer}'.", begin);
            var c = source[pos];
            if (depth == 0 && (c is '-' or '+') && string.CompareOrdinal(source, pos + 1, closer, 0, 2) == 0 &&
                (c == '-' || open == TokenKind.StatementBegin))
            {
                tokens.Add(new TemplateToken(close, "", pos));
                pos += 3;
                return (c == '-', c != '+' && open == TokenKind.StatementBegin);
            }
            if (depth == 0 && string.CompareOrdinal(source, pos, closer, 0, 2) == 0)
            {
                tokens.Add(new TemplateToken(close, "", pos));
                pos += 2;
                return (false, open == TokenKind.StatementBegin);
            }
            if (c is '\'' or '"')
                tokens.Add(new TemplateToken(TokenKind.String, ReadString(c), pos));
            else if (char.IsAsciiDigit(c))
                ReadNumber();
            else if (char.IsLetter(c) || c == '_')
            {
                var start = pos;
                while (pos < source.Length && (char.IsLetterOrDigit(source[pos]) || source[pos] == '_'))
                    pos++;
                tokens.Add(new TemplateToken(TokenKind.Name, source[start..pos], start));
            }
            else
            {
                var op = Operators.FirstOrDefault(o => string.CompareOrdinal(source, pos, o, 0, o.Length) == 0)
                         ?? throw Error($"Unexpected character '{c}' in a tag.", pos);
                depth += op is "(" or "[" or "{" ? 1 : op is ")" or "]" or "}" ? -1 : 0;
                if (depth < 0)
                    throw Error($"Unexpected '{op}'.", pos);
                tokens.Add(new TemplateToken(TokenKind.Operator, op, pos));
                pos += op.Length;
            }
        }
    }

    // Python's string escapes, which jinja2 applies to string literals.
    private string ReadString(char quote)
    {
        var begin = pos++;
        var text = new StringBuilder();
        while (true)
        {
            if (pos >= source.Length)
                throw Error("The string is not closed.", begin);
            var c = source[pos++];
            if (c == quote)
                break;
            if (c != '\\')
            {
                text.Append(c);
                continue;
            }
            if (pos >= source.Length)
                throw Error("The string is not closed.", begin);
            var e = source[pos++];
            switch (e)
            {
                case 'n': text.Append('\n'); break;
                case 't': text.Append('\t'); break;
                case 'r': text.Append('\r'); break;
                case '0': text.Append('\0'); break;
                case 'a': text.Append('\a'); break;
                case 'b': text.Append('\b'); break;
                case 'f': text.Append('\f'); break;
                case 'v': text.Append('\v'); break;
                case '\\' or '\'' or '"': text.Append(e); break;
                case '\n': break;
                case 'x' or 'u' or 'U':
                    var digits = e == 'x' ? 2 : e == 'u' ? 4 : 8;
                    if (pos + digits > source.Length || !int.TryParse(source.AsSpan(pos, digits),
                            NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out var code) ||
                        code > 0x10FFFF)
                        throw Error($"The escape \\{e} needs {digits} hexadecimal digits.", pos - 2);
                    text.Append(char.ConvertFromUtf32(code));
                    pos += digits;
                    break;
                default: text.Append('\\').Append(e); break;
            }
        }
        return text.ToString();
    }

    private void ReadNumber()
    {
        var start = pos;
        while (pos < source.Length && (char.IsAsciiDigit(source[pos]) || source[pos] == '_'))
            pos++;
        var isFloat = false;
        if (pos + 1 < source.Length && source[pos] == '.' && char.IsAsciiDigit(source[pos + 1]))
        {
            isFloat = true;
            pos++;
            while (pos < source.Length && char.IsAsciiDigit(source[pos]))
                pos++;
        }
        if (pos < source.Length && source[pos] is 'e' or 'E')
        {
            var save = pos++;
            if (pos < source.Length && source[pos] is '+' or '-')
                pos++;
            if (pos < source.Length && char.IsAsciiDigit(source[pos]))
            {
                isFloat = true;
                while (pos < source.Length && char.IsAsciiDigit(source[pos]))
                    pos++;
            }
            else
                pos = save;
        }
        tokens.Add(new TemplateToken(isFloat ? TokenKind.Float : TokenKind.Integer,
            source[start..pos].Replace("_", ""), start));
    }
}
