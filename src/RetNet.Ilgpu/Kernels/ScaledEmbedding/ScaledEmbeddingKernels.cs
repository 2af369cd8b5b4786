using ILGPU;

namespace RetNet.Ilgpu.Kernels.ScaledEmbedding;

/// <summary>Device code of the scaled token lookup.</summary>
internal static class ScaledEmbeddingKernels
{
    /// <summary>output[n, c] = scale · table[ids[n], c]; one thread per output element. The ids were validated on the
    /// host before the launch.</summary>
    [Kernel(KernelGrouping.Implicit)]
    public static void Gather(Index1D index, ArrayView<int> ids, ArrayView<float> table, ArrayView<float> output,
        int width, float scale)
    {
        int element = index;
        var n = element / width;
        var c = element - n * width;
        output[element] = scale * table[(long)ids[n] * width + c];
    }
}
