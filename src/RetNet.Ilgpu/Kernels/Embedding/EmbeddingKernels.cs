using ILGPU;

namespace RetNet.Ilgpu.Kernels.Embedding;

/// <summary>Token embedding kernels: a gather forward and a deterministic, atomic-free scatter-add backward.</summary>
internal static class EmbeddingKernels
{
    /// <summary>
    /// output[n, d] = scale · table[ids[n], d], one thread per output element (consecutive threads, consecutive d). The
    /// scale serves RetNet's √d input scaling; plain lookups pass 1 (exact). The table may be stored in 16 bits.
    /// </summary>
    [Kernel(KernelGrouping.Implicit)]
    public static void Gather(Index1D thread, ArrayView<int> ids, FloatSource table, ArrayView<float> output, int width,
        float scale, Spread spread)
    {
        // Each item (output element) is handled by exactly one thread; Launch.Spread decides which.
        for (var runStart = spread.First(thread); runStart < spread.Count; runStart += spread.Step)
        {
            var runEnd = spread.End(runStart);
            for (var i = runStart; i < runEnd; i++)
            {
                var n = i / width;
                var d = i - n * width;
                output[i] = scale * table[(long)ids[n] * width + d];
            }
        }
    }

    /// <summary>
    /// dTable[uniqueIds[u], d] += Σ_p dOutput[positions[p], d] for p in [offsets[u], offsets[u + 1]), one thread per
    /// (distinct id u, column d). The positions of each id are in increasing order and summed in that order by one
    /// thread, so no two threads write one element and the result is the same bits every run, without float atomics.
    /// </summary>
    [Kernel(KernelGrouping.Implicit)]
    public static void ScatterAddGrouped(Index1D thread, ArrayView<int> uniqueIds, ArrayView<int> offsets,
        ArrayView<int> positions, ArrayView<float> dOutput, ArrayView<float> dTable, int width, Spread spread)
    {
        // Each item ((id, column) pair) is handled by exactly one thread; Launch.Spread decides which.
        for (var runStart = spread.First(thread); runStart < spread.Count; runStart += spread.Step)
        {
            var runEnd = spread.End(runStart);
            for (var i = runStart; i < runEnd; i++)
            {
                var u = i / width;
                var d = i - u * width;
                var end = offsets[u + 1];
                var sum = 0f;
                for (var p = offsets[u]; p < end; p++)
                    sum += dOutput[(long)positions[p] * width + d];
                var element = (long)uniqueIds[u] * width + d;
                dTable[element] += sum;
            }
        }
    }
}
