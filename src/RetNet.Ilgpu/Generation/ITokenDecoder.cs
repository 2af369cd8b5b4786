namespace RetNet.Ilgpu.Generation;

/// <summary>
/// A language model seen from the generator: a stateful session over a batch of sequences that returns, for each
/// sequence, the next-token logits [V] after the tokens it has been fed.
/// </summary>
/// <remarks>
/// <para>
/// The contract is deliberately small so that any model (RetNet with its O(1) recurrent state, a test table, a
/// remote model) can be driven by <see cref="Generator"/>. The session owns its decoding state: <see cref="Prefill"/>
/// starts a new batch (discarding any previous one) and each <see cref="Step"/> advances every sequence of that
/// batch by exactly one token.
/// </para>
/// <para>
/// The batch keeps its size for the whole session: a sequence that has finished still receives a token in every
/// <see cref="Step"/> (the generator repeats its last token) and its logits are ignored. This keeps the batch layout
/// fixed, so an implementation never has to reorder or compact its state.
/// </para>
/// </remarks>
public interface ITokenDecoder
{
    /// <summary>V: the number of logits per sequence; token ids are in [0, V).</summary>
    int VocabularySize { get; }

    /// <summary>
    /// Starts a new batch: processes every prompt (lengths may differ; each has at least one token) and returns the
    /// logits after the last token of each, as <c>B</c> arrays of <see cref="VocabularySize"/> values.
    /// </summary>
    /// <param name="prompts">B ≥ 1 prompts of token ids in [0, V).</param>
    float[][] Prefill(IReadOnlyList<IReadOnlyList<int>> prompts);

    /// <summary>
    /// Feeds one token to each sequence of the current batch (index b to sequence b) and returns the logits after
    /// it, as B arrays of <see cref="VocabularySize"/> values.
    /// </summary>
    /// <param name="nextTokens">B token ids in [0, V), B being the batch size given to <see cref="Prefill"/>.</param>
    float[][] Step(IReadOnlyList<int> nextTokens);
}
