using System.Runtime.CompilerServices;
using System.Text;
using Microsoft.Extensions.AI;

namespace RetNet.Ilgpu.Generation;

/// <summary>
/// The plain chat format of models without a chat template: one line per message, "System: …", "User: …",
/// "Assistant: …" (other roles by their own name, capitalised), then "Assistant:" for the model to continue; the
/// reply ends at "\nUser:" (a stop sequence) or the tokenizer's end-of-text. A model folder with a chat template is
/// rendered with that instead (<see cref="ChatFormats.FromModelFolder"/>).
/// </summary>
public sealed class PlainChatFormat : IChatFormat
{
    private PlainChatFormat()
    {
    }

    /// <summary>The format as an <see cref="IChatFormat"/>.</summary>
    public static PlainChatFormat Instance { get; } = new();

    /// <summary>The stop sequence that ends a reply: the model starting the user's next turn.</summary>
    public const string UserTurn = "\nUser:";

    /// <summary>The prompt of a conversation of (role, text) messages, ending with "Assistant:".</summary>
    public static string Render(IEnumerable<(string Role, string Text)> messages)
    {
        ArgumentNullException.ThrowIfNull(messages);
        var prompt = new StringBuilder();
        foreach (var (role, text) in messages)
            prompt.Append(Label(role)).Append(": ").Append(text).Append('\n');
        return prompt.Append("Assistant:").ToString();
    }

    /// <inheritdoc/>
    /// <remarks>The prompt is encoded as any completion prompt is (the tokenizer adds its beginning-of-text id); the
    /// stop sequence is <see cref="UserTurn"/>.</remarks>
    public ChatPrompt Format(IReadOnlyList<(string Role, string Text)> messages) =>
        new(Render(messages), Ids: null, [UserTurn], new HashSet<int>());

    private static string Label(string role) => role.Length == 0
        ? "User"
        : char.ToUpperInvariant(role[0]) + role[1..].ToLowerInvariant();
}

