namespace RetNet.Ilgpu.Generation;

/// <summary>
/// Autoregressive generation over an <see cref="ITokenDecoder"/>: prefill the prompts, then sample a token per
/// sequence and feed it back, streaming each token the moment it is sampled.
/// </summary>
/// <remarks>
/// A sequence stops when it samples a stop token (not emitted) or has emitted <see cref="SamplingOptions.MaxTokens"/>
/// tokens; the others go on. Generation ends when every sequence has stopped, without a final
/// <see cref="ITokenDecoder.Step"/> whose logits nobody would use. A cancellation token is checked before the prefill
/// and before each decoder step, never inside one: once it is cancelled, the enumeration throws
/// <see cref="OperationCanceledException"/> where the next step would start, after every token sampled so far has been
/// yielded.
/// </remarks>
public static class Generator
{
    /// <summary>
    /// Continues one prompt, yielding each token as soon as it is sampled (lazily: nothing runs until enumeration,
    /// and the decoder does one step per token pulled). Arguments are validated on the call.
    /// </summary>
    /// <exception cref="ArgumentException">The prompt is empty or holds an id outside [0, V), or a stop token is ≥ V.</exception>
    /// <exception cref="OperationCanceledException">Thrown by the enumeration once <paramref name="cancellationToken"/>
    /// is cancelled, at the next step boundary.</exception>
    public static IEnumerable<GeneratedToken> Generate(ITokenDecoder decoder, IReadOnlyList<int> prompt,
        SamplingOptions options, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(prompt);
        return Generate(decoder, [prompt], options, cancellationToken);
    }

    /// <summary>
    /// Continues a batch of prompts (lengths may differ), yielding each token as soon as it is sampled: step by
    /// step, and within a step in sequence order, skipping sequences that have stopped. Lazy like the single-prompt
    /// overload; arguments are validated on the call.
    /// </summary>
    /// <exception cref="ArgumentException">
    /// There are no prompts, a prompt is empty or holds an id outside [0, V), or a stop token is ≥ V.
    /// </exception>
    /// <exception cref="OperationCanceledException">Thrown by the enumeration once <paramref name="cancellationToken"/>
    /// is cancelled, at the next step boundary.</exception>
    public static IEnumerable<GeneratedToken> Generate(ITokenDecoder decoder,
        IReadOnlyList<IReadOnlyList<int>> prompts, SamplingOptions options, CancellationToken cancellationToken = default)
    {
        Validate(decoder, prompts, options);
        return Run(decoder, prompts, options, new FinishReason[prompts.Count], cancellationToken);
    }

    /// <summary>Runs <see cref="Generate(ITokenDecoder, IReadOnlyList{IReadOnlyList{int}}, SamplingOptions, CancellationToken)"/>
    /// to the end and collects each sequence's tokens and finish reason.</summary>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled before the
    /// end (checked at each step boundary).</exception>
    public static IReadOnlyList<GeneratedSequence> Complete(ITokenDecoder decoder,
        IReadOnlyList<IReadOnlyList<int>> prompts, SamplingOptions options, CancellationToken cancellationToken = default)
    {
        Validate(decoder, prompts, options);
        var reasons = new FinishReason[prompts.Count];
        var tokens = new List<int>[prompts.Count];
        for (var b = 0; b < tokens.Length; b++)
            tokens[b] = [];
        foreach (var token in Run(decoder, prompts, options, reasons, cancellationToken))
            tokens[token.Sequence].Add(token.TokenId);
        var result = new GeneratedSequence[prompts.Count];
        for (var b = 0; b < result.Length; b++)
            result[b] = new GeneratedSequence(tokens[b], reasons[b]);
        return result;
    }

    private static IEnumerable<GeneratedToken> Run(ITokenDecoder decoder, IReadOnlyList<IReadOnlyList<int>> prompts,
        SamplingOptions options, FinishReason[] reasons, CancellationToken cancellationToken)
    {
        var batch = prompts.Count;
        var vocabulary = decoder.VocabularySize;
        var sequences = new SequenceSampling[batch];
        for (var b = 0; b < batch; b++)
            sequences[b] = new SequenceSampling(options, options.Seed is { } seed ? unchecked(seed + b) : null,
                options.MaxTokens);

        var remaining = batch;
        // Finished rows are fed their last token again: any valid id would do, since their logits are ignored.
        var next = new int[batch];
        for (var b = 0; b < batch; b++)
            next[b] = prompts[b][^1];

        cancellationToken.ThrowIfCancellationRequested();
        var logits = CheckLogits(decoder.Prefill(prompts), batch, vocabulary, nameof(ITokenDecoder.Prefill));
        for (var index = 0; ; index++)
        {
            for (var b = 0; b < batch; b++)
            {
                var sequence = sequences[b];
                if (sequence.Finished is not null)
                    continue;
                var token = sequence.Next(logits[b]);
                if (token is { } emitted)
                {
                    next[b] = emitted;
                    yield return new GeneratedToken(b, index, emitted);
                }
                if (sequence.Finished is { } reason)
                {
                    reasons[b] = reason;
                    remaining--;
                }
            }
            if (remaining == 0)
                yield break;
            cancellationToken.ThrowIfCancellationRequested();
            logits = CheckLogits(decoder.Step((int[])next.Clone()), batch, vocabulary, nameof(ITokenDecoder.Step));
        }
    }

    private static void Validate(ITokenDecoder decoder, IReadOnlyList<IReadOnlyList<int>> prompts,
        SamplingOptions options)
    {
        ArgumentNullException.ThrowIfNull(decoder);
        ArgumentNullException.ThrowIfNull(prompts);
        ArgumentNullException.ThrowIfNull(options);
        var vocabulary = decoder.VocabularySize;
        if (vocabulary < 1)
            throw new ArgumentException($"The decoder's vocabulary size is {vocabulary}; expected ≥ 1.",
                nameof(decoder));
        if (prompts.Count == 0)
            throw new ArgumentException("Argument 'prompts' is empty; expected at least one prompt.", nameof(prompts));
        for (var b = 0; b < prompts.Count; b++)
        {
            var prompt = prompts[b] ?? throw new ArgumentException($"Prompt {b} is null.", nameof(prompts));
            if (prompt.Count == 0)
                throw new ArgumentException(
                    $"Prompt {b} is empty; expected at least one token (the logits continue its last token).",
                    nameof(prompts));
            for (var t = 0; t < prompt.Count; t++)
                if (prompt[t] < 0 || prompt[t] >= vocabulary)
                    throw new ArgumentException(
                        $"Prompt {b} has token id {prompt[t]} at position {t}; expected an id in [0, {vocabulary}).",
                        nameof(prompts));
        }
        foreach (var stop in options.StopTokens)
            if (stop >= vocabulary)
                throw new ArgumentException(
                    $"Stop token {stop} is outside the decoder's vocabulary [0, {vocabulary}).", nameof(options));
    }

    private static float[][] CheckLogits(float[][]? logits, int batch, int vocabulary, string call)
    {
        if (logits is null || logits.Length != batch)
            throw new InvalidOperationException(
                $"ITokenDecoder.{call} returned {logits?.Length.ToString() ?? "null"} logit rows; expected {batch}.");
        for (var b = 0; b < batch; b++)
            if (logits[b] is null || logits[b].Length != vocabulary)
                throw new InvalidOperationException(
                    $"ITokenDecoder.{call} returned {logits[b]?.Length.ToString() ?? "null"} logits for sequence {b}; expected {vocabulary}.");
        return logits;
    }
}
