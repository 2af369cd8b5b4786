using ILGPU;
using RetNet.Ilgpu.Kernels;

namespace RetNet.Ilgpu.Retention;

internal static partial class RetentionKernels
{
    /// <summary>
    /// The chunk-state walk (see <see cref="StateProblem"/>), tiled: one group per (Depth-tile of RowDim, Columns-tile
    /// of ColDim, b·H + h) keeps its state tile in shared memory and walks the chunks in order (reverse order for the
    /// gradients); each chunk's tokens pass through shared memory Rows at a time, x pre-multiplied by its decay weight.
    /// Grid: (⌈RowDim / Depth⌉, ⌈ColDim / Columns⌉, B·H); any group size.
    /// </summary>
    [Kernel(KernelGrouping.Explicit, Specializations = [typeof(RetentionTile16), typeof(RetentionTile32x64)], Geometry = typeof(RetentionTiledGeometry))]
    public static void StatesTiled<TTile>(ArrayView<float> x, ArrayView<float> y, ArrayView<float> initial,
        ArrayView<float> decay, ArrayView<float> chunkStates, ArrayView<float> final, ArrayView<int> bounds,
        StateProblem p)
        where TTile : struct, IRetentionTile
    {
        var R = default(TTile).Rows;
        var K = default(TTile).Depth;
        var V = default(TTile).Columns;
        var xs = SharedMemory.Allocate<float>(default(TTile).Rows * default(TTile).Depth);
        var ys = SharedMemory.Allocate<float>(default(TTile).Rows * default(TTile).Columns);
        var st = SharedMemory.Allocate<float>(default(TTile).Depth * default(TTile).Columns);

        var tid = Group.IdxX;
        var groupSize = Group.DimX;
        var i0 = Grid.IdxX * K;
        var e0 = Grid.IdxY * V;
        var bh = Grid.IdxZ;
        var rowsHere = Math.Min(K, p.RowDim - i0);
        var colsHere = Math.Min(V, p.ColDim - e0);
        var logGamma = decay[bh % p.Heads];
        var reverse = p.Reverse != 0;
        var tiles = new HeadTiles(R, K, V, bh, p.Heads, p.SeqLen);
        var matrix = p.RowDim * p.ColDim;

        // Each thread owns the state elements idx = tid, tid + groupSize, …: only the token tiles need barriers.
        for (var idx = tid; idx < K * V; idx += groupSize)
        {
            var i = idx / V;
            var e = idx - i * V;
            st[idx] = p.HasInitial != 0 && i < rowsHere && e < colsHere
                ? initial[bh * matrix + (i0 + i) * p.ColDim + e0 + e]
                : 0f;
        }

        for (var step = 0; step < p.ChunkCount; step++)
        {
            var chunk = reverse ? p.ChunkCount - 1 - step : step;
            var start = chunk * p.ChunkSize;
            var end = Math.Min(start + p.ChunkSize, p.SeqLen);
            var chunkDecay = Decay(logGamma, end - start);
            var documentBound = WalkedDocumentBound(bounds, p, bh / p.Heads, reverse, start, end);
            var carries = CarriesAcrossChunk(reverse, documentBound, start, end);
            for (var idx = tid; idx < K * V; idx += groupSize)
            {
                var i = idx / V;
                var e = idx - i * V;
                if (p.WriteChunkStates != 0 && i < rowsHere && e < colsHere)
                    chunkStates[(bh * p.ChunkCount + chunk) * matrix + (i0 + i) * p.ColDim + e0 + e] = st[idx];
                st[idx] = carries ? st[idx] * chunkDecay : 0f;
            }
            for (var j0 = start; j0 < end; j0 += R)
            {
                var tokens = Math.Min(R, end - j0);
                Group.Barrier();
                tiles.Stage(x, j0, tokens, p.RowDim, i0, rowsHere, K, xs,
                    new ChunkDecayWeight(logGamma, reverse, start, end, documentBound));
                tiles.Stage(y, j0, tokens, p.ColDim, e0, colsHere, V, ys);
                Group.Barrier();
                tiles.Accumulate(xs, 1, K, ys, tokens, st, K);
            }
        }

        if (p.WriteFinal == 0)
            return;
        for (var idx = tid; idx < K * V; idx += groupSize)
        {
            var i = idx / V;
            var e = idx - i * V;
            if (i < rowsHere && e < colsHere)
                final[bh * matrix + (i0 + i) * p.ColDim + e0 + e] = st[idx];
        }
    }

