using System.Text.Json;
using RetNet.Ilgpu.Generation.ChatTemplates;

namespace RetNet.Ilgpu.Tests.Generation;

/// <summary>
/// The Jinja engine one construct at a time: Fixtures/ChatTemplates/constructs.json holds jinja2's own render (or
/// error) of each construct templates use (loops and loop variables, if/elif, namespace, scoping, macros, comments,
/// whitespace control, trim_blocks/lstrip_blocks, break/continue, Python literals and operators, filters, tests,
/// string and dict methods, Undefined, unicode); then what jinja2 cannot be asked for: syntax errors with their
/// position, raise_exception, strftime_now on a fixed clock, and the limits that stop hostile templates.
/// </summary>
public sealed class ChatTemplateEngineTests
{
    private static readonly string Constructs =
        Path.Combine(AppContext.BaseDirectory, "Fixtures", "ChatTemplates", "constructs.json");

    private static object? FromJson(JsonElement e) => e.ValueKind switch
    {
        JsonValueKind.String => e.GetString(),
        JsonValueKind.Number => e.TryGetInt64(out var l) ? l : (object?)e.GetDouble(),
        JsonValueKind.True => true,
        JsonValueKind.False => false,
        JsonValueKind.Array => e.EnumerateArray().Select(FromJson).ToList(),
        JsonValueKind.Object => e.EnumerateObject().ToDictionary(p => p.Name, p => FromJson(p.Value)),
        _ => null,
    };

    private static string Render(string template, IReadOnlyDictionary<string, object?>? context = null,
        TemplateLimits? limits = null) =>
        JinjaTemplate.Parse(template).Render(context ?? new Dictionary<string, object?>(), limits);

    [Fact]
    public void Every_construct_renders_as_jinja2_renders_it()
    {
        using var document = JsonDocument.Parse(File.ReadAllText(Constructs));
        var context = (Dictionary<string, object?>)FromJson(document.RootElement.GetProperty("context"))!;
        var cases = document.RootElement.GetProperty("cases").EnumerateArray().ToList();
        Assert.True(cases.Count >= 20);
        foreach (var c in cases)
        {
            var name = c.GetProperty("name").GetString();
            var template = JinjaTemplate.Parse(c.GetProperty("template").GetString()!);
            if (c.TryGetProperty("output", out var output))
            {
                Assert.True(output.GetString() == template.Render(context),
                    $"{name}: expected {JsonSerializer.Serialize(output.GetString())}, got " +
                    JsonSerializer.Serialize(template.Render(context)));
                continue;
            }
            var error = Assert.Throws<ChatTemplateRenderException>(() => template.Render(context));
            Assert.Equal(c.GetProperty("message").GetString(), error.Detail);
        }
    }

    [Fact]
    public void A_construct_rendered_differently_is_rejected()
    {
        using var document = JsonDocument.Parse(File.ReadAllText(Constructs));
        var loop = document.RootElement.GetProperty("cases").EnumerateArray()
            .First(c => c.GetProperty("name").GetString() == "trim-and-lstrip");
        var expected = loop.GetProperty("output").GetString();
        // The same template with the whitespace jinja2's trim_blocks and lstrip_blocks remove made explicit.
        Assert.NotEqual(expected, Render("  {%+ if true +%}\nx\n  {%+ endif +%}\ny"));
        Assert.Equal("x\ny", Render("  {% if true %}\nx\n  {% endif %}\ny"));
    }

    [Theory]
    [InlineData("{% if x %}open", "'{% if %}' is not closed", 1, 4)]
    [InlineData("line one\n{{ 1 + }}", "Expected an expression", 2, 8)]
    [InlineData("{% for %}{% endfor %}", "Expected a name", 1, 8)]
    [InlineData("{% include 'other.jinja' %}", "Unknown or unsupported statement 'include'", 1, 4)]
    [InlineData("a\nb {{ 'unclosed }}", "The string is not closed", 2, 6)]
    [InlineData("{% endfor %}", "Unexpected '{% endfor %}'", 1, 4)]
    [InlineData("{% break %}", "'break' outside a for loop", 1, 4)]
    [InlineData("x {# comment", "The comment is not closed", 1, 3)]
    [InlineData("{{ a ", "The tag is not closed", 1, 1)]
    public void A_syntax_error_names_what_and_where(string template, string what, int line, int column)
    {
        var error = Assert.Throws<ChatTemplateSyntaxException>(() => JinjaTemplate.Parse(template));
        Assert.Contains(what, error.Message);
        Assert.Equal((line, column), (error.Line, error.Column));
        Assert.Contains($"line {line}, column {column}", error.Message);
    }

