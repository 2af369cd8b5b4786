using System.Text.Json;

namespace RetNet.Ilgpu.Generation.ChatTemplates;

/// <summary>
/// A model folder's chat template with the special-token texts it is rendered with, as transformers'
/// <c>apply_chat_template</c> renders it: the context holds <c>messages</c> (a list of {role, content} dicts),
/// <c>add_generation_prompt</c>, <c>bos_token</c>/<c>eos_token</c> (when the folder names them), and
/// <c>tools</c>/<c>documents</c> as none; other variables are undefined.
/// </summary>
/// <param name="template">The parsed template.</param>
/// <param name="beginningOfText">The text of the bos_token, or null when the folder names none.</param>
/// <param name="endOfText">The text of the eos_token, or null when the folder names none.</param>
public sealed class ChatTemplate(JinjaTemplate template, string? beginningOfText, string? endOfText)
{
    /// <summary>The file a newer transformers saves the template in; it wins over tokenizer_config.json's.</summary>
    public const string TemplateFileName = "chat_template.jinja";

    /// <summary>The parsed template.</summary>
    public JinjaTemplate Template { get; } = template ?? throw new ArgumentNullException(nameof(template));

    /// <summary>The text of the bos_token, or null.</summary>
    public string? BeginningOfText { get; } = beginningOfText;

    /// <summary>The text of the eos_token, or null.</summary>
    public string? EndOfText { get; } = endOfText;

    /// <summary>
    /// The chat template of the model folder <paramref name="folder"/>, or null when it has none: its
    /// <c>chat_template.jinja</c> if there is one (transformers reads that file over the config's entry), else
    /// tokenizer_config.json's <c>chat_template</c> (a string, or a list of {name, template} of which "default" is
    /// used); bos_token and eos_token from tokenizer_config.json (a string, or an AddedToken {"content": …}).
    /// </summary>
    /// <exception cref="InvalidDataException">tokenizer_config.json does not parse or a field has the wrong type.
    /// </exception>
    /// <exception cref="ChatTemplateSyntaxException">The template is not in the supported Jinja subset.</exception>
    public static ChatTemplate? FromModelFolder(string folder)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(folder);
        var file = Path.Combine(folder, TemplateFileName);
        var (configTemplate, bos, eos) = ReadTokenizerConfig(folder);
        var text = File.Exists(file) ? File.ReadAllText(file) : configTemplate;
        return text is null ? null : new ChatTemplate(JinjaTemplate.Parse(text), bos, eos);
    }

    /// <summary>The template in the file <paramref name="path"/>, with the bos/eos texts of the model folder
    /// <paramref name="folder"/> (the <c>--chat-template</c> override).</summary>
    /// <exception cref="FileNotFoundException">There is no such file.</exception>
    /// <exception cref="InvalidDataException">tokenizer_config.json does not parse.</exception>
    /// <exception cref="ChatTemplateSyntaxException">The template is not in the supported Jinja subset.</exception>
    public static ChatTemplate FromFile(string path, string folder)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(path);
        if (!File.Exists(path))
            throw new FileNotFoundException($"There is no chat template file {path}.", path);
        var (_, bos, eos) = ReadTokenizerConfig(folder);
        return new ChatTemplate(JinjaTemplate.Parse(File.ReadAllText(path)), bos, eos);
    }

    /// <summary>The prompt text of a conversation of (role, text) messages.</summary>
    /// <param name="messages">The messages, in order.</param>
    /// <param name="addGenerationPrompt">Whether the template should end with the start of an assistant turn.
    /// </param>
    /// <param name="limits">Bounds on the render (default <see cref="TemplateLimits.Default"/>).</param>
    /// <param name="clock">The time strftime_now formats (default local now).</param>
    /// <exception cref="ChatTemplateRaisedException">The template refused the conversation.</exception>
    /// <exception cref="ChatTemplateRenderException">The template failed or passed a limit.</exception>
    public string Render(IEnumerable<(string Role, string Text)> messages, bool addGenerationPrompt = true,
        TemplateLimits? limits = null, Func<DateTime>? clock = null)
    {
        ArgumentNullException.ThrowIfNull(messages);
        var context = new Dictionary<string, object?>
        {
            ["messages"] = messages.Select(m => (object?)new Dictionary<string, object?>
            {
                ["role"] = m.Role,
                ["content"] = m.Text,
            }).ToList(),
            ["add_generation_prompt"] = addGenerationPrompt,
            ["tools"] = null,
            ["documents"] = null,
        };
        if (BeginningOfText is not null)
            context["bos_token"] = BeginningOfText;
        if (EndOfText is not null)
            context["eos_token"] = EndOfText;
        return Template.Render(context, limits, clock);
    }

    private static (string? Template, string? Bos, string? Eos) ReadTokenizerConfig(string folder)
    {
        var path = Path.Combine(folder, "tokenizer_config.json");
        if (!File.Exists(path))
            return (null, null, null);
        try
        {
            using var document = JsonDocument.Parse(File.ReadAllBytes(path));
            var root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
                throw new InvalidDataException($"{path} is not a JSON object.");
            return (TemplateText(root, path), TokenText(root, "bos_token", path), TokenText(root, "eos_token", path));
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{path} is not JSON: {e.Message}", e);
        }
    }

    private static string? TemplateText(JsonElement root, string path)
    {
        if (!root.TryGetProperty("chat_template", out var value) || value.ValueKind == JsonValueKind.Null)
            return null;
        if (value.ValueKind == JsonValueKind.String)
            return value.GetString();
        if (value.ValueKind == JsonValueKind.Array)
        {
            foreach (var entry in value.EnumerateArray())
                if (entry.ValueKind == JsonValueKind.Object && entry.TryGetProperty("name", out var name) &&
                    name.ValueKind == JsonValueKind.String && name.GetString() == "default" &&
                    entry.TryGetProperty("template", out var text) && text.ValueKind == JsonValueKind.String)
                    return text.GetString();
            throw new InvalidDataException($"{path}: chat_template is a list of named templates without a " +
                                           "\"default\" one; pass the one to use with --chat-template.");
        }
        throw new InvalidDataException($"{path}: chat_template is {value.ValueKind}; expected a string or a list " +
                                       "of {\"name\", \"template\"}.");
    }

    /// <summary>A special token's text: a string, or an AddedToken object's "content".</summary>
    internal static string? TokenText(JsonElement root, string field, string path)
    {
        if (!root.TryGetProperty(field, out var value) || value.ValueKind == JsonValueKind.Null)
            return null;
        if (value.ValueKind == JsonValueKind.Object && value.TryGetProperty("content", out var content))
            value = content;
        return value.ValueKind == JsonValueKind.String
            ? value.GetString()
            : throw new InvalidDataException($"{path}: {field} is {value}; expected the token's text.");
    }
}
