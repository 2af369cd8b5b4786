using RetNet.Ilgpu.Tensors;

namespace RetNet.Ilgpu.Attention;

/// <summary>
/// The sizes of one attention problem: q, k [B, T, H, Dk]; v, o [B, T, H, Dv]; log-sum-exp [B, H, T].
/// </summary>
/// <param name="Batch">B, the number of independent sequences.</param>
/// <param name="SeqLen">T, tokens per sequence (0 is allowed: nothing to compute).</param>
/// <param name="Heads">H, attention heads.</param>
/// <param name="KeyDim">Dk, the query and key size per head.</param>
/// <param name="ValueDim">Dv, the value and output size per head.</param>
public readonly record struct AttentionShape(int Batch, int SeqLen, int Heads, int KeyDim, int ValueDim)
{
    /// <summary>The shape of q and k: [B, T, H, Dk].</summary>
    public int[] QueryShape => [Batch, SeqLen, Heads, KeyDim];

    /// <summary>The shape of v and o: [B, T, H, Dv].</summary>
    public int[] ValueShape => [Batch, SeqLen, Heads, ValueDim];

    /// <summary>The shape of the per-row log-sum-exp: [B, H, T].</summary>
    public int[] RowShape => [Batch, Heads, SeqLen];

    /// <summary>Elements of q (and of k).</summary>
    public int QueryLength => Batch * SeqLen * Heads * KeyDim;

    /// <summary>Elements of v (and of o).</summary>
    public int ValueLength => Batch * SeqLen * Heads * ValueDim;

    /// <summary>Query rows, B·H·T: elements of the log-sum-exp.</summary>
    public int RowCount => Batch * Heads * SeqLen;

    /// <inheritdoc/>
    public override string ToString() => $"B={Batch} T={SeqLen} H={Heads} Dk={KeyDim} Dv={ValueDim}";
}

/// <summary>Argument checks of <see cref="CausalAttention"/>. Everything is checked before anything is launched.</summary>
internal static class AttentionChecks
{
    /// <summary>Checks q, k [B, T, H, Dk], v [B, T, H, Dv] on one device, T ≥ 0 and every other size ≥ 1, and the
    /// scale.</summary>
    public static AttentionShape Inputs(Tensor q, Tensor k, Tensor v, float scale)
    {
        var (batch, seqLen, heads, keyDim, valueDim) = ShapeCheck.HeadOperands(q, k, v, allowEmptySequence: true);
        Scale(scale);
        return new AttentionShape(batch, seqLen, heads, keyDim, valueDim);
    }

    /// <summary>Requires a finite scale.</summary>
    public static void Scale(float scale)
    {
        if (!float.IsFinite(scale))
            throw new ArgumentOutOfRangeException(nameof(scale), scale,
                $"Argument 'scale' is {scale}; expected a finite factor (1/√Dk by default).");
    }

    /// <summary>Checks a cache [B, H, capacity, dim] against the batch and heads of a [B, ·, H, ·] tensor.</summary>
    /// <returns>The capacity.</returns>
    public static int Cache(Tensor cache, string argument, Tensor rows, int dim)
    {
        ArgumentNullException.ThrowIfNull(cache, argument);
        ShapeCheck.SameDevice(rows.Device, argument, cache);
        ShapeCheck.Expect(cache, argument, rows.Dim(0), rows.Dim(2), ShapeCheck.Any, dim);
        return cache.Dim(2);
    }

    /// <summary>Checks per-sequence lengths held on the device: an index tensor [B] on the device of
    /// <paramref name="rows"/>.</summary>
    public static void Lengths(IndexTensor lengths, Tensor rows)
    {
        ArgumentNullException.ThrowIfNull(lengths);
        ShapeCheck.SameDevice(rows.Device, nameof(lengths), lengths);
        if (lengths.Rank != 1 || lengths.Length != rows.Dim(0))
            throw new ArgumentException(
                $"Argument 'lengths' has shape {ShapeCheck.Format(lengths.Shape)}; expected [{rows.Dim(0)}], one " +
                "length per sequence.", nameof(lengths));
    }

    /// <summary>
    /// Checks per-sequence lengths held on the host: B values with 0 ≤ length and length + <paramref name="adding"/> ≤
    /// capacity (the cache must hold what a step reads and what an append writes).
    /// </summary>
    public static void Lengths(IReadOnlyList<int> lengths, int batch, int capacity, int adding)
    {
        ArgumentNullException.ThrowIfNull(lengths);
        if (lengths.Count != batch)
            throw new ArgumentException(
                $"Argument 'lengths' has {lengths.Count} values; expected {batch}, one length per sequence.",
                nameof(lengths));
        for (var b = 0; b < batch; b++)
        {
            if (lengths[b] < 0)
                throw new ArgumentException(
                    $"Argument 'lengths' holds {lengths[b]} for sequence {b}; expected a length ≥ 0.", nameof(lengths));
            if ((long)lengths[b] + adding > capacity)
                throw new ArgumentException(
                    adding == 0
                        ? $"Argument 'lengths' holds {lengths[b]} for sequence {b}; the cache holds only {capacity} " +
                          "positions."
                        : $"Argument 'lengths' holds {lengths[b]} for sequence {b}; appending {adding} tokens would " +
                          $"need {lengths[b] + (long)adding} positions, and the cache holds only {capacity}.",
                    nameof(lengths));
        }
    }
}
