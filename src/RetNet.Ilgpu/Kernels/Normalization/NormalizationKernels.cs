using ILGPU;
using ILGPU.Algorithms;

namespace RetNet.Ilgpu.Kernels.Normalization;

/// <summary>
/// Which statistics a row normalisation uses. A struct type argument, so the branch on <see cref="Centered"/> is
/// resolved when the kernel is compiled and one kernel source serves RMSNorm and LayerNorm.
/// </summary>
internal interface INormalizationKind
{
    /// <summary>True when the row mean is subtracted (LayerNorm); false for RMSNorm, which only rescales.</summary>
    bool Centered { get; }
}

/// <summary>RMSNorm: x̂ = x / √(mean(x²) + eps).</summary>
internal readonly struct RmsNormalization : INormalizationKind
{
    public bool Centered => false;
}

/// <summary>LayerNorm: x̂ = (x − mean) / √(var + eps).</summary>
internal readonly struct LayerNormalization : INormalizationKind
{
    public bool Centered => true;
}

/// <summary>
/// Bits of the <c>flags</c> argument of the row kernels. Absent tensors are passed as a placeholder view that a
/// kernel never touches unless its bit is set (ILGPU kernels have no nullable views).
/// </summary>
internal static class NormalizationFlags
{
    /// <summary>A weight [D] multiplies x̂.</summary>
    public const int Weight = 1;

    /// <summary>A bias [D] is added after the weight.</summary>
    public const int Bias = 2;

    /// <summary>The forward kernel writes y (off when only the statistics are recomputed for a backward pass).</summary>
    public const int Output = 4;

    /// <summary>The forward kernel writes the row statistics: rstd [R], and mean [R] when centred.</summary>
    public const int Statistics = 8;

    /// <summary>Row r adds eps·epsScale[r] instead of eps (RetNet's decay-normalised head norm).</summary>
    public const int RowEps = 16;
}

/// <summary>
/// Row normalisation kernels over x viewed as rows [R, D]: forward and input-gradient kernels in two forms (one group
/// per row, its sums taken by a shared-memory tree or by sub-group built-ins; one thread per row without barriers, for
/// the CPU simulator), and the deterministic column reductions that produce the weight and bias gradients. Accumulation is fp32.
/// </summary>
internal static class NormalizationKernels
{
    /// <summary>
    /// Forward, one group per row (grid R, power-of-two group G, dynamic shared memory of G floats), the group's
    /// sums taken by the shared-memory tree (<see cref="TreeGroupSum"/>).
    /// </summary>
    [Kernel(KernelGrouping.Explicit, Specializations = [typeof(RmsNormalization), typeof(LayerNormalization)], Geometry = typeof(NormalizationOptions))]
    public static void ForwardGroup<TKind>(ArrayView<float> x, ArrayView<float> weight, ArrayView<float> bias,
        ArrayView<float> y, ArrayView<float> mean, ArrayView<float> rstd, ArrayView<float> epsScale, int dim,
        float eps, int flags)
        where TKind : struct, INormalizationKind =>
        Forward<TKind, TreeGroupSum>(x, weight, bias, y, mean, rstd, epsScale, dim, eps, flags);

    /// <summary>
    /// Forward, one group per row (grid R, group G a multiple of the device's sub-group granularity, dynamic shared
    /// memory of 2G floats), the group's sums taken in two levels by sub-group built-ins (<see cref="SubGroupSum"/>).
    /// </summary>
    [Kernel(KernelGrouping.Explicit, Specializations = [typeof(RmsNormalization), typeof(LayerNormalization)], Geometry = typeof(NormalizationOptions))]
    public static void ForwardSubGroup<TKind>(ArrayView<float> x, ArrayView<float> weight, ArrayView<float> bias,
        ArrayView<float> y, ArrayView<float> mean, ArrayView<float> rstd, ArrayView<float> epsScale, int dim,
        float eps, int flags)
        where TKind : struct, INormalizationKind =>
        Forward<TKind, SubGroupSum>(x, weight, bias, y, mean, rstd, epsScale, dim, eps, flags);