/// <summary>
/// A model in process through <see cref="IChatClient"/> (Microsoft.Extensions.AI), over the same
/// <see cref="TextCompletions"/> path the HTTP server uses: the conversation rendered by the chat format (the model
/// folder's chat template, or <see cref="PlainChatFormat"/>), <see cref="ChatOptions"/> mapped to
/// <see cref="SamplingOptions"/> (MaxOutputTokens, Temperature, TopP, TopK, Seed, StopSequences; the others are
/// ignored), usage counted in tokens.
/// </summary>
/// <param name="completions">The text path to generate on.</param>
/// <param name="modelId">The model's name in responses.</param>
/// <param name="format">How conversations become prompts (default <see cref="PlainChatFormat"/>; a model folder's
/// own: <see cref="ChatFormats.FromModelFolder"/>). A template that refuses a conversation throws its
/// <see cref="ChatTemplates.ChatTemplateException"/> from the call.</param>
public sealed class RetNetChatClient(TextCompletions completions, string modelId, IChatFormat? format = null)
    : IChatClient
{
    private readonly TextCompletions completions = completions ?? throw new ArgumentNullException(nameof(completions));

    private readonly IChatFormat format = format ?? PlainChatFormat.Instance;

    /// <summary>The model's name in responses.</summary>
    public string ModelId { get; } = modelId ?? throw new ArgumentNullException(nameof(modelId));

    /// <summary>The sampling options <paramref name="options"/> ask for: <see cref="SamplingOptions"/>' defaults where
    /// they say nothing, the tokenizer's end-of-text as a stop token.</summary>
    /// <exception cref="ArgumentOutOfRangeException">A value out of range (the parameter names the
    /// <see cref="SamplingOptions"/> property), or a seed outside the 32-bit range.</exception>
    public SamplingOptions Sampling(ChatOptions? options)
    {
        var sampling = new SamplingOptions
        {
            StopTokens = completions.Tokenizer.EndOfText is { } end ? new HashSet<int> { end } : new HashSet<int>(),
        };
        if (options is null)
            return sampling;
        if (options.MaxOutputTokens is { } max)
            sampling = sampling with { MaxTokens = max };
        if (options.Temperature is { } temperature)
            sampling = sampling with { Temperature = temperature };
        if (options.TopP is { } topP)
            sampling = sampling with { TopP = topP };
        if (options.TopK is { } topK)
            sampling = sampling with { TopK = topK };
        if (options.Seed is { } seed)
            sampling = sampling with
            {
                Seed = seed is >= int.MinValue and <= int.MaxValue
                    ? (int)seed
                    : throw new ArgumentOutOfRangeException(nameof(SamplingOptions.Seed), seed,
                        $"Seed must fit in 32 bits; got {seed}."),
            };
        return sampling;
    }

    /// <summary>Starts generating the reply to <paramref name="messages"/> (what both calls of the interface do).</summary>
    private TextCompletion Start(IEnumerable<ChatMessage> messages, ChatOptions? options,
        CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(messages);
        var prompt = format.Format(messages.Select(m => (m.Role.Value, m.Text)).ToList());
        return completions.Start(prompt, Sampling(options), options?.StopSequences?.ToList(), cancellationToken);
    }

    /// <inheritdoc/>
    public async Task<ChatResponse> GetResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null,
        CancellationToken cancellationToken = default)
    {
        var result = await Start(messages, options, cancellationToken).CompleteAsync().ConfigureAwait(false);
        ThrowIfCancelled(result, cancellationToken);
        return new ChatResponse(new ChatMessage(ChatRole.Assistant, result.Text))
        {
            ModelId = ModelId,
            FinishReason = Reason(result.Reason),
            Usage = Usage(result),
            CreatedAt = DateTimeOffset.UtcNow,
        };
    }

    /// <inheritdoc/>
    public async IAsyncEnumerable<ChatResponseUpdate> GetStreamingResponseAsync(IEnumerable<ChatMessage> messages,
        ChatOptions? options = null, [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        var completion = Start(messages, options, cancellationToken);
        var id = $"chatcmpl-{Guid.NewGuid():N}";
        await foreach (var piece in completion.ReadTextAsync().ConfigureAwait(false))
            yield return new ChatResponseUpdate(ChatRole.Assistant, piece) { ModelId = ModelId, ResponseId = id };
        var result = await completion.Completion.ConfigureAwait(false);
        ThrowIfCancelled(result, cancellationToken);
        yield return new ChatResponseUpdate(ChatRole.Assistant, [new UsageContent(Usage(result))])
        {
            ModelId = ModelId,
            ResponseId = id,
            FinishReason = Reason(result.Reason),
        };
    }

    /// <summary>A reply the caller cancelled ends as .NET's cancellations do, with the exception, not as a reply.</summary>
    private static void ThrowIfCancelled(TextCompletionResult result, CancellationToken cancellationToken)
    {
        if (result.Reason == FinishReason.Cancelled)
        {
            cancellationToken.ThrowIfCancellationRequested();
            throw new OperationCanceledException("The generator shut down before the reply was finished.");
        }
    }

    /// <summary>OpenAI's name of a finish reason: stop, length, or null for a cancelled request.</summary>
    public static ChatFinishReason? Reason(FinishReason reason) => reason switch
    {
        FinishReason.StopToken or FinishReason.StopSequence => ChatFinishReason.Stop,
        FinishReason.MaxTokens => ChatFinishReason.Length,
        _ => null,
    };

    private static UsageDetails Usage(TextCompletionResult result) => new()
    {
        InputTokenCount = result.PromptTokens,
        OutputTokenCount = result.CompletionTokens,
        TotalTokenCount = result.PromptTokens + result.CompletionTokens,
    };

    /// <inheritdoc/>
    public object? GetService(Type serviceType, object? serviceKey = null)
    {
        ArgumentNullException.ThrowIfNull(serviceType);
        if (serviceKey is not null)
            return null;
        if (serviceType == typeof(ChatClientMetadata))
            return new ChatClientMetadata("retnet-ilgpu", null, ModelId);
        return serviceType.IsInstanceOfType(this) ? this : null;
    }

    /// <summary>Nothing to free: the generator belongs to the caller.</summary>
    public void Dispose()
    {
    }
}
