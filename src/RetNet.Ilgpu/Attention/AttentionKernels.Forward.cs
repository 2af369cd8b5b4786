using ILGPU;
using ILGPU.Algorithms;
using RetNet.Ilgpu.Kernels;

namespace RetNet.Ilgpu.Attention;

internal static partial class AttentionKernels
{
    /// <summary>
    /// The forward pass, tiled like FlashAttention: one group per (query tile, output column tile, b·H + h). The group
    /// streams the key tiles up to its last query through shared memory (Dk a Depth slice at a time, the query slice
    /// beside it), forms the Rows × Rows logit tile, folds it into each row's running maximum and sum, rescales the
    /// accumulator and adds P·V for its columns. Key tiles above the diagonal are never visited; nothing of size T × T
    /// exists. Every column tile recomputes the same statistics; the first writes L = m + log ℓ.
    /// Grid: (⌈T / Rows⌉, ⌈Dv / Columns⌉, B·H); any group size.
    /// </summary>
    [Kernel(KernelGrouping.Explicit, Specializations = [typeof(AttentionTile16), typeof(AttentionTile32x64)], Geometry = typeof(AttentionTiledGeometry))]
    public static void ForwardTiled<TTile>(ArrayView<float> q, ArrayView<float> k, ArrayView<float> v,
        ArrayView<float> output, ArrayView<float> logSumExp, AttentionProblem p)
        where TTile : struct, IAttentionTile
    {
        var R = default(TTile).Rows;
        var K = default(TTile).Depth;
        var V = default(TTile).Columns;
        var qs = SharedMemory.Allocate<float>(default(TTile).Rows * default(TTile).Depth);
        var ks = SharedMemory.Allocate<float>(default(TTile).Rows * default(TTile).Depth);
        var vs = SharedMemory.Allocate<float>(default(TTile).Rows * default(TTile).Columns);
        var ps = SharedMemory.Allocate<float>(default(TTile).Rows * default(TTile).Rows);
        var acc = SharedMemory.Allocate<float>(default(TTile).Rows * default(TTile).Columns);
        var rowMax = SharedMemory.Allocate<float>(default(TTile).Rows);
        var rowSum = SharedMemory.Allocate<float>(default(TTile).Rows);
        var rowScale = SharedMemory.Allocate<float>(default(TTile).Rows);

        var tid = Group.IdxX;
        var groupSize = Group.DimX;
        var i0 = Grid.IdxX * R;
        var rows = Math.Min(R, p.SeqLen - i0);
        var e0 = Grid.IdxY * V;
        var cols = Math.Min(V, p.ValueDim - e0);
        var bh = Grid.IdxZ;
        var b = bh / p.Heads;
        var h = bh - b * p.Heads;
        // Row index of token t of (b, h) is firstRow + t·H; element d of it is at (row)·dim + d.
        var firstRow = b * p.SeqLen * p.Heads + h;
        var scores = new HeadTileProduct(R, K, firstRow, p.Heads);

        for (var idx = tid; idx < R * V; idx += groupSize)
            acc[idx] = 0f;
        for (var r = tid; r < R; r += groupSize)
        {
            // The lowest finite value, not −∞: the first rescale is then exp(−huge) = 0 without an ∞ − ∞.
            rowMax[r] = float.MinValue;
            rowSum[r] = 0f;
        }

        // Keys past the tile's last query are masked for every row of it.
        var keyEnd = i0 + rows;
        for (var j0 = 0; j0 < keyEnd; j0 += R)
        {
            var keys = Math.Min(R, keyEnd - j0);
            // Its first barrier also orders the previous key tile's reads of ps and vs before they are overwritten below.
            scores.Compute(q, i0, rows, k, j0, keys, p.KeyDim, qs, ks, ps);
            for (var idx = tid; idx < R * V; idx += groupSize)
            {
                var c = idx / V;
                var e = idx - c * V;
                vs[idx] = c < keys && e < cols ? v[(firstRow + (j0 + c) * p.Heads) * p.ValueDim + e0 + e] : 0f;
            }
            Group.Barrier();
            for (var r = tid; r < R; r += groupSize)
            {
                // Visible keys of row r in this tile: j ≤ i. Every tile starts at or before the tile's first query,
                // so a row that exists sees at least one key of every tile it visits.
                var visible = r < rows ? Math.Min(keys, i0 + r - j0 + 1) : 0;
                var oldMax = rowMax[r];
                var newMax = oldMax;
                for (var c = 0; c < visible; c++)
                    newMax = XMath.Max(newMax, p.Scale * ps[r * R + c]);
                var alpha = XMath.Exp(oldMax - newMax);
                var sum = rowSum[r] * alpha;
                for (var c = 0; c < R; c++)
                {
                    var weight = c < visible ? XMath.Exp(p.Scale * ps[r * R + c] - newMax) : 0f;
                    ps[r * R + c] = weight;
                    sum += weight;
                }
                rowMax[r] = newMax;
                rowSum[r] = sum;
                rowScale[r] = alpha;
            }
            Group.Barrier();
            for (var idx = tid; idx < R * V; idx += groupSize)
            {
                var r = idx / V;
                var e = idx - r * V;
                var sum = 0f;
                for (var c = 0; c < keys; c++)
                    sum += ps[r * R + c] * vs[c * V + e];
                acc[idx] = acc[idx] * rowScale[r] + sum;
            }
        }

        for (var idx = tid; idx < R * V; idx += groupSize)
        {
            var r = idx / V;
            var e = idx - r * V;
            if (r < rows && e < cols)
                output[(firstRow + (i0 + r) * p.Heads) * p.ValueDim + e0 + e] = acc[idx] / rowSum[r];
        }
        if (p.WriteLogSumExp != 0 && Grid.IdxY == 0)
        {
            for (var r = tid; r < rows; r += groupSize)
                logSumExp[bh * p.SeqLen + i0 + r] = rowMax[r] + XMath.Log(rowSum[r]);
        }
    }

