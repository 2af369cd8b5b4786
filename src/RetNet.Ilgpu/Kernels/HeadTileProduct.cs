using System.Runtime.CompilerServices;
using ILGPU;

namespace RetNet.Ilgpu.Kernels;

/// <summary>
/// The score tile of the tiled retention and attention kernels: output[x·R + y] = Σ_d a[aStart + x, d] · b[bStart + y, d]
/// for x &lt; aCount and y &lt; bCount (0 elsewhere), over the rows of one (batch, head) of [B, T, H, dim] tensors, staged
/// in shared memory K columns at a time (R = tile rows, K = tile depth). Every thread of the group must call it. Its
/// first barrier also orders the group's earlier reads of the staging tiles and of <c>output</c> before they are
/// overwritten; there is no barrier after the product. An instance method (the library's static methods over
/// ArrayViews are kernels), inlined so the tile sizes stay compile-time constants.
/// </summary>
internal readonly struct HeadTileProduct
{
    private readonly int rows;
    private readonly int depth;
    private readonly int firstRow;
    private readonly int heads;

    /// <param name="rows">R: rows of each operand tile (and of the square output tile).</param>
    /// <param name="depth">K: columns staged per step.</param>
    /// <param name="firstRow">Row of token 0 of this (batch, head): token t is row firstRow + t·heads.</param>
    /// <param name="heads">H.</param>
    public HeadTileProduct(int rows, int depth, int firstRow, int heads)
    {
        this.rows = rows;
        this.depth = depth;
        this.firstRow = firstRow;
        this.heads = heads;
    }

    /// <summary>Writes the R×R tile of products of tokens aStart… of <paramref name="a"/> with tokens bStart… of
    /// <paramref name="b"/>, rows of <paramref name="dim"/> elements, into <paramref name="output"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Compute(ArrayView<float> a, int aStart, int aCount, ArrayView<float> b, int bStart, int bCount, int dim,
        ArrayView<float> xs, ArrayView<float> ys, ArrayView<float> output)
    {
        var R = rows;
        var K = depth;
        var tid = Group.IdxX;
        var groupSize = Group.DimX;
        for (var d0 = 0; d0 < dim; d0 += K)
        {
            var width = Math.Min(K, dim - d0);
            Group.Barrier();
            for (var idx = tid; idx < R * K; idx += groupSize)
            {
                var r = idx / K;
                var d = idx - r * K;
                xs[idx] = r < aCount && d < width ? a[(firstRow + (aStart + r) * heads) * dim + d0 + d] : 0f;
                ys[idx] = r < bCount && d < width ? b[(firstRow + (bStart + r) * heads) * dim + d0 + d] : 0f;
            }
            Group.Barrier();
            for (var idx = tid; idx < R * R; idx += groupSize)
            {
                var x = idx / R;
                var y = idx - x * R;
                var sum = 0f;
                for (var d = 0; d < width; d++)
                    sum += xs[x * K + d] * ys[y * K + d];
                output[idx] = d0 == 0 ? sum : output[idx] + sum;
            }
        }
    }
}
