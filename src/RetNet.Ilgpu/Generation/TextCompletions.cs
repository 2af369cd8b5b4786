using System.Runtime.CompilerServices;
using RetNet.Ilgpu.Tokenizers;

namespace RetNet.Ilgpu.Generation;

/// <summary>How a text request ended.</summary>
/// <param name="Text">The generated text (a stop sequence and what followed it excluded).</param>
/// <param name="Reason">Why it ended.</param>
/// <param name="PromptTokens">The prompt's length in tokens.</param>
/// <param name="CompletionTokens">Tokens the model generated for it (a token past a stop sequence included).</param>
public sealed record TextCompletionResult(string Text, FinishReason Reason, int PromptTokens, int CompletionTokens);

/// <summary>
/// Text requests over a <see cref="BatchedGenerator"/>: a prompt encoded with the model's tokenizer, its continuation
/// decoded as whole characters as it comes, ended early at the first of its stop sequences. What
/// <see cref="RetNetChatClient"/> and the HTTP server both use, so every client gets one generation path.
/// </summary>
/// <param name="generator">The generator requests run on.</param>
/// <param name="tokenizer">The model's tokenizer (same vocabulary size).</param>
public sealed class TextCompletions(BatchedGenerator generator, ITextTokenizer tokenizer)
{
    /// <summary>The generator requests run on.</summary>
    public BatchedGenerator Generator { get; } = generator ?? throw new ArgumentNullException(nameof(generator));

    /// <summary>The tokenizer prompts are encoded with.</summary>
    public ITextTokenizer Tokenizer { get; } = CheckTokenizer(tokenizer, generator);

    /// <summary>The ids a prompt is continued from: its encoding, or for an empty prompt the tokenizer's end-of-text
    /// id (as <see cref="TextGenerator"/> does).</summary>
    /// <exception cref="ArgumentException">The prompt is empty and the tokenizer has no end-of-text id.</exception>
    public IReadOnlyList<int> Encode(string prompt)
    {
        ArgumentNullException.ThrowIfNull(prompt);
        var ids = Tokenizer.Encode(prompt);
        if (ids.Count > 0)
            return ids;
        return Tokenizer.EndOfText is { } end
            ? [end]
            : throw new ArgumentException(
                $"The prompt is empty and the {Tokenizer.Name} tokenizer has no end-of-text token to start from.",
                nameof(prompt));
    }

    /// <summary>
    /// Submits a request now (so a full queue or a bad prompt throws here, before anything is streamed): the text of
    /// <paramref name="prompt"/> continued under <paramref name="options"/> until a stop token, the token budget, the
    /// first of <paramref name="stopSequences"/> (excluded from the text), or <paramref name="cancellationToken"/>.
    /// </summary>
    /// <exception cref="ArgumentException">As <see cref="Encode"/> and <see cref="BatchedGenerator.Submit"/>, or a stop
    /// sequence is empty.</exception>
    /// <exception cref="GenerationQueueFullException">The generator's queue is full.</exception>
    public TextCompletion Start(string prompt, SamplingOptions options, IReadOnlyList<string>? stopSequences = null,
        CancellationToken cancellationToken = default)
    {
        var stops = stopSequences?.ToArray() ?? [];
        if (stops.Any(string.IsNullOrEmpty))
            throw new ArgumentException("A stop sequence is empty; expected non-empty strings.", nameof(stopSequences));
        return Submit(Encode(prompt), startOfText: prompt.Length == 0, options, stops, cancellationToken);
    }

    /// <summary>
    /// As <see cref="Start(string, SamplingOptions, IReadOnlyList{string}?, CancellationToken)"/> for a chat prompt:
    /// its ids when the format encoded it (a chat template's special tokens), else its text encoded; its stop
    /// sequences before <paramref name="stopSequences"/>; its stop tokens added to <paramref name="options"/>'.
    /// </summary>
    /// <exception cref="ArgumentException">As the other overload.</exception>
    /// <exception cref="GenerationQueueFullException">The generator's queue is full.</exception>
    public TextCompletion Start(ChatPrompt prompt, SamplingOptions options, IReadOnlyList<string>? stopSequences = null,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(prompt);
        ArgumentNullException.ThrowIfNull(options);
        string[] stops = [.. prompt.StopSequences, .. stopSequences ?? []];
        if (stops.Any(string.IsNullOrEmpty))
            throw new ArgumentException("A stop sequence is empty; expected non-empty strings.", nameof(stopSequences));
        if (prompt.StopTokens.Count > 0)
            options = options with { StopTokens = options.StopTokens.Union(prompt.StopTokens).ToHashSet() };
        var ids = prompt.Ids is { Count: > 0 } encoded ? encoded : Encode(prompt.Text);
        return Submit(ids, startOfText: prompt.Text.Length == 0, options, stops, cancellationToken);
    }

    private TextCompletion Submit(IReadOnlyList<int> ids, bool startOfText, SamplingOptions options, string[] stops,
        CancellationToken cancellationToken)
    {
        var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        try
        {
            var handle = Generator.Submit(ids, options, linked.Token);
            return new TextCompletion(handle, new StreamingTextDecoder(Tokenizer, startOfText), stops, linked);
        }
        catch
        {
            linked.Dispose();
            throw;
        }
    }

