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
        var tiles = new HeadTiles(R, K, V, bh, p.Heads, p.SeqLen);

        tiles.Clear(acc);
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
            tiles.Product(q, i0, rows, k, j0, keys, p.KeyDim, qs, ks, ps);
            tiles.Stage(v, j0, keys, p.ValueDim, e0, cols, V, vs);
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
            tiles.AccumulateRescaled(ps, vs, keys, rowScale, acc);
        }

        for (var idx = tid; idx < R * V; idx += groupSize)
        {
            var r = idx / V;
            var e = idx - r * V;
            if (r < rows && e < cols)
                output[(tiles.FirstRow + (i0 + r) * p.Heads) * p.ValueDim + e0 + e] = acc[idx] / rowSum[r];
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
                var softmax = AttendRow(q, row * p.KeyDim, k, v, firstRow, p.Heads, t + 1, p.KeyDim, p.ValueDim,
                    p.Scale, output, row * p.ValueDim);
                if (p.WriteLogSumExp != 0)
                    logSumExp[bh * p.SeqLen + t] = softmax.Max + XMath.Log(softmax.Sum);
            }
        }
    }
}
