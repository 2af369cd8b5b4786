using ILGPU;
using ILGPU.Algorithms;
using RetNet.Ilgpu.Kernels;

namespace RetNet.Ilgpu.Attention;

internal static partial class AttentionKernels
{
    /// <summary>
    /// One decode step against a KV cache: one thread per (b, h) attends its query to the first lengths[b] cached
    /// positions, four at a time with the running maximum and sum of <see cref="ForwardRows"/>. A length is clamped
    /// to [0, capacity] (the device never reads past the cache); an empty cache gives a zero output.
    /// Index: b·H + h, which is also the row of q [B, 1, H, Dk] and o [B, 1, H, Dv].
    /// </summary>
    [Kernel(KernelGrouping.Implicit)]
    public static void StepRows(Index1D thread, ArrayView<float> q, ArrayView<float> keyCache,
        ArrayView<float> valueCache, ArrayView<int> lengths, ArrayView<float> output, CacheProblem p, Spread spread)
    {
        for (var runStart = spread.First(thread); runStart < spread.Count; runStart += spread.Step)
        {
            var runEnd = spread.End(runStart);
            for (var bh = runStart; bh < runEnd; bh++)
            {
                var b = bh / p.Heads;
                var length = IntrinsicMath.Clamp(lengths[b], 0, p.Capacity);
                AttendRow(q, bh * p.KeyDim, keyCache, valueCache, bh * p.Capacity, 1, length, p.KeyDim, p.ValueDim,
                    p.Scale, output, bh * p.ValueDim);
            }
        }
    }

    /// <summary>
    /// Writes x [B, T, H, D] into a cache [B, H, capacity, D] at positions lengths[b] + t, one thread per element.
    /// Positions outside [0, capacity) are dropped, so a bad device-held length never writes past the cache.
    /// Index: the element of x.
    /// </summary>
    [Kernel(KernelGrouping.Implicit)]
    public static void AppendRows(Index1D thread, ArrayView<float> x, ArrayView<int> lengths, ArrayView<float> cache,
        AppendProblem p, Spread spread)
    {
        for (var runStart = spread.First(thread); runStart < spread.Count; runStart += spread.Step)
        {
            var runEnd = spread.End(runStart);
            for (var idx = runStart; idx < runEnd; idx++)
            {
                var row = idx / p.Dim;
                var d = idx - row * p.Dim;
                var h = row % p.Heads;
                var bt = row / p.Heads;
                var b = bt / p.SeqLen;
                var t = bt - b * p.SeqLen;
                var position = lengths[b] + t;
                if (position >= 0 && position < p.Capacity)
                    cache[((b * p.Heads + h) * p.Capacity + position) * p.Dim + d] = x[idx];
            }
        }
    }
}