    /// <summary>
    /// The body of the group-per-row forward kernels. Thread t reads elements t, t + G, … so each step of the group
    /// is one coalesced load. The variance is taken about the mean in a second pass over the row, which avoids the
    /// cancellation of E[x²] − E[x]².
    /// </summary>
    private static void Forward<TKind, TSum>(ArrayView<float> x, ArrayView<float> weight, ArrayView<float> bias,
        ArrayView<float> y, ArrayView<float> mean, ArrayView<float> rstd, ArrayView<float> epsScale, int dim,
        float eps, int flags)
        where TKind : struct, INormalizationKind
        where TSum : struct, IGroupSum
    {
        var row = Grid.IdxX;
        var t = Group.IdxX;
        var size = Group.DimX;
        var start = row * dim;

        var mu = 0f;
        if (default(TKind).Centered)
        {
            var sum = 0f;
            for (var j = t; j < dim; j += size)
                sum += x[start + j];
            mu = default(TSum).Sum(sum, 0) / dim;
        }
        var squares = 0f;
        for (var j = t; j < dim; j += size)
        {
            var centred = x[start + j] - mu;
            squares += centred * centred;
        }
        var rowEps = (flags & NormalizationFlags.RowEps) != 0 ? eps * epsScale[row] : eps;
        var r = 1f / XMath.Sqrt(default(TSum).Sum(squares, 1) / dim + rowEps);

        if (t == 0 && (flags & NormalizationFlags.Statistics) != 0)
        {
            rstd[row] = r;
            if (default(TKind).Centered)
                mean[row] = mu;
        }
        if ((flags & NormalizationFlags.Output) != 0)
        {
            for (var j = t; j < dim; j += size)
            {
                var w = (flags & NormalizationFlags.Weight) != 0 ? weight[j] : 1f;
                var b = (flags & NormalizationFlags.Bias) != 0 ? bias[j] : 0f;
                y[start + j] = (x[start + j] - mu) * r * w + b;
            }
        }
    }

    /// <summary>Forward, one thread per row (index space R): the same arithmetic as <see cref="ForwardGroup{TKind}"/>
    /// without shared memory or barriers.</summary>
    [Kernel(KernelGrouping.Implicit, Specializations = [typeof(RmsNormalization), typeof(LayerNormalization)])]
    public static void ForwardRow<TKind>(Index1D thread, ArrayView<float> x, ArrayView<float> weight,
        ArrayView<float> bias, ArrayView<float> y, ArrayView<float> mean, ArrayView<float> rstd,
        ArrayView<float> epsScale, int dim, float eps, int flags, Spread spread)
        where TKind : struct, INormalizationKind
    {
        // Each item (row) is handled by exactly one thread; Launch.Spread decides which.
        for (var runStart = spread.First(thread); runStart < spread.Count; runStart += spread.Step)
        {
            var runEnd = spread.End(runStart);
            for (var row = runStart; row < runEnd; row++)
            {
                var start = row * dim;
                var mu = 0f;
                if (default(TKind).Centered)
                {
                    var sum = 0f;
                    for (var j = 0; j < dim; j++)
                        sum += x[start + j];
                    mu = sum / dim;
                }
                var squares = 0f;
                for (var j = 0; j < dim; j++)
                {
                    var centred = x[start + j] - mu;
                    squares += centred * centred;
                }
                var rowEps = (flags & NormalizationFlags.RowEps) != 0 ? eps * epsScale[row] : eps;
                var r = 1f / XMath.Sqrt(squares / dim + rowEps);

                if ((flags & NormalizationFlags.Statistics) != 0)
                {
                    rstd[row] = r;
                    if (default(TKind).Centered)
                        mean[row] = mu;
                }
                if ((flags & NormalizationFlags.Output) != 0)
                {
                    for (var j = 0; j < dim; j++)
                    {
                        var w = (flags & NormalizationFlags.Weight) != 0 ? weight[j] : 1f;
                        var b = (flags & NormalizationFlags.Bias) != 0 ? bias[j] : 0f;
                        y[start + j] = (x[start + j] - mu) * r * w + b;
                    }
                }
            }
        }
    }

