using System.Text.Json;
using RetNet.Ilgpu.Generation.ChatTemplates;
using RetNet.Ilgpu.Tokenizers;

namespace RetNet.Ilgpu.Generation;

/// <summary>A conversation made into a prompt: its text, its ids when the format encodes it itself, and where the
/// reply ends.</summary>
/// <param name="Text">The prompt text.</param>
/// <param name="Ids">The prompt's ids, or null to encode <paramref name="Text"/> as a completion prompt is.</param>
/// <param name="StopSequences">Texts that end the reply (excluded from it).</param>
/// <param name="StopTokens">Ids that end the reply, besides the tokenizer's end-of-text.</param>
public sealed record ChatPrompt(string Text, IReadOnlyList<int>? Ids, IReadOnlyList<string> StopSequences,
    IReadOnlySet<int> StopTokens);

/// <summary>How a model turns a conversation into a prompt: <see cref="PlainChatFormat"/>, or a model folder's chat
/// template (<see cref="TemplateChatFormat"/>); <see cref="ChatFormats.FromModelFolder"/> picks one.</summary>
public interface IChatFormat
{
    /// <summary>The prompt for <paramref name="messages"/> (role, text), asking for the assistant's reply.</summary>
    /// <exception cref="ChatTemplateException">A template refused the conversation (raise_exception) or failed.
    /// </exception>
    ChatPrompt Format(IReadOnlyList<(string Role, string Text)> messages);
}

/// <summary>
/// A model folder's chat template as transformers applies it: rendered with add_generation_prompt, then encoded with
/// its special-token texts as their ids and nothing added (<see cref="SpecialTokenText.EncodeRendered"/>: the
/// template writes its own bos). The reply ends at any of <see cref="StopTokens"/>; no stop sequence is added.
/// </summary>
/// <param name="template">The template.</param>
/// <param name="tokenizer">The model's tokenizer.</param>
/// <param name="stopTokens">The ids that end a reply (<see cref="ChatFormats.TemplateStopTokens"/>).</param>
public sealed class TemplateChatFormat(ChatTemplate template, ITextTokenizer tokenizer, IReadOnlySet<int> stopTokens)
    : IChatFormat
{
    private readonly ITextTokenizer tokenizer = tokenizer ?? throw new ArgumentNullException(nameof(tokenizer));

    /// <summary>The template.</summary>
    public ChatTemplate Template { get; } = template ?? throw new ArgumentNullException(nameof(template));

    /// <summary>The ids that end a reply.</summary>
    public IReadOnlySet<int> StopTokens { get; } = stopTokens ?? throw new ArgumentNullException(nameof(stopTokens));

    /// <inheritdoc/>
    public ChatPrompt Format(IReadOnlyList<(string Role, string Text)> messages)
    {
        var text = Template.Render(messages, addGenerationPrompt: true);
        return new ChatPrompt(text, tokenizer.EncodeRendered(text), [], StopTokens);
    }
}

/// <summary>Picks a model folder's chat format.</summary>
public static class ChatFormats
{
    /// <summary>
    /// The chat format of the model folder <paramref name="folder"/>: its chat template
    /// (<see cref="ChatTemplate.FromModelFolder"/>, or the file <paramref name="templateFile"/> when given) with
    /// <see cref="TemplateStopTokens"/>, else <see cref="PlainChatFormat"/>.
    /// </summary>
    /// <exception cref="InvalidDataException">A config does not parse.</exception>
    /// <exception cref="FileNotFoundException"><paramref name="templateFile"/> does not exist.</exception>
    /// <exception cref="ChatTemplateSyntaxException">The template is not in the supported Jinja subset.</exception>
    public static IChatFormat FromModelFolder(string folder, ITextTokenizer tokenizer, string? templateFile = null)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(folder);
        ArgumentNullException.ThrowIfNull(tokenizer);
        var template = templateFile is null
            ? ChatTemplate.FromModelFolder(folder)
            : ChatTemplate.FromFile(templateFile, folder);
        return template is null
            ? PlainChatFormat.Instance
            : new TemplateChatFormat(template, tokenizer, TemplateStopTokens(folder, tokenizer, template));
    }

    /// <summary>
    /// The ids a templated reply stops at, as transformers' generate stops: the tokenizer's end-of-text, every id of
    /// generation_config.json's <c>eos_token_id</c> (an int or a list; Llama-3 lists &lt;|eot_id|&gt; there), and the
    /// id of the template's eos_token text when it is a special token of the vocabulary (Qwen2's &lt;|im_end|&gt;).
    /// Other end-of-turn texts a template writes are not added: generation configs that want them list them.
    /// </summary>
    /// <exception cref="InvalidDataException">generation_config.json does not parse or names an id outside the
    /// vocabulary.</exception>
    public static IReadOnlySet<int> TemplateStopTokens(string folder, ITextTokenizer tokenizer, ChatTemplate template)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        ArgumentNullException.ThrowIfNull(template);
        var stops = new HashSet<int>();
        if (tokenizer.EndOfText is { } end)
            stops.Add(end);
        if (template.EndOfText is { } eos && tokenizer.SpecialTokens.TryGetValue(eos, out var eosId))
            stops.Add(eosId);
        var path = Path.Combine(folder, "generation_config.json");
        if (!File.Exists(path))
            return stops;
        try
        {
            using var document = JsonDocument.Parse(File.ReadAllBytes(path));
            if (document.RootElement.ValueKind == JsonValueKind.Object &&
                document.RootElement.TryGetProperty("eos_token_id", out var value))
            {
                var ids = value.ValueKind == JsonValueKind.Array ? value.EnumerateArray().ToList() : [value];
                foreach (var id in ids.Where(i => i.ValueKind != JsonValueKind.Null))
                    stops.Add(id.ValueKind == JsonValueKind.Number && id.TryGetInt32(out var i) &&
                              i >= 0 && i < tokenizer.VocabularySize
                        ? i
                        : throw new InvalidDataException($"{path}: eos_token_id {id} is not an id of the " +
                                                         $"vocabulary [0, {tokenizer.VocabularySize})."));
            }
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{path} is not JSON: {e.Message}", e);
        }
        return stops;
    }
}