    /// <summary>
    /// The chunk-state walk without barriers, for the CPU accelerator: one thread per state column (b, h, e) walks the
    /// chunks; columns are independent, so no thread waits for another. The running column lives in the matrix being
    /// written (the next chunk's slot of chunkStates, or final), so the thread needs no per-element registers — the CPU
    /// accelerator pays ~4 µs per simulated thread, so fewer, longer threads win there. Index: (b·H + h)·ColDim + e.
    /// </summary>
    [Kernel(KernelGrouping.Implicit)]
    public static void StatesColumns(Index1D thread, ArrayView<float> x, ArrayView<float> y, ArrayView<float> initial,
        ArrayView<float> decay, ArrayView<float> chunkStates, ArrayView<float> final, ArrayView<int> bounds,
        StateProblem p, Spread spread)
    {
        // Each item (state column) is handled by exactly one thread; Launch.Spread decides which.
        for (var runStart = spread.First(thread); runStart < spread.Count; runStart += spread.Step)
        {
            var runEnd = spread.End(runStart);
            for (var column = runStart; column < runEnd; column++)
            {
                var bh = column / p.ColDim;
                var e = column - bh * p.ColDim;
                var b = bh / p.Heads;
                var h = bh - b * p.Heads;
                var logGamma = decay[h];
                var reverse = p.Reverse != 0;
                var firstRow = b * p.SeqLen * p.Heads + h;
                var matrix = p.RowDim * p.ColDim;
                var own = bh * matrix + e;
                var inChunkStates = p.WriteChunkStates != 0;
                if (!inChunkStates && p.WriteFinal == 0)
                    continue;

                // The matrix entering the walk: the first visited chunk's slot, or final when no snapshots are kept (final
                // may be initial itself: each element is read before it is written, by this thread only).
                var firstChunk = reverse ? p.ChunkCount - 1 : 0;
                var firstBase = inChunkStates ? (bh * p.ChunkCount + firstChunk) * matrix + e : own;
                for (var i = 0; i < p.RowDim; i++)
                {
                    var s = p.HasInitial != 0 ? initial[own + i * p.ColDim] : 0f;
                    if (inChunkStates)
                        chunkStates[firstBase + i * p.ColDim] = s;
                    else
                        final[firstBase + i * p.ColDim] = s;
                }

                for (var step = 0; step < p.ChunkCount; step++)
                {
                    var last = step == p.ChunkCount - 1;
                    if (last && p.WriteFinal == 0)
                        break;
                    var chunk = reverse ? p.ChunkCount - 1 - step : step;
                    var start = chunk * p.ChunkSize;
                    var n = Math.Min(p.ChunkSize, p.SeqLen - start);
                    var sourceBase = inChunkStates ? (bh * p.ChunkCount + chunk) * matrix + e : own;
                    var targetInChunkStates = inChunkStates && !last;
                    var targetBase = targetInChunkStates
                        ? (bh * p.ChunkCount + (reverse ? chunk - 1 : chunk + 1)) * matrix + e
                        : own;
                    var chunkDecay = Decay(logGamma, n);
                    var documentBound = WalkedDocumentBound(bounds, p, b, reverse, start, start + n);
                    var carries = CarriesAcrossChunk(reverse, documentBound, start, start + n);
                    for (var i = 0; i < p.RowDim; i++)
                    {
                        var source = sourceBase + i * p.ColDim;
                        var s = carries ? chunkDecay * (inChunkStates ? chunkStates[source] : final[source]) : 0f;
                        if (targetInChunkStates)
                            chunkStates[targetBase + i * p.ColDim] = s;
                        else
                            final[targetBase + i * p.ColDim] = s;
                    }
                    // Four tokens per pass over the column: one read-modify-write of each state element serves four tokens.
                    var j = 0;
                    for (; j + 3 < n; j += 4)
                    {
                        var row0 = firstRow + (start + j) * p.Heads;
                        var row1 = row0 + p.Heads;
                        var row2 = row1 + p.Heads;
                        var row3 = row2 + p.Heads;
                        var w0 = y[row0 * p.ColDim + e] * Weight(logGamma, reverse, n, documentBound, start, j + 0);
                        var w1 = y[row1 * p.ColDim + e] * Weight(logGamma, reverse, n, documentBound, start, j + 1);
                        var w2 = y[row2 * p.ColDim + e] * Weight(logGamma, reverse, n, documentBound, start, j + 2);
                        var w3 = y[row3 * p.ColDim + e] * Weight(logGamma, reverse, n, documentBound, start, j + 3);
                        for (var i = 0; i < p.RowDim; i++)
                        {
                            var update = x[row0 * p.RowDim + i] * w0 + x[row1 * p.RowDim + i] * w1 +
                                         x[row2 * p.RowDim + i] * w2 + x[row3 * p.RowDim + i] * w3;
                            if (targetInChunkStates)
                                chunkStates[targetBase + i * p.ColDim] += update;
                            else
                                final[targetBase + i * p.ColDim] += update;
                        }
                    }
                    for (; j < n; j++)
                    {
                        var row = firstRow + (start + j) * p.Heads;
                        var weighted = y[row * p.ColDim + e] * Weight(logGamma, reverse, n, documentBound, start, j);
                        for (var i = 0; i < p.RowDim; i++)
                        {
                            var update = x[row * p.RowDim + i] * weighted;
                            if (targetInChunkStates)
                                chunkStates[targetBase + i * p.ColDim] += update;
                            else
                                final[targetBase + i * p.ColDim] += update;
                        }
                    }
                }
            }
        }
    }

