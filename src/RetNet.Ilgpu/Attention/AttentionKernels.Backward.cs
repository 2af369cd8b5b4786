using ILGPU;
using ILGPU.Algorithms;
using RetNet.Ilgpu.Kernels;

namespace RetNet.Ilgpu.Attention;

internal static partial class AttentionKernels
{
    /// <summary>
    /// dq_i = s · Σ_{j≤i} P_ij (dO_i·v_j − D_i) k_j, tiled: one group per (query tile, dq column tile, b·H + h). For each
    /// key tile up to the diagonal it forms the logits q·k (Dk a slice at a time) and dO·v (Dv a slice at a time) in
    /// shared memory, recomputes P = exp(s·q·k − L) and multiplies the weights by the key tile's columns.
    /// Grid: (⌈T / Rows⌉, ⌈Dk / Columns⌉, B·H); any group size.
    /// </summary>
    [Kernel(KernelGrouping.Explicit, Specializations = [typeof(AttentionTile16), typeof(AttentionTile32x64)], Geometry = typeof(AttentionTiledGeometry))]
    public static void QueryGradientTiled<TTile>(ArrayView<float> q, ArrayView<float> k, ArrayView<float> v,
        ArrayView<float> dOutput, ArrayView<float> logSumExp, ArrayView<float> deltas, ArrayView<float> dq,
        AttentionProblem p)
        where TTile : struct, IAttentionTile
    {
        var R = default(TTile).Rows;
        var K = default(TTile).Depth;
        var V = default(TTile).Columns;
        var xs = SharedMemory.Allocate<float>(default(TTile).Rows * default(TTile).Depth);
        var ys = SharedMemory.Allocate<float>(default(TTile).Rows * default(TTile).Depth);
        var ps = SharedMemory.Allocate<float>(default(TTile).Rows * default(TTile).Rows);
        var dps = SharedMemory.Allocate<float>(default(TTile).Rows * default(TTile).Rows);
        var zs = SharedMemory.Allocate<float>(default(TTile).Rows * default(TTile).Columns);
        var acc = SharedMemory.Allocate<float>(default(TTile).Rows * default(TTile).Columns);
        var ls = SharedMemory.Allocate<float>(default(TTile).Rows);
        var ds = SharedMemory.Allocate<float>(default(TTile).Rows);

        var tid = Group.IdxX;
        var groupSize = Group.DimX;
        var i0 = Grid.IdxX * R;
        var rows = Math.Min(R, p.SeqLen - i0);
        var e0 = Grid.IdxY * V;
        var cols = Math.Min(V, p.KeyDim - e0);
        var bh = Grid.IdxZ;
        var tiles = new HeadTiles(R, K, V, bh, p.Heads, p.SeqLen);

        tiles.Clear(acc);
        for (var r = tid; r < R; r += groupSize)
        {
            ls[r] = r < rows ? logSumExp[bh * p.SeqLen + i0 + r] : 0f;
            ds[r] = r < rows ? deltas[bh * p.SeqLen + i0 + r] : 0f;
        }

        var keyEnd = i0 + rows;
        for (var j0 = 0; j0 < keyEnd; j0 += R)
        {
            var keys = Math.Min(R, keyEnd - j0);
            // Its first barrier also orders the previous key tile's reads of ps and zs before they are overwritten below.
            tiles.Product(q, i0, rows, k, j0, keys, p.KeyDim, xs, ys, ps);
            tiles.Product(dOutput, i0, rows, v, j0, keys, p.ValueDim, xs, ys, dps);
            tiles.Stage(k, j0, keys, p.KeyDim, e0, cols, V, zs);
            // Each thread turns its own logits into weights dS = P ⊙ (dP − D): no barrier needed before.
            for (var idx = tid; idx < R * R; idx += groupSize)
            {
                var r = idx / R;
                var c = idx - r * R;
                ps[idx] = r < rows && c < keys && j0 + c <= i0 + r
                    ? XMath.Exp(p.Scale * ps[idx] - ls[r]) * (dps[idx] - ds[r])
                    : 0f;
            }
            Group.Barrier();
            tiles.Accumulate(ps, R, zs, keys, acc);
        }
        tiles.Store(acc, p.Scale, i0, rows, p.KeyDim, e0, cols, dq);
    }