    /// <summary>
    /// Input gradient, one group per row, from saved statistics: with g = dy ⊙ w and x̂ = (x − mean)·rstd,
    /// dx = rstd·(g − mean(g) − x̂·mean(g·x̂)); RMSNorm drops the mean(g) term (it subtracts no mean). Sums by the
    /// shared-memory tree, G floats of dynamic shared memory.
    /// </summary>
    [Kernel(KernelGrouping.Explicit, Specializations = [typeof(RmsNormalization), typeof(LayerNormalization)], Geometry = typeof(NormalizationOptions))]
    public static void BackwardGroup<TKind>(ArrayView<float> x, ArrayView<float> weight, ArrayView<float> dy,
        ArrayView<float> dx, ArrayView<float> mean, ArrayView<float> rstd, int dim, int flags)
        where TKind : struct, INormalizationKind =>
        Backward<TKind, TreeGroupSum>(x, weight, dy, dx, mean, rstd, dim, flags);

    /// <summary><see cref="BackwardGroup{TKind}"/> with the two-level sub-group sums (<see cref="SubGroupSum"/>),
    /// 2G floats of dynamic shared memory.</summary>
    [Kernel(KernelGrouping.Explicit, Specializations = [typeof(RmsNormalization), typeof(LayerNormalization)], Geometry = typeof(NormalizationOptions))]
    public static void BackwardSubGroup<TKind>(ArrayView<float> x, ArrayView<float> weight, ArrayView<float> dy,
        ArrayView<float> dx, ArrayView<float> mean, ArrayView<float> rstd, int dim, int flags)
        where TKind : struct, INormalizationKind =>
        Backward<TKind, SubGroupSum>(x, weight, dy, dx, mean, rstd, dim, flags);

    private static void Backward<TKind, TSum>(ArrayView<float> x, ArrayView<float> weight, ArrayView<float> dy,
        ArrayView<float> dx, ArrayView<float> mean, ArrayView<float> rstd, int dim, int flags)
        where TKind : struct, INormalizationKind
        where TSum : struct, IGroupSum
    {
        var row = Grid.IdxX;
        var t = Group.IdxX;
        var size = Group.DimX;
        var start = row * dim;
        var mu = default(TKind).Centered ? mean[row] : 0f;
        var r = rstd[row];

        var sumG = 0f;
        var sumGX = 0f;
        for (var j = t; j < dim; j += size)
        {
            var g = (flags & NormalizationFlags.Weight) != 0 ? dy[start + j] * weight[j] : dy[start + j];
            sumG += g;
            sumGX += g * (x[start + j] - mu) * r;
        }
        var meanG = default(TKind).Centered ? default(TSum).Sum(sumG, 0) / dim : 0f;
        var meanGX = default(TSum).Sum(sumGX, 1) / dim;

        for (var j = t; j < dim; j += size)
        {
            var g = (flags & NormalizationFlags.Weight) != 0 ? dy[start + j] * weight[j] : dy[start + j];
            var xHat = (x[start + j] - mu) * r;
            dx[start + j] = r * (g - meanG - xHat * meanGX);
        }
    }

    /// <summary>Input gradient, one thread per row: the arithmetic of <see cref="BackwardGroup{TKind}"/> without barriers.</summary>
    [Kernel(KernelGrouping.Implicit, Specializations = [typeof(RmsNormalization), typeof(LayerNormalization)])]
    public static void BackwardRow<TKind>(Index1D thread, ArrayView<float> x, ArrayView<float> weight,
        ArrayView<float> dy, ArrayView<float> dx, ArrayView<float> mean, ArrayView<float> rstd, int dim, int flags, Spread spread)
        where TKind : struct, INormalizationKind
    {
        // Each item (row) is handled by exactly one thread; Launch.Spread decides which.
        for (var runStart = spread.First(thread); runStart < spread.Count; runStart += spread.Step)
        {
            var runEnd = spread.End(runStart);
            for (var row = runStart; row < runEnd; row++)
            {
                var start = row * dim;
                var mu = default(TKind).Centered ? mean[row] : 0f;
                var r = rstd[row];

                var sumG = 0f;
                var sumGX = 0f;
                for (var j = 0; j < dim; j++)
                {
                    var g = (flags & NormalizationFlags.Weight) != 0 ? dy[start + j] * weight[j] : dy[start + j];
                    sumG += g;
                    sumGX += g * (x[start + j] - mu) * r;
                }
                var meanG = default(TKind).Centered ? sumG / dim : 0f;
                var meanGX = sumGX / dim;

                for (var j = 0; j < dim; j++)
                {
                    var g = (flags & NormalizationFlags.Weight) != 0 ? dy[start + j] * weight[j] : dy[start + j];
                    var xHat = (x[start + j] - mu) * r;
                    dx[start + j] = r * (g - meanG - xHat * meanGX);
                }
            }
        }
    }

