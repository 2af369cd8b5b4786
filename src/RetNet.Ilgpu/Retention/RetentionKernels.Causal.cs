using ILGPU;
using RetNet.Ilgpu.Kernels;

namespace RetNet.Ilgpu.Retention;

internal static partial class RetentionKernels
{
    /// <summary>
    /// The decayed causal product (see <see cref="CausalProblem"/>), tiled like FlashAttention without softmax: one
    /// group per (row tile, column tile, b·H + h); for each key tile of the window it forms the Rows × Rows score tile
    /// in shared memory (Depth at a time), applies decay and mask by index, and multiplies by the value tile. Key tiles
    /// outside the window (above the diagonal, in another chunk or, when packed, in another document) are never visited;
    /// nothing of size T × T exists.
    /// Grid: (ChunkCount · ⌈C / Rows⌉, ⌈OutDim / Columns⌉, B·H); any group size.
    /// </summary>
    [Kernel(KernelGrouping.Explicit, Specializations = [typeof(RetentionTile16), typeof(RetentionTile32x64)], Geometry = typeof(RetentionTiledGeometry))]
    public static void CausalTiled<TTile>(ArrayView<float> x, ArrayView<float> y, ArrayView<float> z,
        ArrayView<float> state, ArrayView<float> decay, ArrayView<float> output, ArrayView<int> bounds, CausalProblem p)
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
        // Each row's document bound: its start (forward) or end (reverse), read once per group.
        var documentBound = SharedMemory.Allocate<int>(default(TTile).Rows);

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
        var logGamma = decay[bh % p.Heads];
        var tiles = new HeadTiles(R, K, V, bh, p.Heads, p.SeqLen);
        var reverse = p.Reverse != 0;
        var firstToken = bh / p.Heads * p.SeqLen + r0;

        tiles.Clear(acc);
        for (var r = tid; r < R; r += groupSize)
        {
            documentBound[r] = r >= rows ? 0
                : reverse ? DocumentEnd(bounds, p.HasBounds, firstToken + r, p.SeqLen)
                : DocumentStart(bounds, p.HasBounds, firstToken + r);
        }
        Group.Barrier();

        if (p.HasState != 0)
        {
            var stateBase = (bh * p.ChunkCount + chunk) * p.RowDim * p.OutDim;
            for (var d0 = 0; d0 < p.RowDim; d0 += K)
            {
                var depth = Math.Min(K, p.RowDim - d0);
                Group.Barrier();
                tiles.Stage(x, r0, rows, p.RowDim, d0, depth, K, xs);
                for (var idx = tid; idx < K * V; idx += groupSize)
                {
                    var d = idx / V;
                    var e = idx - d * V;
                    ss[idx] = d < depth && e < cols
                        ? state[stateBase + (d0 + d) * p.StateRowStride + (e0 + e) * p.StateColStride]
                        : 0f;
                }
                Group.Barrier();
                tiles.Accumulate(xs, K, ss, depth, acc);
            }
            for (var idx = tid; idx < R * V; idx += groupSize)
            {
                var r = idx / V;
                if (r < rows)
                {
                    acc[idx] = ReadsWindowState(reverse, documentBound[r], chunkStart, chunkEnd, p.SeqLen)
                        ? acc[idx] * Decay(logGamma, reverse ? chunkEnd - 1 - (r0 + r) : r0 + r - chunkStart + 1)
                        : 0f;
                }
            }
        }

        // Documents are contiguous, so the tile's first row starts the earliest document and its last row ends the
        // latest: keys outside [keyStart, keyEnd) are masked for every row and never visited.
        var keyStart = reverse ? r0 : Math.Max(chunkStart, DocumentStart(bounds, p.HasBounds, firstToken));
        var keyEnd = reverse
            ? Math.Min(chunkEnd, DocumentEnd(bounds, p.HasBounds, firstToken + rows - 1, p.SeqLen))
            : r0 + rows;
        for (var c0 = keyStart; c0 < keyEnd; c0 += R)
        {
            var keys = Math.Min(R, keyEnd - c0);
            // Its first barrier also orders the previous key tile's reads of ps and zs before they are overwritten below.
            tiles.Product(x, r0, rows, y, c0, keys, p.RowDim, xs, ys, ps);
            for (var idx = tid; idx < R * R; idx += groupSize)
            {
                var r = idx / R;
                var c = idx - r * R;
                var distance = reverse ? c0 + c - (r0 + r) : r0 + r - (c0 + c);
                var sameDocument = reverse ? c0 + c < documentBound[r] : c0 + c >= documentBound[r];
                ps[idx] = r < rows && c < keys && distance >= 0 && sameDocument
                    ? ps[idx] * Decay(logGamma, distance)
                    : 0f;
            }
            tiles.Stage(z, c0, keys, p.OutDim, e0, cols, V, zs);
            Group.Barrier();
            tiles.Accumulate(ps, R, zs, keys, acc);
        }
        tiles.Store(acc, 1f, r0, rows, p.OutDim, e0, cols, output);
    }

    /// <summary>
    /// The decayed causal product without barriers, for the CPU accelerator where every barrier round costs ~0.1 ms:
    /// one thread per output row (b, t, h) accumulates its row in place — O(RowDim + OutDim) per (row, key) pair, the
    /// minimum, without shared memory. Index: the row (b·T + t)·H + h.
    /// </summary>
    [Kernel(KernelGrouping.Implicit)]
    public static void CausalRows(Index1D thread, ArrayView<float> x, ArrayView<float> y, ArrayView<float> z,
        ArrayView<float> state, ArrayView<float> decay, ArrayView<float> output, ArrayView<int> bounds, CausalProblem p,
        Spread spread)
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
                var token = row / p.Heads;
                var documentBound = reverse
                    ? DocumentEnd(bounds, p.HasBounds, token, p.SeqLen)
                    : DocumentStart(bounds, p.HasBounds, token);

                if (p.HasState != 0 && ReadsWindowState(reverse, documentBound, chunkStart, chunkEnd, p.SeqLen))
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

                var first = reverse ? t : Math.Max(chunkStart, documentBound);
                var end = reverse ? Math.Min(chunkEnd, documentBound) : t + 1;
                var c = first;
                for (; c + 3 < end; c += 4)
                {
                    var block = new FourKeys(row + (c - t) * p.Heads, p.Heads);
                    var s = block.Dots(x, xRow, y, p.RowDim);
                    s.S0 *= Decay(logGamma, reverse ? c - t : t - c);
                    s.S1 *= Decay(logGamma, reverse ? c + 1 - t : t - c - 1);
                    s.S2 *= Decay(logGamma, reverse ? c + 2 - t : t - c - 2);
                    s.S3 *= Decay(logGamma, reverse ? c + 3 - t : t - c - 3);
                    block.AddWeighted(output, outRow, s, z, p.OutDim);
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
