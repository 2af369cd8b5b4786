using ILGPU;
using RetNet.Ilgpu.Kernels;

namespace RetNet.Ilgpu.Retention;

internal static partial class RetentionKernels
{
    /// <summary>
    /// The decayed causal product (see <see cref="CausalProblem"/>), tiled like FlashAttention without softmax: one
    /// group per (row tile, column tile, b·H + h); for each key tile of the window it forms the Rows × Rows score tile
    /// in shared memory (Depth at a time), applies decay and mask by index, and multiplies by the value tile. Key tiles
    /// outside the window (above the diagonal, or in another chunk) are never visited; nothing of size T × T exists.
    /// Grid: (ChunkCount · ⌈C / Rows⌉, ⌈OutDim / Columns⌉, B·H); any group size.
    /// </summary>
    [Kernel(KernelGrouping.Explicit, Specializations = [typeof(RetentionTile16), typeof(RetentionTile32x64)], Geometry = typeof(RetentionTiledGeometry))]
    public static void CausalTiled<TTile>(ArrayView<float> x, ArrayView<float> y, ArrayView<float> z,
        ArrayView<float> state, ArrayView<float> decay, ArrayView<float> output, CausalProblem p)
        where TTile : struct, IRetentionTile
    {
        var R = default(TTile).Rows;
        var K = default(TTile).Depth;
        var V = default(TTile).Columns;
        var xs = SharedMemory.Allocate<float>(default(TTile).Rows * default(TTile).Depth);
        var ys = SharedMemory.Allocate<float>(default(TTile).Rows * default(TTile).Depth);
        var zs = SharedMemory.Allocate<float>(default(TTile).Rows * default(TTile).Columns);
        var ps = SharedMemory.Allocate<float>(default(TTile).Rows * default(TTile).Rows);
        var acc = SharedMemory.Allocate<float>(default(TTile).Rows * default(TTile).Columns);
        var ss = SharedMemory.Allocate<float>(default(TTile).Depth * default(TTile).Columns);

        var tid = Group.IdxX;
        var groupSize = Group.DimX;
        var tilesPerChunk = (p.ChunkSize + R - 1) / R;
        var chunk = Grid.IdxX / tilesPerChunk;
        var chunkStart = chunk * p.ChunkSize;
        var chunkEnd = Math.Min(chunkStart + p.ChunkSize, p.SeqLen);
        var r0 = chunkStart + (Grid.IdxX - chunk * tilesPerChunk) * R;
        // The last chunk may be shorter than C: its surplus tiles are empty, and the whole group leaves together.
        if (r0 >= chunkEnd)
            return;
        var rows = Math.Min(R, chunkEnd - r0);
        var e0 = Grid.IdxY * V;
        var cols = Math.Min(V, p.OutDim - e0);
        var bh = Grid.IdxZ;
        var b = bh / p.Heads;
        var h = bh - b * p.Heads;
        var logGamma = decay[h];
        // Row index of token t of (b, h) is firstRow + t·H; element d of it is at (row)·dim + d.
        var firstRow = b * p.SeqLen * p.Heads + h;
        var scores = new HeadTileProduct(R, K, firstRow, p.Heads);
        var reverse = p.Reverse != 0;

        for (var idx = tid; idx < R * V; idx += groupSize)
            acc[idx] = 0f;

        if (p.HasState != 0)
        {
            var stateBase = (bh * p.ChunkCount + chunk) * p.RowDim * p.OutDim;
            for (var d0 = 0; d0 < p.RowDim; d0 += K)
            {
                var depth = Math.Min(K, p.RowDim - d0);
                Group.Barrier();
                for (var idx = tid; idx < R * K; idx += groupSize)
                {
                    var r = idx / K;
                    var d = idx - r * K;
                    xs[idx] = r < rows && d < depth ? x[(firstRow + (r0 + r) * p.Heads) * p.RowDim + d0 + d] : 0f;
                }
                for (var idx = tid; idx < K * V; idx += groupSize)
                {
                    var d = idx / V;
                    var e = idx - d * V;
                    ss[idx] = d < depth && e < cols
                        ? state[stateBase + (d0 + d) * p.StateRowStride + (e0 + e) * p.StateColStride]
                        : 0f;
                }
                Group.Barrier();
                for (var idx = tid; idx < R * V; idx += groupSize)
                {
                    var r = idx / V;
                    var e = idx - r * V;
                    var sum = 0f;
                    for (var d = 0; d < depth; d++)
                        sum += xs[r * K + d] * ss[d * V + e];
                    acc[idx] += sum;
                }
            }
            for (var idx = tid; idx < R * V; idx += groupSize)
            {
                var r = idx / V;
                if (r < rows)
                    acc[idx] *= Decay(logGamma, reverse ? chunkEnd - 1 - (r0 + r) : r0 + r - chunkStart + 1);
            }
        }

        var keyStart = reverse ? r0 : chunkStart;
        var keyEnd = reverse ? chunkEnd : r0 + rows;
        for (var c0 = keyStart; c0 < keyEnd; c0 += R)
        {
            var keys = Math.Min(R, keyEnd - c0);
            // Its first barrier also orders the previous key tile's reads of ps and zs before they are overwritten below.
            scores.Compute(x, r0, rows, y, c0, keys, p.RowDim, xs, ys, ps);
            for (var idx = tid; idx < R * R; idx += groupSize)
            {
                var r = idx / R;
                var c = idx - r * R;
                var distance = reverse ? c0 + c - (r0 + r) : r0 + r - (c0 + c);
                ps[idx] = r < rows && c < keys && distance >= 0 ? ps[idx] * Decay(logGamma, distance) : 0f;
            }
            for (var idx = tid; idx < R * V; idx += groupSize)
            {
                var c = idx / V;
                var e = idx - c * V;
                zs[idx] = c < keys && e < cols ? z[(firstRow + (c0 + c) * p.Heads) * p.OutDim + e0 + e] : 0f;
            }
            Group.Barrier();
            for (var idx = tid; idx < R * V; idx += groupSize)
            {
                var r = idx / V;
                var e = idx - r * V;
                var sum = 0f;
                for (var c = 0; c < keys; c++)
                    sum += ps[r * R + c] * zs[c * V + e];
                acc[idx] += sum;
            }
        }

        for (var idx = tid; idx < R * V; idx += groupSize)
        {
            var r = idx / V;
            var e = idx - r * V;
            if (r < rows && e < cols)
                output[(firstRow + (r0 + r) * p.Heads) * p.OutDim + e0 + e] = acc[idx];
        }
    }