    /// <summary>
    /// First pass of the weight gradient, index space C·D: thread (c, j) sums dy·x̂ of column j over rows
    /// [c·chunkRows, (c + 1)·chunkRows) in row order. Adjacent threads own adjacent columns, so every row step is a
    /// coalesced load, and the fixed order makes the result identical run to run (no atomics).
    /// </summary>
    [Kernel(KernelGrouping.Implicit, Specializations = [typeof(RmsNormalization), typeof(LayerNormalization)])]
    public static void WeightGradientPartial<TKind>(Index1D thread, ArrayView<float> x, ArrayView<float> dy,
        ArrayView<float> mean, ArrayView<float> rstd, ArrayView<float> partial, int rows, int dim, int chunkRows, Spread spread)
        where TKind : struct, INormalizationKind
    {
        // Each item ((chunk, column) pair) is handled by exactly one thread; Launch.Spread decides which.
        for (var runStart = spread.First(thread); runStart < spread.Count; runStart += spread.Step)
        {
            var runEnd = spread.End(runStart);
            for (var i = runStart; i < runEnd; i++)
            {
                var slice = new ColumnChunk(i, dim, chunkRows, rows);
                var sum = 0f;
                for (var row = slice.First; row < slice.End; row++)
                {
                    var mu = default(TKind).Centered ? mean[row] : 0f;
                    var element = row * dim + slice.Column;
                    sum += dy[element] * (x[element] - mu) * rstd[row];
                }
                partial[i] = sum;
            }
        }
    }

    /// <summary>First pass of the bias gradient, index space C·D: thread (c, j) sums dy of column j over chunk c,
    /// in row order (see <see cref="WeightGradientPartial{TKind}"/>).</summary>
    [Kernel(KernelGrouping.Implicit)]
    public static void BiasGradientPartial(Index1D thread, ArrayView<float> dy, ArrayView<float> partial, int rows,
        int dim, int chunkRows, Spread spread)
    {
        // Each item ((chunk, column) pair) is handled by exactly one thread; Launch.Spread decides which.
        for (var runStart = spread.First(thread); runStart < spread.Count; runStart += spread.Step)
        {
            var runEnd = spread.End(runStart);
            for (var i = runStart; i < runEnd; i++)
            {
                var slice = new ColumnChunk(i, dim, chunkRows, rows);
                var sum = 0f;
                for (var row = slice.First; row < slice.End; row++)
                    sum += dy[row * dim + slice.Column];
                partial[i] = sum;
            }
        }
    }

    /// <summary>Second pass, index space D: output[j] = Σ_c partial[c·D + j] in chunk order (deterministic).</summary>
    [Kernel(KernelGrouping.Implicit)]
    public static void ColumnSum(Index1D thread, ArrayView<float> partial, ArrayView<float> output, int chunks,
        int dim, Spread spread)
    {
        // Each item (column) is handled by exactly one thread; Launch.Spread decides which.
        for (var runStart = spread.First(thread); runStart < spread.Count; runStart += spread.Step)
        {
            var runEnd = spread.End(runStart);
            for (var column = runStart; column < runEnd; column++)
            {
                var sum = 0f;
                for (var c = 0; c < chunks; c++)
                    sum += partial[c * dim + column];
                output[column] = sum;
            }
        }
    }

    /// <summary>Item i = c·D + j of a first gradient pass: column j and the rows [First, End) of chunk c.</summary>
    private readonly struct ColumnChunk
    {
        public readonly int Column;
        public readonly int First;
        public readonly int End;

        public ColumnChunk(int item, int dim, int chunkRows, int rows)
        {
            var chunk = item / dim;
            Column = item - chunk * dim;
            First = chunk * chunkRows;
            End = IntrinsicMath.Min(rows, First + chunkRows);
        }
    }
}
