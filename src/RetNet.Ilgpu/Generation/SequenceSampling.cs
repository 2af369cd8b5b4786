namespace RetNet.Ilgpu.Generation;

/// <summary>
/// How one sequence chooses its tokens, shared by <see cref="Generator"/> and <see cref="BatchedGenerator"/> so that
/// both generate the same tokens from the same logits: its own <see cref="Sampler"/> (seeded for that sequence alone),
/// its stop tokens and its token budget.
/// </summary>
internal sealed class SequenceSampling(SamplingOptions options, int? seed, int maxTokens)
{
    private readonly Sampler sampler = new(options, seed);

    /// <summary>Tokens emitted so far.</summary>
    public int Generated { get; private set; }

    /// <summary>Why the sequence stopped, or null while it goes on.</summary>
    public FinishReason? Finished { get; private set; }

    /// <summary>The next token to emit, or null when the sequence sampled a stop token (then
    /// <see cref="Finished"/> says so); the token that reaches the budget is emitted and finishes the sequence.</summary>
    public int? Next(ReadOnlySpan<float> logits)
    {
        var token = sampler.Next(logits);
        if (options.StopTokens.Contains(token))
        {
            Finished = FinishReason.StopToken;
            return null;
        }
        if (++Generated == maxTokens)
            Finished = FinishReason.MaxTokens;
        return token;
    }

    /// <summary>Ends the sequence for a reason of the caller's (cancelled).</summary>
    public void Finish(FinishReason reason) => Finished ??= reason;
}