    /// <summary>
    /// The forward pass without barriers, for the CPU accelerator: one thread per query row (b, h, i) walks the keys
    /// j ≤ i four at a time, keeping the running maximum and sum in registers and the running output in the output row
    /// itself (rescaled only when a block of four raises the maximum). Index: (b·H + h)·T + u, row i = Folded(u).
    /// </summary>
    [Kernel(KernelGrouping.Implicit)]
    public static void ForwardRows(Index1D thread, ArrayView<float> q, ArrayView<float> k, ArrayView<float> v,
        ArrayView<float> output, ArrayView<float> logSumExp, AttentionProblem p, Spread spread)
    {
        // Each item (query row) is handled by exactly one thread; Launch.Spread decides which.
        for (var runStart = spread.First(thread); runStart < spread.Count; runStart += spread.Step)
        {
            var runEnd = spread.End(runStart);
            for (var item = runStart; item < runEnd; item++)
            {
                var bh = item / p.SeqLen;
                var t = Folded(item - bh * p.SeqLen, p.SeqLen);
                var b = bh / p.Heads;
                var h = bh - b * p.Heads;
                var firstRow = b * p.SeqLen * p.Heads + h;
                var row = firstRow + t * p.Heads;
                var qRow = row * p.KeyDim;
                var outRow = row * p.ValueDim;
                for (var e = 0; e < p.ValueDim; e++)
                    output[outRow + e] = 0f;
                var max = float.MinValue;
                var sum = 0f;

                // Four keys per pass: each element of q and each read-modify-write of the output row serves four keys.
                var j = 0;
                for (; j + 3 <= t; j += 4)
                {
                    var key0 = firstRow + j * p.Heads;
                    var key1 = key0 + p.Heads;
                    var key2 = key1 + p.Heads;
                    var key3 = key2 + p.Heads;
                    float s0 = 0f, s1 = 0f, s2 = 0f, s3 = 0f;
                    for (var d = 0; d < p.KeyDim; d++)
                    {
                        var qd = q[qRow + d];
                        s0 += qd * k[key0 * p.KeyDim + d];
                        s1 += qd * k[key1 * p.KeyDim + d];
                        s2 += qd * k[key2 * p.KeyDim + d];
                        s3 += qd * k[key3 * p.KeyDim + d];
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
                        output[outRow + e] += w0 * v[key0 * p.ValueDim + e] + w1 * v[key1 * p.ValueDim + e] +
                                              w2 * v[key2 * p.ValueDim + e] + w3 * v[key3 * p.ValueDim + e];
                    }
                }
                for (; j <= t; j++)
                {
                    var key = firstRow + j * p.Heads;
                    var score = 0f;
                    for (var d = 0; d < p.KeyDim; d++)
                        score += q[qRow + d] * k[key * p.KeyDim + d];
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
                        output[outRow + e] += weight * v[key * p.ValueDim + e];
                }

                var inverse = 1f / sum;
                for (var e = 0; e < p.ValueDim; e++)
                    output[outRow + e] *= inverse;
                if (p.WriteLogSumExp != 0)
                    logSumExp[bh * p.SeqLen + t] = max + XMath.Log(sum);
            }
        }
    }
}
