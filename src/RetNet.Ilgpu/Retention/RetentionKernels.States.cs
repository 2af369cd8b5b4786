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
    [Kernel(KernelGrouping.Explicit, Specializations = [typeof(RetentionTile16), typeof(RetentionTile32x64)])]
    public static void StatesTiled<TTile>(ArrayView<float> x, ArrayView<float> y, ArrayView<float> initial,
        ArrayView<float> decay, ArrayView<float> chunkStates, ArrayView<float> final, StateProblem p)
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
        var b = bh / p.Heads;
        var h = bh - b * p.Heads;
        var rowsHere = Math.Min(K, p.RowDim - i0);
        var colsHere = Math.Min(V, p.ColDim - e0);
        var logGamma = decay[h];
        var reverse = p.Reverse != 0;
        var firstRow = b * p.SeqLen * p.Heads + h;
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
            for (var idx = tid; idx < K * V; idx += groupSize)
            {
                var i = idx / V;
                var e = idx - i * V;
                if (p.WriteChunkStates != 0 && i < rowsHere && e < colsHere)
                    chunkStates[(bh * p.ChunkCount + chunk) * matrix + (i0 + i) * p.ColDim + e0 + e] = st[idx];
                st[idx] *= chunkDecay;
            }
            for (var j0 = start; j0 < end; j0 += R)
            {
                var tokens = Math.Min(R, end - j0);
                Group.Barrier();
                for (var idx = tid; idx < R * K; idx += groupSize)
                {
                    var j = idx / K;
                    var i = idx - j * K;
                    var t = j0 + j;
                    xs[idx] = j < tokens && i < rowsHere
                        ? x[(firstRow + t * p.Heads) * p.RowDim + i0 + i] *
                          Decay(logGamma, reverse ? t - start + 1 : end - 1 - t)
                        : 0f;
                }
                for (var idx = tid; idx < R * V; idx += groupSize)
                {
                    var j = idx / V;
                    var e = idx - j * V;
                    ys[idx] = j < tokens && e < colsHere ? y[(firstRow + (j0 + j) * p.Heads) * p.ColDim + e0 + e] : 0f;
                }
                Group.Barrier();
                for (var idx = tid; idx < K * V; idx += groupSize)
                {
                    var i = idx / V;
                    var e = idx - i * V;
                    var sum = 0f;
                    for (var j = 0; j < tokens; j++)
                        sum += xs[j * K + i] * ys[j * V + e];
                    st[idx] += sum;
                }
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
    /// The chunk-state walk without barriers, for the CPU accelerator: one thread per state element (b, h, i, e),
    /// holding it in a register and walking the tokens one by one — forward s ← γ s + x_i y_e, reverse
    /// s ← γ (s + x_i y_e) — which sums exactly the chunk formulas of <see cref="StateProblem"/> with one fused
    /// multiply-add per token instead of an exponential. Index: ((b·H + h)·RowDim + i)·ColDim + e.
    /// </summary>
    [Kernel(KernelGrouping.Implicit)]
    public static void StatesElements(Index1D index, ArrayView<float> x, ArrayView<float> y, ArrayView<float> initial,
        ArrayView<float> decay, ArrayView<float> chunkStates, ArrayView<float> final, StateProblem p)
    {
        int element = index;
        var matrix = p.RowDim * p.ColDim;
        var bh = element / matrix;
        var cell = element - bh * matrix;
        var i = cell / p.ColDim;
        var e = cell - i * p.ColDim;
        var b = bh / p.Heads;
        var h = bh - b * p.Heads;
        var gammaMinusOne = decay[p.Heads + h];
        var reverse = p.Reverse != 0;
        var firstRow = b * p.SeqLen * p.Heads + h;
        var s = p.HasInitial != 0 ? initial[element] : 0f;

        for (var step = 0; step < p.ChunkCount; step++)
        {
            var chunk = reverse ? p.ChunkCount - 1 - step : step;
            var start = chunk * p.ChunkSize;
            var end = Math.Min(start + p.ChunkSize, p.SeqLen);
            if (p.WriteChunkStates != 0)
                chunkStates[(bh * p.ChunkCount + chunk) * matrix + cell] = s;
            for (var n = 0; n < end - start; n++)
            {
                var row = firstRow + (reverse ? end - 1 - n : start + n) * p.Heads;
                var update = x[row * p.RowDim + i] * y[row * p.ColDim + e];
                if (reverse)
                {
                    s += update;
                    s += gammaMinusOne * s;
                }
                else
                {
                    s += gammaMinusOne * s;
                    s += update;
                }
            }
        }
        if (p.WriteFinal != 0)
            final[element] = s;
    }
}
