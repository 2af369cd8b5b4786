namespace RetNet.Ilgpu.Generation.ChatTemplates;

/// <summary>A chat template that cannot be parsed or rendered; <see cref="Line"/> and <see cref="Column"/> (1-based)
/// say where in the template, when known.</summary>
public class ChatTemplateException : Exception
{
    /// <summary>An error at <paramref name="line"/>:<paramref name="column"/> of the template (0 when unknown).</summary>
    public ChatTemplateException(string message, int line = 0, int column = 0)
        : base(line > 0 ? $"{message} (template line {line}, column {column})" : message)
    {
        (Line, Column, Detail) = (line, column, message);
    }

    /// <summary>The 1-based line of the template the error is at, 0 when unknown.</summary>
    public int Line { get; }

    /// <summary>The 1-based column of the template the error is at, 0 when unknown.</summary>
    public int Column { get; }

    /// <summary>The message without the position.</summary>
    public string Detail { get; }
}

/// <summary>A template whose text is not Jinja this engine reads: the message names the construct and its position.
/// </summary>
public sealed class ChatTemplateSyntaxException(string message, int line, int column)
    : ChatTemplateException(message, line, column);

/// <summary>A template that failed while rendering: an undefined value used where jinja2 fails, a type error, or
/// a limit of <see cref="TemplateLimits"/> reached.</summary>
public sealed class ChatTemplateRenderException(string message, int line = 0, int column = 0)
    : ChatTemplateException(message, line, column);

/// <summary>A template that refused the conversation by calling <c>raise_exception(message)</c> (e.g. roles that do
/// not alternate); <see cref="ChatTemplateException.Detail"/> is the template's own message.</summary>
public sealed class ChatTemplateRaisedException(string message, int line = 0, int column = 0)
    : ChatTemplateException(message, line, column);

/// <summary>The bounds one render keeps to, so that a hostile template cannot loop or allocate without end.</summary>
public sealed record TemplateLimits
{
    /// <summary>The most characters of output, and of any string a template builds (default 4 Mi).</summary>
    public int MaxOutputChars { get; init; } = 4 << 20;

    /// <summary>The most loop iterations and macro calls in one render, all together (default 1 Mi).</summary>
    public int MaxSteps { get; init; } = 1 << 20;

    /// <summary>The deepest nesting of macro calls (default 64).</summary>
    public int MaxCallDepth { get; init; } = 64;

    /// <summary>The defaults.</summary>
    public static TemplateLimits Default { get; } = new();
}
