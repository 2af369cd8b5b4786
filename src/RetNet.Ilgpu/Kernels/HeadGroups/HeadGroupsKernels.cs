using ILGPU;

namespace RetNet.Ilgpu.Kernels.HeadGroups;

/// <summary>Device code of grouped key/value heads: spreading each kv head over its query heads, and summing the
/// query heads' gradients back onto it.</summary>
internal static class HeadGroupsKernels
{
    /// <summary>
    /// dst[n, j, d] = src[n, j / G, d] for dst [N, H, D] and src [N, H/G, D], one thread per dst element
    /// (consecutive threads, consecutive d: coalesced reads and writes).
    /// </summary>
    [Kernel(KernelGrouping.Implicit)]
    public static void Expand(Index1D thread, ArrayView<float> source, ArrayView<float> destination, int heads,
        int group, int width, Spread spread)
    {
        // Each item (destination element) is handled by exactly one thread; Launch.Spread decides which.
        for (var runStart = spread.First(thread); runStart < spread.Count; runStart += spread.Step)
        {
            var runEnd = spread.End(runStart);
            for (var i = runStart; i < runEnd; i++)
            {
                var row = i / width;
                var d = i - row * width;
                var n = row / heads;
                var j = row - n * heads;
                destination[i] = source[((long)n * (heads / group) + j / group) * width + d];
            }
        }
    }

    /// <summary>
    /// dst[n, i, d] = Σ_{g = 0…G−1} src[n, i·G + g, d] for src [N, H, D] and dst [N, H/G, D], summed in increasing g by
    /// one thread per dst element: the same bits every run, whatever the batch.
    /// </summary>
    [Kernel(KernelGrouping.Implicit)]
    public static void Reduce(Index1D thread, ArrayView<float> source, ArrayView<float> destination, int kvHeads,
        int group, int width, Spread spread)
    {
        // Each item (destination element) is handled by exactly one thread; Launch.Spread decides which.
        for (var runStart = spread.First(thread); runStart < spread.Count; runStart += spread.Step)
        {
            var runEnd = spread.End(runStart);
            for (var i = runStart; i < runEnd; i++)
            {
                var row = i / width;
                var d = i - row * width;
                var n = row / kvHeads;
                var h = row - n * kvHeads;
                var first = ((long)n * kvHeads * group + (long)h * group) * width + d;
                var sum = 0f;
                for (var g = 0; g < group; g++)
                    sum += source[first + (long)g * width];
                destination[i] = sum;
            }
        }
    }
}
