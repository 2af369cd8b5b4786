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
                var qRow = bh * p.KeyDim;
                var outRow = bh * p.ValueDim;
                var first = bh * p.Capacity;
                for (var e = 0; e < p.ValueDim; e++)
                    output[outRow + e] = 0f;
                var max = float.MinValue;
                var sum = 0f;

                var j = 0;
                for (; j + 3 < length; j += 4)
                {
                    var key0 = first + j;
                    float s0 = 0f, s1 = 0f, s2 = 0f, s3 = 0f;
                    for (var d = 0; d < p.KeyDim; d++)
                    {
                        var qd = q[qRow + d];
                        s0 += qd * keyCache[key0 * p.KeyDim + d];
                        s1 += qd * keyCache[(key0 + 1) * p.KeyDim + d];
                        s2 += qd * keyCache[(key0 + 2) * p.KeyDim + d];
                        s3 += qd * keyCache[(key0 + 3) * p.KeyDim + d];
                    }
                    s0 *= p.Scale;
                    s1 *= p.Scale;
                    s2 *= p.Scale;
                    s3 *= p.Scale;
                    var blockMax = XMath.Max(XMath.Max(s0, s1), XMath.Max(s2, s3));
                    if (blockMax > max)
                    {
                        var alpha = XMath.Exp(max - blockMax);
                        sum *= alpha;
                        for (var e = 0; e < p.ValueDim; e++)
                            output[outRow + e] *= alpha;
                        max = blockMax;
                    }
                    var w0 = XMath.Exp(s0 - max);
                    var w1 = XMath.Exp(s1 - max);
                    var w2 = XMath.Exp(s2 - max);
                    var w3 = XMath.Exp(s3 - max);
                    sum += w0 + w1 + w2 + w3;
                    for (var e = 0; e < p.ValueDim; e++)
                    {
                        output[outRow + e] += w0 * valueCache[key0 * p.ValueDim + e] +
                                              w1 * valueCache[(key0 + 1) * p.ValueDim + e] +
                                              w2 * valueCache[(key0 + 2) * p.ValueDim + e] +
                                              w3 * valueCache[(key0 + 3) * p.ValueDim + e];
                    }
                }
                for (; j < length; j++)
                {
                    var key = first + j;
                    var score = 0f;
                    for (var d = 0; d < p.KeyDim; d++)
                        score += q[qRow + d] * keyCache[key * p.KeyDim + d];
                    score *= p.Scale;
                    if (score > max)
                    {
                        var alpha = XMath.Exp(max - score);
                        sum *= alpha;
                        for (var e = 0; e < p.ValueDim; e++)
                            output[outRow + e] *= alpha;
                        max = score;
                    }
                    var weight = XMath.Exp(score - max);
                    sum += weight;
                    for (var e = 0; e < p.ValueDim; e++)
                        output[outRow + e] += weight * valueCache[key * p.ValueDim + e];
                }

                if (length > 0)
                {
                    var inverse = 1f / sum;
                    for (var e = 0; e < p.ValueDim; e++)
                        output[outRow + e] *= inverse;
                }
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
