using System.Runtime.CompilerServices;
using ILGPU;

namespace RetNet.Ilgpu.Kernels;

/// <summary>One value per key of a <see cref="FourKeys"/> block: the four dot products, or their weights.</summary>
internal struct FourValues
{
    public float S0;
    public float S1;
    public float S2;
    public float S3;
}

/// <summary>
/// Four consecutive keys of one head in the barrier-free kernels: rows First, First + stride, First + 2·stride and
/// First + 3·stride of a key (and value) tensor, stride H in [B, T, H, dim] and 1 in a cache [B, H, capacity, dim].
/// One pass over a row serves all four: each element of the query row and each read-modify-write of the output row
/// serves four keys, which halves the view accesses per pair on the CPU accelerator, where every access is costly.
/// An instance type (the library's static methods over ArrayViews are kernels) whose methods are inlined.
/// </summary>
internal readonly struct FourKeys
{
    private readonly int stride;

    /// <param name="first">The row of the first key.</param>
    /// <param name="stride">Rows between consecutive keys.</param>
    public FourKeys(int first, int stride)
    {
        First = first;
        this.stride = stride;
    }

    /// <summary>The row of the first key.</summary>
    public int First { get; }

    /// <summary>x[xRow + d] · keys[key·dim + d] summed over d &lt; <paramref name="dim"/>, for each of the four keys.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public FourValues Dots(ArrayView<float> x, int xRow, ArrayView<float> keys, int dim)
    {
        var key0 = First;
        var key1 = key0 + stride;
        var key2 = key1 + stride;
        var key3 = key2 + stride;
        float s0 = 0f, s1 = 0f, s2 = 0f, s3 = 0f;
        for (var d = 0; d < dim; d++)
        {
            var xd = x[xRow + d];
            s0 += xd * keys[key0 * dim + d];
            s1 += xd * keys[key1 * dim + d];
            s2 += xd * keys[key2 * dim + d];
            s3 += xd * keys[key3 * dim + d];
        }
        return new FourValues { S0 = s0, S1 = s1, S2 = s2, S3 = s3 };
    }

    /// <summary>output[outRow + e] += w0·values[key0·dim + e] + … + w3·values[key3·dim + e] for e &lt; <paramref name="dim"/>,
    /// summed in that order.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void AddWeighted(ArrayView<float> output, int outRow, FourValues w, ArrayView<float> values, int dim)
    {
        var key0 = First;
        var key1 = key0 + stride;
        var key2 = key1 + stride;
        var key3 = key2 + stride;
        for (var e = 0; e < dim; e++)
        {
            output[outRow + e] += w.S0 * values[key0 * dim + e] + w.S1 * values[key1 * dim + e] +
                                  w.S2 * values[key2 * dim + e] + w.S3 * values[key3 * dim + e];
        }
    }
}
