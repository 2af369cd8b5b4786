using RetNet.Ilgpu.Model;

namespace RetNet.Ilgpu.Generation;

/// <summary>
/// Serves an <see cref="ILanguageModel"/> of any architecture to <see cref="Generator"/>: prefill runs the prompts into
/// a fresh <see cref="DecodingState"/> (retention chunkwise, attention into its KV cache), and each step advances
/// that state by one token per sequence (for retention in O(1), whatever the position). Owns the state, and the model
/// too when asked to.
/// </summary>
/// <remarks>
/// It remembers each sequence's tokens (four bytes a token, on the host) so that when the model returns non-finite
/// logits it can run the model once more over that sequence and say in which block they first appeared, in the
/// <see cref="NonFiniteValuesException"/> it throws.
/// </remarks>
/// <param name="model">The model to decode with.</param>
/// <param name="chunkSize">Retention's chunk size for prefill.</param>
/// <param name="ownsModel">Dispose the model with the decoder.</param>
public sealed class ModelTokenDecoder(ILanguageModel model, int chunkSize = ForwardMode.DefaultChunkSize,
    bool ownsModel = false) : ITokenDecoder, IDisposable
{
    private readonly ILanguageModel model = model ?? throw new ArgumentNullException(nameof(model));
    private List<int>[] history = [];
    private DecodingState? state;

    /// <inheritdoc/>
    public int VocabularySize => model.VocabSize;

    /// <summary>The model decoded with.</summary>
    public ILanguageModel Model => model;

    /// <summary>The decoding state of the current batch (null before the first prefill), e.g. to save it.</summary>
    public DecodingState? State => state;

    /// <inheritdoc/>
    public float[][] Prefill(IReadOnlyList<IReadOnlyList<int>> prompts)
    {
        ArgumentNullException.ThrowIfNull(prompts);
        history = prompts.Select(p => p?.ToList() ?? []).ToArray();
        state?.Dispose();
        state = null;
        var result = model.Prefill(prompts, chunkSize);
        state = result.State;
        return result.Logits;
    }

    /// <inheritdoc/>
    /// <exception cref="InvalidOperationException">No prefill came first.</exception>
    /// <exception cref="NonFiniteValuesException">A logit is not finite; the message names the block where non-finite
    /// values first appear in that sequence.</exception>
    public float[][] Step(IReadOnlyList<int> nextTokens)
    {
        ArgumentNullException.ThrowIfNull(nextTokens);
        if (state is null)
            throw new InvalidOperationException("Step needs a prefill first: there is no decoding state yet.");
        for (var b = 0; b < nextTokens.Count && b < history.Length; b++)
            history[b].Add(nextTokens[b]);
        try
        {
            return model.Step(nextTokens, state);
        }
        catch (NonFiniteValuesException e) when (e.Sequence is { } b && b < history.Length)
        {
            var tokens = new int[1, history[b].Count];
            for (var t = 0; t < history[b].Count; t++)
                tokens[0, t] = history[b][t];
            var stage = model.LocateNonFinite(tokens, ForwardMode.Chunkwise(chunkSize));
            throw new NonFiniteValuesException(
                $"The next-token logits of sequence {b} are not finite after {history[b].Count} tokens: non-finite " +
                $"values first appear in {stage ?? "the output projection (logits)"}. Nothing was emitted.", stage, b);
        }
    }

    /// <summary>Frees the decoding state, and the model when the decoder owns it.</summary>
    public void Dispose()
    {
        state?.Dispose();
        state = null;
        if (ownsModel)
            model.Dispose();
    }
}
