namespace RetNet.Ilgpu.Generation.ChatTemplates;

/// <summary>
/// A Jinja template parsed once and rendered many times, with jinja2's semantics as Hugging Face transformers
/// configures them for chat templates (an immutable sandbox, trim_blocks and lstrip_blocks on, the loopcontrols
/// extension, <c>raise_exception</c>, <c>strftime_now</c> and a json.dumps <c>tojson</c>). The subset: <c>{{ }}</c>,
/// <c>{% if/elif/else %}</c>, <c>{% for … in … [if …] %}…{% else %}</c> with <c>loop</c>, <c>{% set %}</c> (also
/// <c>namespace</c> attributes and blocks), <c>{% macro %}</c>, <c>{% break/continue %}</c>,
/// <c>{% generation %}</c>, comments, whitespace control; Python literals and operators, filters, tests and the
/// string, dict and list methods templates use. Values follow Python; undefined names follow jinja2's default
/// Undefined.
/// </summary>
public sealed class JinjaTemplate
{
    private readonly IReadOnlyList<Statement> body;
    private readonly Func<int, (int Line, int Column)> position;

    private JinjaTemplate(string source, IReadOnlyList<Statement> body, Func<int, (int Line, int Column)> position)
    {
        Source = source;
        this.body = body;
        this.position = position;
    }

    /// <summary>The template's text as given.</summary>
    public string Source { get; }

    /// <summary>Parses <paramref name="source"/>.</summary>
    /// <exception cref="ChatTemplateSyntaxException">The text is not in the supported subset of Jinja; the message
    /// says what and where (line and column).</exception>
    public static JinjaTemplate Parse(string source)
    {
        ArgumentNullException.ThrowIfNull(source);
        var (tokens, position) = TemplateLexer.Lex(TemplateLexer.Normalize(source));
        return new JinjaTemplate(source, TemplateParser.Parse(tokens, position), position);
    }

    /// <summary>
    /// The text the template renders to over <paramref name="context"/>, whose values are null, bool, int, long,
    /// double, string, lists (<see cref="IEnumerable{T}"/>) and string-keyed dictionaries of these.
    /// </summary>
    /// <param name="context">The variables.</param>
    /// <param name="limits">Bounds on output and work (default <see cref="TemplateLimits.Default"/>).</param>
    /// <param name="clock">The time <c>strftime_now</c> formats (default: local now, as transformers).</param>
    /// <exception cref="ChatTemplateRaisedException">The template called raise_exception.</exception>
    /// <exception cref="ChatTemplateRenderException">The template failed (an undefined value used where jinja2 fails,
    /// a type error) or passed a limit.</exception>
    public string Render(IReadOnlyDictionary<string, object?> context, TemplateLimits? limits = null,
        Func<DateTime>? clock = null)
    {
        ArgumentNullException.ThrowIfNull(context);
        var values = context.ToDictionary(p => p.Key, p => ToValue(p.Value));
        return TemplateRenderer.Render(body, values, limits ?? TemplateLimits.Default, position,
            clock ?? (() => DateTime.Now));
    }

    /// <summary>A .NET value as the template's Python-like value.</summary>
    private static object? ToValue(object? value) => value switch
    {
        null or bool or long or double or string => value,
        int i => (long)i,
        float f => (double)f,
        IReadOnlyDictionary<string, object?> d => d.ToDictionary(p => (object)p.Key, p => ToValue(p.Value)),
        System.Collections.IEnumerable e => e.Cast<object?>().Select(ToValue).ToList(),
        _ => throw new ArgumentException($"A context value of type {value.GetType().Name} has no template " +
                                         "equivalent; expected null, bool, numbers, strings, lists or dictionaries.",
            nameof(value)),
    };
}
