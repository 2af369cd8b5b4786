using RetNet.Ilgpu.Model;

namespace RetNet.Ilgpu.Generation;

/// <summary>
/// Serves a <see cref="RetNetModel"/> to <see cref="Generator"/>: prefill runs the prompts chunkwise into a fresh
/// <see cref="DecodingState"/>, and each step advances that state by one token per sequence in O(1), whatever the
/// position. Owns the state, not the model.
/// </summary>
public sealed class RetNetTokenDecoder(RetNetModel model, int chunkSize = ForwardMode.DefaultChunkSize) : ITokenDecoder, IDisposable
{
    private readonly RetNetModel model = model ?? throw new ArgumentNullException(nameof(model));
    private DecodingState? state;

    /// <inheritdoc/>
    public int VocabularySize => model.Config.VocabSize;

    /// <summary>The decoding state of the current batch (null before the first prefill), e.g. to save it.</summary>
    public DecodingState? State => state;

    /// <inheritdoc/>
    public float[][] Prefill(IReadOnlyList<IReadOnlyList<int>> prompts)
    {
        ArgumentNullException.ThrowIfNull(prompts);
        var result = model.Prefill(prompts.Select(p => p.ToArray()).ToList(), chunkSize);
        state?.Dispose();
        state = result.State;
        return result.Logits;
    }

    /// <inheritdoc/>
    /// <exception cref="InvalidOperationException">No prefill came first.</exception>
    public float[][] Step(IReadOnlyList<int> nextTokens)
    {
        ArgumentNullException.ThrowIfNull(nextTokens);
        if (state is null)
            throw new InvalidOperationException("Step needs a prefill first: there is no decoding state yet.");
        return model.Step(nextTokens.ToArray(), state);
    }

    /// <summary>Frees the decoding state.</summary>
    public void Dispose()
    {
        state?.Dispose();
        state = null;
    }
}