    [Fact]
    public void Raise_exception_throws_the_templates_message_with_its_position()
    {
        var error = Assert.Throws<ChatTemplateRaisedException>(() =>
            Render("{% if messages | length > 1 %}\n  {{ raise_exception('Roles must alternate') }}{% endif %}",
                new Dictionary<string, object?> { ["messages"] = new[] { "a", "b" } }));
        Assert.Equal("Roles must alternate", error.Detail);
        Assert.Equal(2, error.Line);
        Assert.Equal("", Render("{% if false %}{{ raise_exception('no') }}{% endif %}"));
    }

    [Fact]
    public void Undefined_prints_empty_is_false_iterates_empty_and_fails_when_used()
    {
        Assert.Equal("[]|f|0|[]", Render("[{{ nope }}]|{{ 't' if nope else 'f' }}|{{ nope | length }}|[{% for x in nope %}x{% endfor %}]"));
        var error = Assert.Throws<ChatTemplateRenderException>(() => Render("\n\n{{ nope.attribute }}"));
        Assert.Equal(("'nope' is undefined", 3), (error.Detail, error.Line));
        Assert.Throws<ChatTemplateRenderException>(() => Render("{{ nope < 1 }}"));
    }

    [Fact]
    public void Strftime_now_formats_the_clock()
    {
        var template = JinjaTemplate.Parse("{{ strftime_now('%d %b %Y') }}|{{ strftime_now('%Y-%m-%d %H:%M:%S %A %B') }}");
        Assert.Equal("26 Jul 2024|2024-07-26 09:05:03 Friday July",
            template.Render(new Dictionary<string, object?>(), clock: () => new DateTime(2024, 7, 26, 9, 5, 3)));
    }

    [Fact]
    public void Output_longer_than_the_cap_is_an_error()
    {
        var limits = new TemplateLimits { MaxOutputChars = 1000 };
        Assert.Equal(900, Render("{% for i in range(9) %}{{ 'x' * 100 }}{% endfor %}", limits: limits).Length);
        var error = Assert.Throws<ChatTemplateRenderException>(() =>
            Render("{% for i in range(11) %}{{ 'x' * 100 }}{% endfor %}", limits: limits));
        Assert.Contains("longer than 1000 characters", error.Message);
        Assert.Throws<ChatTemplateRenderException>(() => Render("{{ 'x' * 1000000000 }}", limits: limits));
        Assert.Throws<ChatTemplateRenderException>(() =>
            Render("{% set ns = namespace(s='x') %}{% for i in range(40) %}{% set ns.s = ns.s + ns.s %}{% endfor %}",
                limits: limits));
    }

    [Fact]
    public void Loops_and_recursion_past_the_step_and_depth_limits_are_errors()
    {
        var limits = new TemplateLimits { MaxSteps = 1000, MaxCallDepth = 8 };
        Assert.Equal("", Render("{% for i in range(30) %}{% for j in range(30) %}{% endfor %}{% endfor %}", limits: limits));
        var steps = Assert.Throws<ChatTemplateRenderException>(() =>
            Render("{% for i in range(40) %}{% for j in range(40) %}{% endfor %}{% endfor %}", limits: limits));
        Assert.Contains("more than 1000 loop iterations", steps.Message);
        Assert.Throws<ChatTemplateRenderException>(() => Render("{{ range(1000000000) | length }}", limits: limits));
        var depth = Assert.Throws<ChatTemplateRenderException>(() =>
            Render("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", limits: limits));
        Assert.Contains("nested more than 8 deep", depth.Message);
    }

    [Theory]
    [InlineData("{{ ", "(", "1", ")", " }}")]
    [InlineData("{{ ", "[", "1", "]", " }}")]
    [InlineData("{{ ", "not ", "true", "", " }}")]
    [InlineData("{{ ", "-", "1", "", " }}")]
    [InlineData("", "{% if true %}", "x", "{% endif %}", "")]
    public void Nesting_too_deep_to_parse_safely_is_a_syntax_error(string before, string open, string inner,
        string close, string after)
    {
        string Nest(int depth) => before + string.Concat(Enumerable.Repeat(open, depth)) + inner +
                                  string.Concat(Enumerable.Repeat(close, depth)) + after;
        JinjaTemplate.Parse(Nest(50));
        var error = Assert.Throws<ChatTemplateSyntaxException>(() => JinjaTemplate.Parse(Nest(100_000)));
        Assert.Contains("more than 200 deep", error.Message);
    }

    [Fact]
    public void Context_values_become_python_values()
    {
        var context = new Dictionary<string, object?>
        {
            ["n"] = 3,
            ["f"] = 0.5f,
            ["items"] = new[] { 1, 2 },
            ["d"] = new Dictionary<string, object?> { ["k"] = "v" },
        };
        Assert.Equal("4 0.5 [1, 2] v", Render("{{ n + 1 }} {{ f }} {{ items }} {{ d.k }}", context));
        Assert.Throws<ArgumentException>(() => Render("{{ x }}", new Dictionary<string, object?> { ["x"] = new object() }));
    }
}