    /// <summary>
    /// dk_j = s · Σ_{i≥j} P_ij (dO_i·v_j − D_i) q_i and dv_j = Σ_{i≥j} P_ij dO_i, tiled: one group per (key tile,
    /// column tile, b·H + h), where the first ⌈Dk / Columns⌉ column tiles are dk's and the rest dv's. Each group streams
    /// the query tiles from the diagonal on, recomputes the logits (and, for dk, dO·v) in shared memory, and
    /// multiplies the transposed weights by the query tile's q or dO columns. No atomics: every gradient element has
    /// one owner. Grid: (⌈T / Rows⌉, ⌈Dk / Columns⌉ + ⌈Dv / Columns⌉, B·H); any group size.
    /// </summary>
    [Kernel(KernelGrouping.Explicit, Specializations = [typeof(AttentionTile16), typeof(AttentionTile32x64)], Geometry = typeof(AttentionTiledGeometry))]
    public static void KeyValueGradientTiled<TTile>(ArrayView<float> q, ArrayView<float> k, ArrayView<float> v,
        ArrayView<float> dOutput, ArrayView<float> logSumExp, ArrayView<float> deltas, ArrayView<float> dk,
        ArrayView<float> dv, AttentionProblem p)
        where TTile : struct, IAttentionTile
    {
        var R = default(TTile).Rows;
        var K = default(TTile).Depth;
        var V = default(TTile).Columns;
        var xs = SharedMemory.Allocate<float>(default(TTile).Rows * default(TTile).Depth);
        var ys = SharedMemory.Allocate<float>(default(TTile).Rows * default(TTile).Depth);
        var ps = SharedMemory.Allocate<float>(default(TTile).Rows * default(TTile).Rows);
        var dps = SharedMemory.Allocate<float>(default(TTile).Rows * default(TTile).Rows);
        var zs = SharedMemory.Allocate<float>(default(TTile).Rows * default(TTile).Columns);
        var acc = SharedMemory.Allocate<float>(default(TTile).Rows * default(TTile).Columns);
        var ls = SharedMemory.Allocate<float>(default(TTile).Rows);
        var ds = SharedMemory.Allocate<float>(default(TTile).Rows);

        var tid = Group.IdxX;
        var groupSize = Group.DimX;
        var j0 = Grid.IdxX * R;
        var keys = Math.Min(R, p.SeqLen - j0);
        var keyTiles = (p.KeyDim + V - 1) / V;
        // Uniform over the group, so the branches below never split a barrier.
        var forKeys = Grid.IdxY < keyTiles;
        var outDim = forKeys ? p.KeyDim : p.ValueDim;
        var e0 = (forKeys ? Grid.IdxY : Grid.IdxY - keyTiles) * V;
        var cols = Math.Min(V, outDim - e0);
        var bh = Grid.IdxZ;
        var tiles = new HeadTiles(R, K, V, bh, p.Heads, p.SeqLen);

        tiles.Clear(acc);

        for (var i0 = j0; i0 < p.SeqLen; i0 += R)
        {
            var rows = Math.Min(R, p.SeqLen - i0);
            // ps[c·R + r]: the logit of key j0 + c (this group's row c) and query i0 + r. Its first barrier also orders the
            // previous query tile's reads of ps, zs, ls and ds before they are overwritten.
            tiles.Product(k, j0, keys, q, i0, rows, p.KeyDim, xs, ys, ps);
            if (forKeys)
                tiles.Product(v, j0, keys, dOutput, i0, rows, p.ValueDim, xs, ys, dps);
            for (var r = tid; r < R; r += groupSize)
            {
                ls[r] = r < rows ? logSumExp[bh * p.SeqLen + i0 + r] : 0f;
                ds[r] = r < rows ? deltas[bh * p.SeqLen + i0 + r] : 0f;
            }
            tiles.Stage(forKeys ? q : dOutput, i0, rows, outDim, e0, cols, V, zs);
            Group.Barrier();
            for (var idx = tid; idx < R * R; idx += groupSize)
            {
                var c = idx / R;
                var r = idx - c * R;
                var probability = c < keys && r < rows && j0 + c <= i0 + r
                    ? XMath.Exp(p.Scale * ps[idx] - ls[r])
                    : 0f;
                ps[idx] = forKeys ? probability * (dps[idx] - ds[r]) : probability;
            }
            Group.Barrier();
            tiles.Accumulate(ps, R, zs, rows, acc);
        }
        tiles.Store(acc, forKeys ? p.Scale : 1f, j0, keys, outDim, e0, cols, forKeys ? dk : dv);
    }

    /// <summary>
    /// The row terms of the backward pass, D_i = dO_i · O_i (docs/ATTENTION.md §3), one thread per query row.
    /// Index: (b·H + h)·T + t, the layout of D [B, H, T].
    /// </summary>
    [Kernel(KernelGrouping.Implicit)]
    public static void RowDeltas(Index1D thread, ArrayView<float> output, ArrayView<float> dOutput,
        ArrayView<float> deltas, AttentionProblem p, Spread spread)
    {
        for (var runStart = spread.First(thread); runStart < spread.Count; runStart += spread.Step)
        {
            var runEnd = spread.End(runStart);
            for (var item = runStart; item < runEnd; item++)
            {
                var bh = item / p.SeqLen;
                var t = item - bh * p.SeqLen;
                var b = bh / p.Heads;
                var h = bh - b * p.Heads;
                var row = ((b * p.SeqLen + t) * p.Heads + h) * p.ValueDim;
                var sum = 0f;
                for (var e = 0; e < p.ValueDim; e++)
                    sum += dOutput[row + e] * output[row + e];
                deltas[item] = sum;
            }
        }
    }

