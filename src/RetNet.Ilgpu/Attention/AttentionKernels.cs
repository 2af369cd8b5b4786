namespace RetNet.Ilgpu.Attention;

/// <summary>
/// The shared-memory tile of the tiled attention kernels, fixed at compile time (static shared memory needs constant
/// sizes). The group size is not part of it: threads stride over the tile, so any group size runs any tile.
/// </summary>
internal interface IAttentionTile
{
    /// <summary>Tokens per tile: the query rows of a group and the key rows streamed past them (or the reverse).</summary>
    int Rows { get; }

    /// <summary>Slice of a contracted dimension (Dk for scores, Dv for dO·v) held at once.</summary>
    int Depth { get; }

    /// <summary>Output columns per group.</summary>
    int Columns { get; }
}

/// <summary>16 tokens × 16 deep × 16 columns: for narrow heads (≤ 16 columns); 8 KB of shared memory.</summary>
internal readonly struct AttentionTile16 : IAttentionTile
{
    public int Rows => 16;
    public int Depth => 16;
    public int Columns => 16;
}

/// <summary>32 tokens × 16 deep × 64 columns: for ordinary heads; 29 KB of shared memory at most.</summary>
internal readonly struct AttentionTile32x64 : IAttentionTile
{
    public int Rows => 32;
    public int Depth => 16;
    public int Columns => 64;
}

/// <summary>
/// Sizes of causal attention (docs/ATTENTION.md): q, k [B, T, H, Dk]; v, o, dO [B, T, H, Dv]; the per-row
/// log-sum-exp L and the row terms D = rowsum(dO ⊙ O), both [B, H, T].
/// </summary>
internal struct AttentionProblem
{
    public int Heads;
    public int SeqLen;
    public int KeyDim;
    public int ValueDim;

    /// <summary>s in the logits s·q_i·k_j.</summary>
    public float Scale;

    /// <summary>1 when the forward pass writes L, 0 when the view is a placeholder.</summary>
    public int WriteLogSumExp;
}

/// <summary>Sizes of a decode step against a KV cache: q [B, 1, H, Dk], caches [B, H, Capacity, ·].</summary>
internal struct CacheProblem
{
    public int Heads;
    public int Capacity;
    public int KeyDim;
    public int ValueDim;
    public float Scale;
}

/// <summary>Sizes of an append of x [B, T, H, Dim] to a cache [B, H, Capacity, Dim].</summary>
internal struct AppendProblem
{
    public int SeqLen;
    public int Heads;
    public int Dim;
    public int Capacity;
}

/// <summary>
/// Device code of causal softmax attention. Softmax is formed online (docs/ATTENTION.md §2): a running maximum m and
/// sum ℓ per query row, every exponent taken as exp(s − m) ≤ 1, so no logit overflows, and the running output rescaled
/// by exp(m_old − m_new) when the maximum grows. The backward pass recomputes P = exp(s − L) from the stored
/// log-sum-exp L (§3). Sums in fp32. Future keys are masked by index, never by an infinite logit.
/// </summary>
internal static partial class AttentionKernels
{
    /// <summary>
    /// The u-th of T rows of one head in an order that alternates short and long causal rows (0, T−1, 1, T−2, …): a
    /// contiguous run of items, as <see cref="Kernels.Launch.Spread"/> gives one CPU thread, then carries about the
    /// average causal work instead of only the short or only the long rows.
    /// </summary>
    private static int Folded(int u, int seqLen) => (u & 1) == 0 ? u >> 1 : seqLen - 1 - (u >> 1);
}
