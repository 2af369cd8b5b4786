using System.Runtime.CompilerServices;
using ILGPU;

namespace RetNet.Ilgpu.Kernels;

/// <summary>
/// The tiles of one (batch, head) in the tiled retention and attention kernels, over rows of [B, T, H, dim] tensors
/// (token t of the head is row firstRow + t·H): operand tiles staged in shared memory, the R×R score tile of two
/// operands, and the R×V accumulator a group builds and stores (R = tile rows, K = tile depth, V = tile columns). Every
/// thread of the group calls each method; threads stride over the tile's elements (tid, tid + G, …), so any group size
/// runs any tile. Only <see cref="Product"/> has barriers. An instance type (the library's static methods over
/// ArrayViews are kernels) whose methods are inlined, so the tile sizes stay compile-time constants.
/// </summary>
internal readonly struct HeadTiles
{
    private readonly int rows;
    private readonly int depth;
    private readonly int columns;
    private readonly int heads;

    /// <param name="rows">R: rows of each operand tile (and of the square score tile).</param>
    /// <param name="depth">K: columns of the operands staged per step of <see cref="Product"/>.</param>
    /// <param name="columns">V: columns of the accumulator tile.</param>
    /// <param name="batchHead">b·H + h.</param>
    /// <param name="heads">H.</param>
    /// <param name="seqLen">T.</param>
    public HeadTiles(int rows, int depth, int columns, int batchHead, int heads, int seqLen)
    {
        this.rows = rows;
        this.depth = depth;
        this.columns = columns;
        this.heads = heads;
        var b = batchHead / heads;
        FirstRow = b * seqLen * heads + batchHead - b * heads;
    }

    /// <summary>The row of token 0 of this (batch, head); token t is row FirstRow + t·H.</summary>
    public int FirstRow { get; }

    /// <summary>
    /// Writes the R×R tile output[x·R + y] = Σ_d a[aStart + x, d] · b[bStart + y, d] for x &lt; aCount and y &lt; bCount
    /// (0 elsewhere), rows of <paramref name="dim"/> elements staged K columns at a time in <paramref name="xs"/> and
    /// <paramref name="ys"/> (R×K each). Its first barrier also orders the group's earlier reads of the staging tiles
    /// and of <paramref name="output"/> before they are overwritten; there is no barrier after the product.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Product(ArrayView<float> a, int aStart, int aCount, ArrayView<float> b, int bStart, int bCount, int dim,
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
                xs[idx] = r < aCount && d < width ? a[(FirstRow + (aStart + r) * heads) * dim + d0 + d] : 0f;
                ys[idx] = r < bCount && d < width ? b[(FirstRow + (bStart + r) * heads) * dim + d0 + d] : 0f;
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

    /// <summary>
    /// Stages a R×<paramref name="width"/> tile: target[c·width + e] = source[token start + c, column col0 + e] for
    /// c &lt; count and e &lt; cols, 0 elsewhere; rows of <paramref name="dim"/> elements. No barrier.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Stage(ArrayView<float> source, int start, int count, int dim, int col0, int cols, int width,
        ArrayView<float> target) =>
        Stage(source, start, count, dim, col0, cols, width, target, default(Unweighted));

    /// <summary><see cref="Stage(ArrayView{float}, int, int, int, int, int, int, ArrayView{float})"/> with each
    /// element of token t passed through <paramref name="weight"/> as it is staged.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Stage<TWeight>(ArrayView<float> source, int start, int count, int dim, int col0, int cols, int width,
        ArrayView<float> target, TWeight weight) where TWeight : struct, ITokenWeight
    {
        var tid = Group.IdxX;
        var groupSize = Group.DimX;
        for (var idx = tid; idx < rows * width; idx += groupSize)
        {
            var c = idx / width;
            var e = idx - c * width;
            target[idx] = c < count && e < cols
                ? weight.Apply(source[(FirstRow + (start + c) * heads) * dim + col0 + e], start + c)
                : 0f;
        }
    }

    /// <summary>Zeroes the R×V accumulator. No barrier: each thread owns its elements.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Clear(ArrayView<float> acc)
    {
        var groupSize = Group.DimX;
        for (var idx = Group.IdxX; idx < rows * columns; idx += groupSize)
            acc[idx] = 0f;
    }

    /// <summary>
    /// acc[r·V + e] += Σ_{c &lt; count} weights[r·stride + c] · staged[c·V + e] over the R×V tile, each thread on the
    /// accumulator elements it owns (after a barrier that published the weights and the staged tile).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Accumulate(ArrayView<float> weights, int stride, ArrayView<float> staged, int count,
        ArrayView<float> acc) =>
        Accumulate(weights, stride, 1, staged, count, acc, rows);

    /// <summary>
    /// acc[r·V + e] += Σ_{c &lt; count} weights[r·rowStride + c·columnStride] · staged[c·V + e] over an
    /// <paramref name="accRows"/>×V accumulator: with a column stride the weights are read transposed (the state
    /// update Xᵀ·Y of the chunk-state walk).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Accumulate(ArrayView<float> weights, int rowStride, int columnStride, ArrayView<float> staged,
        int count, ArrayView<float> acc, int accRows)
    {
        var V = columns;
        var groupSize = Group.DimX;
        for (var idx = Group.IdxX; idx < accRows * V; idx += groupSize)
        {
            var r = idx / V;
            acc[idx] += Dot(weights, r * rowStride, columnStride, staged, idx - r * V, count);
        }
    }

    /// <summary>
    /// acc[r·V + e] = acc[r·V + e] · scale[r] + Σ_{c &lt; count} weights[r·R + c] · staged[c·V + e]: the rescaled
    /// accumulator of an online softmax.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void AccumulateRescaled(ArrayView<float> weights, ArrayView<float> staged, int count,
        ArrayView<float> scale, ArrayView<float> acc)
    {
        var V = columns;
        var groupSize = Group.DimX;
        for (var idx = Group.IdxX; idx < rows * V; idx += groupSize)
        {
            var r = idx / V;
            acc[idx] = acc[idx] * scale[r] + Dot(weights, r * rows, 1, staged, idx - r * V, count);
        }
    }

    /// <summary>
    /// target[token start + r, column col0 + e] = factor · acc[r·V + e] for r &lt; count and e &lt; cols; rows of
    /// <paramref name="dim"/> elements.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Store(ArrayView<float> acc, float factor, int start, int count, int dim, int col0, int cols,
        ArrayView<float> target)
    {
        var V = columns;
        var groupSize = Group.DimX;
        for (var idx = Group.IdxX; idx < rows * V; idx += groupSize)
        {
            var r = idx / V;
            var e = idx - r * V;
            if (r < count && e < cols)
                target[(FirstRow + (start + r) * heads) * dim + col0 + e] = factor * acc[idx];
        }
    }

    /// <summary>Σ_{c &lt; count} weights[first + c·stride] · staged[c·V + e].</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private float Dot(ArrayView<float> weights, int first, int stride, ArrayView<float> staged, int e, int count)
    {
        var sum = 0f;
        for (var c = 0; c < count; c++)
            sum += weights[first + c * stride] * staged[c * columns + e];
        return sum;
    }
}

/// <summary>A factor applied to each element of a token row as <see cref="HeadTiles"/> stages it, as a struct type
/// argument so the staging loop is specialised for it.</summary>
internal interface ITokenWeight
{
    /// <summary>Element <paramref name="x"/> of token <paramref name="token"/>, weighted.</summary>
    float Apply(float x, int token);
}

/// <summary>No weight: the element as it is.</summary>
internal readonly struct Unweighted : ITokenWeight
{
    /// <inheritdoc/>
    public float Apply(float x, int token) => x;
}