    private static ITextTokenizer CheckTokenizer(ITextTokenizer tokenizer, BatchedGenerator generator)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        if (generator is not null && tokenizer.VocabularySize != generator.Model.VocabSize)
            throw new ArgumentException(
                $"The {tokenizer.Name} tokenizer has {tokenizer.VocabularySize} ids but the model has " +
                $"{generator.Model.VocabSize}; expected the same vocabulary size.", nameof(tokenizer));
        return tokenizer;
    }
}

/// <summary>One running text request of <see cref="TextCompletions"/>: read its text once, then its result.</summary>
public sealed class TextCompletion
{
    private readonly GenerationHandle handle;
    private readonly StreamingTextDecoder decoder;
    private readonly string[] stops;
    private readonly CancellationTokenSource linked;
    private readonly TaskCompletionSource<TextCompletionResult> completion =
        new(TaskCreationOptions.RunContinuationsAsynchronously);
    private int reading, tokensRead;

    internal TextCompletion(GenerationHandle handle, StreamingTextDecoder decoder, string[] stops,
        CancellationTokenSource linked)
    {
        this.handle = handle;
        this.decoder = decoder;
        this.stops = stops;
        this.linked = linked;
    }

    /// <summary>The prompt's length in tokens.</summary>
    public int PromptTokens => handle.Prompt.Count;

    /// <summary>The result, once <see cref="ReadTextAsync"/> has been read to its end.</summary>
    public Task<TextCompletionResult> Completion => completion.Task;

    /// <summary>Reads the text to its end and returns the result.</summary>
    public async Task<TextCompletionResult> CompleteAsync()
    {
        await foreach (var _ in ReadTextAsync().ConfigureAwait(false))
        {
        }
        return await Completion.ConfigureAwait(false);
    }

    /// <summary>The generated tokens <see cref="ReadTextAsync"/> has taken so far (their text emitted, or held back
    /// as an incomplete character or a possible start of a stop sequence): the completion tokens of a streamed
    /// piece's usage.</summary>
    public int TokensRead => Volatile.Read(ref tokensRead);

    /// <summary>
    /// The text as it is generated, in pieces of whole characters; text that may be the start of a stop sequence is
    /// held back until it is known not to be. A piece holds the text of every token generated since the previous
    /// one: when the reader keeps up, one token's; when it falls behind the decoding loop (many streams on few
    /// cores), all the tokens waiting, in one piece, so a slow reader costs one piece per read, not one per token.
    /// Enumerate once.
    /// </summary>
    /// <exception cref="InvalidOperationException">Enumerated a second time.</exception>
    public async IAsyncEnumerable<string> ReadTextAsync()
    {
        if (Interlocked.Exchange(ref reading, 1) != 0)
            throw new InvalidOperationException("A text completion is read once.");
        var text = new System.Text.StringBuilder();
        var pending = "";
        var stopped = false;
        var reader = handle.TokenReader;
        try
        {
            while (!stopped && await reader.WaitToReadAsync().ConfigureAwait(false))
            {
                var piece = new System.Text.StringBuilder();
                while (!stopped && reader.TryRead(out var token))
                {
                    Interlocked.Increment(ref tokensRead);
                    pending += decoder.Append(token);
                    var (emit, stop) = Split(ref pending);
                    piece.Append(emit);
                    stopped = stop;
                }
                if (piece.Length > 0)
                {
                    text.Append(piece);
                    yield return piece.ToString();
                }
            }
            if (!stopped)
            {
                pending += decoder.Flush();
                var (emit, stop) = Split(ref pending);
                stopped = stop;
                var rest = stop ? emit : emit + pending;
                if (rest.Length > 0)
                {
                    text.Append(rest);
                    yield return rest;
                }
            }
        }
        finally
        {
            // Stopped early, or the reader left before the end: the rest of the request is not wanted, and its slot
            // frees at the next step.
            if (!handle.Completion.IsCompleted)
                await linked.CancelAsync().ConfigureAwait(false);
            try
            {
                var result = await handle.Completion.ConfigureAwait(false);
                completion.TrySetResult(new TextCompletionResult(text.ToString(),
                    stopped ? FinishReason.StopSequence : result.Reason, result.PromptTokens, result.CompletionTokens));
            }
            catch (Exception e)
            {
                completion.TrySetException(e);
            }
            linked.Dispose();
        }
        await completion.Task.ConfigureAwait(false);
    }

    /// <summary>What of <paramref name="pending"/> can be emitted now, leaving the rest: up to the first stop sequence
    /// (then stop is true), or all but the longest tail that is the start of a stop sequence.</summary>
    private (string Emit, bool Stop) Split(ref string pending)
    {
        var first = -1;
        foreach (var stop in stops)
        {
            var at = pending.IndexOf(stop, StringComparison.Ordinal);
            if (at >= 0 && (first < 0 || at < first))
                first = at;
        }
        if (first >= 0)
        {
            var emit = pending[..first];
            pending = "";
            return (emit, true);
        }
        var held = 0;
        foreach (var stop in stops)
            for (var k = Math.Min(stop.Length - 1, pending.Length); k > held; k--)
                if (pending.AsSpan(pending.Length - k).SequenceEqual(stop.AsSpan(0, k)))
                {
                    held = k;
                    break;
                }
        var now = pending[..^held];
        pending = pending[^held..];
        return (now, false);
    }
}
