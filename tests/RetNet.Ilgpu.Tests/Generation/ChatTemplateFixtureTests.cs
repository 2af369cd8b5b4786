using System.Text.Json;
using RetNet.Ilgpu.Generation.ChatTemplates;

namespace RetNet.Ilgpu.Tests.Generation;

/// <summary>
/// The C# Jinja engine against jinja2 itself: Fixtures/ChatTemplates holds what jinja2 3.1.6, set up as transformers
/// sets it up, renders for public chat templates (ChatML, Llama-2/3/3.1, Mistral, Zephyr, Gemma, Phi-3, DeepSeek
/// Coder, Command-R, Vicuna, OpenChat) over several conversations, or the error it raises
/// (tools/chat-template-fixtures). Every render must be equal to the character, every raise a raise with the same
/// message; the negative controls show the comparison rejects a render without trim_blocks and a reordered
/// conversation.
/// </summary>
public sealed class ChatTemplateFixtureTests
{
    private static readonly string FixtureFolder = Path.Combine(AppContext.BaseDirectory, "Fixtures", "ChatTemplates");

    private sealed record Case(string Conversation, bool AddGenerationPrompt, List<(string Role, string Text)> Messages,
        string? Output, string? Error, string? Message);

    private sealed record Fixture(string Name, string Template, string? Bos, string? Eos, List<Case> Cases);

    private static Fixture Read(string name)
    {
        using var document = JsonDocument.Parse(File.ReadAllText(Path.Combine(FixtureFolder, name + ".json")));
        var root = document.RootElement;
        string? Text(JsonElement e, string field) =>
            e.TryGetProperty(field, out var v) && v.ValueKind == JsonValueKind.String ? v.GetString() : null;
        var cases = root.GetProperty("cases").EnumerateArray().Select(c => new Case(
            c.GetProperty("conversation").GetString()!,
            c.GetProperty("add_generation_prompt").GetBoolean(),
            c.GetProperty("messages").EnumerateArray()
                .Select(m => (m.GetProperty("role").GetString()!, m.GetProperty("content").GetString()!)).ToList(),
            Text(c, "output"), Text(c, "error"), Text(c, "message"))).ToList();
        return new Fixture(root.GetProperty("name").GetString()!, root.GetProperty("template").GetString()!,
            Text(root, "bos_token"), Text(root, "eos_token"), cases);
    }

    private static List<string> Names() => Directory.GetFiles(FixtureFolder, "*.json")
        .Select(Path.GetFileNameWithoutExtension).Where(n => n is not ("controls" or "constructs")).Select(n => n!)
        .Order(StringComparer.Ordinal).ToList();

    public static TheoryData<string> Templates() => new(Names());

    /// <summary>What the engine does for a case: the text, or the raised message prefixed by "raised: ".</summary>
    private static string Run(ChatTemplate template, Case c, IReadOnlyList<(string Role, string Text)>? messages = null)
    {
        try
        {
            return template.Render(messages ?? c.Messages, c.AddGenerationPrompt);
        }
        catch (ChatTemplateRaisedException e)
        {
            return "raised: " + e.Detail;
        }
    }

    private static string Expected(Case c) => c.Output ?? $"{(c.Error == "raised" ? "raised" : c.Error)}: {c.Message}";

    [Fact]
    public void The_fixtures_cover_the_widely_used_templates_and_raising_conversations()
    {
        var names = Names();
        Assert.Subset(names.ToHashSet(), new HashSet<string>
        {
            "chatml-qwen2", "llama-2-chat", "llama-3-instruct", "llama-3.1-instruct", "mistral-7b-instruct-v0.2",
            "zephyr-7b-beta", "gemma-7b-it", "phi-3-mini",
        });
        Assert.Contains(names.Select(Read).SelectMany(f => f.Cases), c => c.Error == "raised");
    }

    [Theory]
    [MemberData(nameof(Templates))]
    public void Every_render_equals_jinja2s(string name)
    {
        var fixture = Read(name);
        var template = new ChatTemplate(JinjaTemplate.Parse(fixture.Template), fixture.Bos, fixture.Eos);
        Assert.NotEmpty(fixture.Cases);
        foreach (var c in fixture.Cases)
        {
            var actual = Run(template, c);
            Assert.True(Expected(c) == actual,
                $"{name} / {c.Conversation} / add_generation_prompt={c.AddGenerationPrompt}:\nexpected " +
                $"{JsonSerializer.Serialize(Expected(c))}\nactual   {JsonSerializer.Serialize(actual)}");
        }
    }

    [Fact]
    public void The_comparison_rejects_a_render_without_trim_blocks()
    {
        using var document = JsonDocument.Parse(File.ReadAllText(Path.Combine(FixtureFolder, "controls.json")));
        var controls = document.RootElement.GetProperty("trim_blocks_off").EnumerateArray().ToList();
        Assert.NotEmpty(controls);
        foreach (var control in controls)
        {
            var fixture = Read(control.GetProperty("name").GetString()!);
            var c = fixture.Cases.First(x => x.Conversation == "system-multi-turn" && x.AddGenerationPrompt);
            var template = new ChatTemplate(JinjaTemplate.Parse(fixture.Template), fixture.Bos, fixture.Eos);
            Assert.Equal(Expected(c), Run(template, c));
            Assert.NotEqual(control.GetProperty("output_without_trim_blocks").GetString(), Run(template, c));
        }
    }

    [Fact]
    public void The_comparison_rejects_a_swapped_message_order()
    {
        foreach (var name in new[] { "chatml-qwen2", "llama-3.1-instruct", "zephyr-7b-beta" })
        {
            var fixture = Read(name);
            var c = fixture.Cases.First(x => x.Conversation == "no-system" && x.AddGenerationPrompt);
            var template = new ChatTemplate(JinjaTemplate.Parse(fixture.Template), fixture.Bos, fixture.Eos);
            var swapped = c.Messages.ToList();
            (swapped[0], swapped[2]) = (swapped[2], swapped[0]);
            Assert.NotEqual(Expected(c), Run(template, c, swapped));
        }
    }
}