    /// <summary>
    /// The decayed causal product without barriers, for the CPU accelerator where every barrier round costs ~0.1 ms:
    /// one thread per output row (b, t, h) accumulates its row in place — O(RowDim + OutDim) per (row, key) pair, the
    /// minimum, without shared memory. Index: the row (b·T + t)·H + h.
    /// </summary>
    [Kernel(KernelGrouping.Implicit)]
    public static void CausalRows(Index1D thread, ArrayView<float> x, ArrayView<float> y, ArrayView<float> z,
        ArrayView<float> state, ArrayView<float> decay, ArrayView<float> output, CausalProblem p, Spread spread)
    {
        // Each item (row) is handled by exactly one thread; Launch.Spread decides which.
        for (var runStart = spread.First(thread); runStart < spread.Count; runStart += spread.Step)
        {
            var runEnd = spread.End(runStart);
            for (var row = runStart; row < runEnd; row++)
            {
                var h = row % p.Heads;
                var t = row / p.Heads % p.SeqLen;
                var b = row / (p.Heads * p.SeqLen);
                var logGamma = decay[h];
                var reverse = p.Reverse != 0;
                var chunk = t / p.ChunkSize;
                var chunkStart = chunk * p.ChunkSize;
                var chunkEnd = Math.Min(chunkStart + p.ChunkSize, p.SeqLen);
                var xRow = row * p.RowDim;
                var outRow = row * p.OutDim;

                if (p.HasState != 0)
                {
                    var stateBase = ((b * p.Heads + h) * p.ChunkCount + chunk) * p.RowDim * p.OutDim;
                    var scale = Decay(logGamma, reverse ? chunkEnd - 1 - t : t - chunkStart + 1);
                    for (var e = 0; e < p.OutDim; e++)
                    {
                        var sum = 0f;
                        for (var d = 0; d < p.RowDim; d++)
                            sum += x[xRow + d] * state[stateBase + d * p.StateRowStride + e * p.StateColStride];
                        output[outRow + e] = scale * sum;
                    }
                }
                else
                {
                    for (var e = 0; e < p.OutDim; e++)
                        output[outRow + e] = 0f;
                }

                // Four keys per pass: each element of x and each read-modify-write of the output row serves four keys, which
                // halves the memory operations per pair on the CPU accelerator, where every view access is costly.
                var first = reverse ? t : chunkStart;
                var end = reverse ? chunkEnd : t + 1;
                var c = first;
                for (; c + 3 < end; c += 4)
                {
                    var key0 = row + (c - t) * p.Heads;
                    var key1 = key0 + p.Heads;
                    var key2 = key1 + p.Heads;
                    var key3 = key2 + p.Heads;
                    float s0 = 0f, s1 = 0f, s2 = 0f, s3 = 0f;
                    for (var d = 0; d < p.RowDim; d++)
                    {
                        var xd = x[xRow + d];
                        s0 += xd * y[key0 * p.RowDim + d];
                        s1 += xd * y[key1 * p.RowDim + d];
                        s2 += xd * y[key2 * p.RowDim + d];
                        s3 += xd * y[key3 * p.RowDim + d];
                    }
                    s0 *= Decay(logGamma, reverse ? c - t : t - c);
                    s1 *= Decay(logGamma, reverse ? c + 1 - t : t - c - 1);
                    s2 *= Decay(logGamma, reverse ? c + 2 - t : t - c - 2);
                    s3 *= Decay(logGamma, reverse ? c + 3 - t : t - c - 3);
                    for (var e = 0; e < p.OutDim; e++)
                    {
                        output[outRow + e] += s0 * z[key0 * p.OutDim + e] + s1 * z[key1 * p.OutDim + e] +
                                              s2 * z[key2 * p.OutDim + e] + s3 * z[key3 * p.OutDim + e];
                    }
                }
                for (; c < end; c++)
                {
                    var key = row + (c - t) * p.Heads;
                    var score = 0f;
                    for (var d = 0; d < p.RowDim; d++)
                        score += x[xRow + d] * y[key * p.RowDim + d];
                    score *= Decay(logGamma, reverse ? c - t : t - c);
                    for (var e = 0; e < p.OutDim; e++)
                        output[outRow + e] += score * z[key * p.OutDim + e];
                }
            }
        }
    }
}