    /// <summary>The start (forward) or end (reverse) of the document a walk keeps in chunk [start, end) of row b
    /// (<see cref="WalkedToken"/>).</summary>
    private static int WalkedDocumentBound(ArrayView<int> bounds, in StateProblem p, int b, bool reverse, int start,
        int end)
    {
        var token = b * p.SeqLen + WalkedToken(reverse, start, end);
        return reverse ? DocumentEnd(bounds, p.HasBounds, token, p.SeqLen) : DocumentStart(bounds, p.HasBounds, token);
    }

    /// <summary>The weight of token j (counted from the chunk start) of a chunk of n tokens in the state update:
    /// γ^(n−1−j) forward, γ^(j+1) in reverse, and 0 outside the walked document.</summary>
    private static float Weight(float logGamma, bool reverse, int n, int documentBound, int start, int j) =>
        InWalkedDocument(reverse, documentBound, start + j) ? Decay(logGamma, reverse ? j + 1 : n - 1 - j) : 0f;

    /// <summary>The weight of token t of the chunk [start, end) in the state update: γ^(end−1−t) forward, γ^(t−start+1)
    /// in reverse, and 0 outside the walked document (<paramref name="documentBound"/>).</summary>
    private readonly struct ChunkDecayWeight(float logGamma, bool reverse, int start, int end, int documentBound)
        : ITokenWeight
    {
        public float Apply(float x, int token) =>
            InWalkedDocument(reverse, documentBound, token)
                ? x * Decay(logGamma, reverse ? token - start + 1 : end - 1 - token)
                : 0f;
    }
}
