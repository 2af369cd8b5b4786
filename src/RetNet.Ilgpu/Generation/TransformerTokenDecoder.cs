using RetNet.Ilgpu.Transformer;

namespace RetNet.Ilgpu.Generation;

/// <summary>
/// Serves a <see cref="TransformerModel"/> to <see cref="Generator"/>: prefill fills a fresh KV cache with the
/// prompts, and each step appends one token per sequence and attends over every cached position (the cache grows as
/// needed). Owns the cache, not the model.
/// </summary>
public sealed class TransformerTokenDecoder(TransformerModel model) : ITokenDecoder, IDisposable
{
    private readonly TransformerModel model = model ?? throw new ArgumentNullException(nameof(model));
    private KvCache? cache;

    /// <inheritdoc/>
    public int VocabularySize => model.Config.VocabSize;

    /// <summary>The KV cache of the current batch (null before the first prefill).</summary>
    public KvCache? Cache => cache;

    /// <inheritdoc/>
    public float[][] Prefill(IReadOnlyList<IReadOnlyList<int>> prompts)
    {
        ArgumentNullException.ThrowIfNull(prompts);
        var (logits, fresh) = model.Prefill(prompts.Select(p => p.ToArray()).ToList());
        cache?.Dispose();
        cache = fresh;
        return logits;
    }

    /// <inheritdoc/>
    /// <exception cref="InvalidOperationException">No prefill came first.</exception>
    public float[][] Step(IReadOnlyList<int> nextTokens)
    {
        ArgumentNullException.ThrowIfNull(nextTokens);
        if (cache is null)
            throw new InvalidOperationException("Step needs a prefill first: there is no KV cache yet.");
        return model.Step(nextTokens.ToArray(), cache);
    }

    /// <summary>Frees the KV cache.</summary>
    public void Dispose()
    {
        cache?.Dispose();
        cache = null;
    }
}
