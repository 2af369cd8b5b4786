using ILGPU;
using ILGPU.Algorithms;
using RetNet.Ilgpu.Kernels;

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

/// <summary>Sizes of a decode step against a KV cache: q [B, 1, H, Dk], caches [B, H, Capacity, ·]; s the logit
/// scale.</summary>
internal readonly struct CacheProblem(int heads, int capacity, int keyDim, int valueDim, float scale)
{
    public readonly int Heads = heads;
    public readonly int Capacity = capacity;
    public readonly int KeyDim = keyDim;
    public readonly int ValueDim = valueDim;
    public readonly float Scale = scale;
}

/// <summary>Sizes of an append of x [B, T, H, Dim] to a cache [B, H, Capacity, Dim].</summary>
internal readonly struct AppendProblem(int seqLen, int heads, int dim, int capacity)
{
    public readonly int SeqLen = seqLen;
    public readonly int Heads = heads;
    public readonly int Dim = dim;
    public readonly int Capacity = capacity;
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

    /// <summary>The running maximum and sum of one query row's online softmax.</summary>
    private struct RowSoftmax
    {
        public float Max;
        public float Sum;
    }

    /// <summary>
    /// One query row (q[qRow …]) attended to <paramref name="count"/> keys, rows first, first + stride, … of
    /// <paramref name="keys"/> and <paramref name="values"/>, four at a time (<see cref="FourKeys"/>), then one at a
    /// time: the output row is zeroed, accumulates exp(s·q·k − m)·v with the running maximum m and sum ℓ in registers
    /// (rescaled only when a block raises the maximum), and is divided by ℓ at the end when there was a key. The
    /// barrier-free forward pass and the decode step, one thread per row.
    /// </summary>
    private static RowSoftmax AttendRow(ArrayView<float> q, int qRow, ArrayView<float> keys, ArrayView<float> values,
        int first, int stride, int count, int keyDim, int valueDim, float scale, ArrayView<float> output, int outRow)
    {
        for (var e = 0; e < valueDim; e++)
            output[outRow + e] = 0f;
        var max = float.MinValue;
        var sum = 0f;

        var j = 0;
        for (; j + 3 < count; j += 4)
        {
            var block = new FourKeys(first + j * stride, stride);
            var s = block.Dots(q, qRow, keys, keyDim);
            s.S0 *= scale;
            s.S1 *= scale;
            s.S2 *= scale;
            s.S3 *= scale;
            var blockMax = XMath.Max(XMath.Max(s.S0, s.S1), XMath.Max(s.S2, s.S3));
            if (blockMax > max)
            {
                var alpha = XMath.Exp(max - blockMax);
                sum *= alpha;
                for (var e = 0; e < valueDim; e++)
                    output[outRow + e] *= alpha;
                max = blockMax;
            }
            var w = new FourValues
            {
                S0 = XMath.Exp(s.S0 - max),
                S1 = XMath.Exp(s.S1 - max),
                S2 = XMath.Exp(s.S2 - max),
                S3 = XMath.Exp(s.S3 - max),
            };
            sum += w.S0 + w.S1 + w.S2 + w.S3;
            block.AddWeighted(output, outRow, w, values, valueDim);
        }
        for (; j < count; j++)
        {
            var key = first + j * stride;
            var score = 0f;
            for (var d = 0; d < keyDim; d++)
                score += q[qRow + d] * keys[key * keyDim + d];
            score *= scale;
            if (score > max)
            {
                var alpha = XMath.Exp(max - score);
                sum *= alpha;
                for (var e = 0; e < valueDim; e++)
                    output[outRow + e] *= alpha;
                max = score;
            }
            var weight = XMath.Exp(score - max);
            sum += weight;
            for (var e = 0; e < valueDim; e++)
                output[outRow + e] += weight * values[key * valueDim + e];
        }

        if (count > 0)
        {
            var inverse = 1f / sum;
            for (var e = 0; e < valueDim; e++)
                output[outRow + e] *= inverse;
        }
        return new RowSoftmax { Max = max, Sum = sum };
    }
}