    /// <summary>
    /// dq without barriers: one thread per query row (b, h, i) walks the keys j ≤ i, recomputing P_ij = exp(s·q_i·k_j
    /// − L_i) and adding s·P_ij (dO_i·v_j − D_i) k_j to its dq row. Index: (b·H + h)·T + u, row i = Folded(u).
    /// </summary>
    [Kernel(KernelGrouping.Implicit)]
    public static void QueryGradientRows(Index1D thread, ArrayView<float> q, ArrayView<float> k, ArrayView<float> v,
        ArrayView<float> dOutput, ArrayView<float> logSumExp, ArrayView<float> deltas, ArrayView<float> dq,
        AttentionProblem p, Spread spread)
    {
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
                var oRow = row * p.ValueDim;
                var logSum = logSumExp[bh * p.SeqLen + t];
                var delta = deltas[bh * p.SeqLen + t];
                for (var d = 0; d < p.KeyDim; d++)
                    dq[qRow + d] = 0f;
                for (var j = 0; j <= t; j++)
                {
                    var key = firstRow + j * p.Heads;
                    var score = 0f;
                    for (var d = 0; d < p.KeyDim; d++)
                        score += q[qRow + d] * k[key * p.KeyDim + d];
                    var dp = 0f;
                    for (var e = 0; e < p.ValueDim; e++)
                        dp += dOutput[oRow + e] * v[key * p.ValueDim + e];
                    var weight = p.Scale * XMath.Exp(p.Scale * score - logSum) * (dp - delta);
                    for (var d = 0; d < p.KeyDim; d++)
                        dq[qRow + d] += weight * k[key * p.KeyDim + d];
                }
            }
        }
    }

    /// <summary>
    /// dk and dv without barriers: one thread per key row (b, h, j) walks the queries i ≥ j, recomputing P_ij and
    /// adding s·P_ij (dO_i·v_j − D_i) q_i to its dk row and P_ij dO_i to its dv row. Index: (b·H + h)·T + u, row
    /// j = Folded(u).
    /// </summary>
    [Kernel(KernelGrouping.Implicit)]
    public static void KeyValueGradientRows(Index1D thread, ArrayView<float> q, ArrayView<float> k,
        ArrayView<float> v, ArrayView<float> dOutput, ArrayView<float> logSumExp, ArrayView<float> deltas,
        ArrayView<float> dk, ArrayView<float> dv, AttentionProblem p, Spread spread)
    {
        for (var runStart = spread.First(thread); runStart < spread.Count; runStart += spread.Step)
        {
            var runEnd = spread.End(runStart);
            for (var item = runStart; item < runEnd; item++)
            {
                var bh = item / p.SeqLen;
                var j = Folded(item - bh * p.SeqLen, p.SeqLen);
                var b = bh / p.Heads;
                var h = bh - b * p.Heads;
                var firstRow = b * p.SeqLen * p.Heads + h;
                var key = firstRow + j * p.Heads;
                var kRow = key * p.KeyDim;
                var vRow = key * p.ValueDim;
                for (var d = 0; d < p.KeyDim; d++)
                    dk[kRow + d] = 0f;
                for (var e = 0; e < p.ValueDim; e++)
                    dv[vRow + e] = 0f;
                for (var i = j; i < p.SeqLen; i++)
                {
                    var query = firstRow + i * p.Heads;
                    var score = 0f;
                    for (var d = 0; d < p.KeyDim; d++)
                        score += q[query * p.KeyDim + d] * k[kRow + d];
                    var dp = 0f;
                    for (var e = 0; e < p.ValueDim; e++)
                        dp += dOutput[query * p.ValueDim + e] * v[vRow + e];
                    var probability = XMath.Exp(p.Scale * score - logSumExp[bh * p.SeqLen + i]);
                    var weight = p.Scale * probability * (dp - deltas[bh * p.SeqLen + i]);
                    for (var d = 0; d < p.KeyDim; d++)
                        dk[kRow + d] += weight * q[query * p.KeyDim + d];
                    for (var e = 0; e < p.ValueDim; e++)
                        dv[vRow + e] += probability * dOutput[query * p.ValueDim + e];
                }
            }
        }
    }
}
