using ILGPU;
using ILGPU.Runtime;
using RetNet.Ilgpu.Devices;
using RetNet.Ilgpu.Tensors;

namespace RetNet.Ilgpu.Kernels.Normalization;

/// <summary>
/// The host side shared by <see cref="RmsNorm"/> and <see cref="LayerNorm"/>: argument checks, then the launches
/// of <see cref="NormalizationKernels"/> on the device stream. x is viewed as rows [R, D], D its last dimension.
/// </summary>
internal static class RowNormalization
{
    /// <summary>Checks every argument, then launches the forward kernel. <paramref name="mean"/> is used only when
    /// <typeparamref name="TKind"/> is centred; <paramref name="epsScale"/> [R], when given, makes row r add
    /// eps·epsScale[r] instead of eps.</summary>
    public static void Forward<TKind>(Tensor x, Tensor? weight, Tensor? bias, float eps, Tensor y, Tensor? mean,
        Tensor? rstd, NormalizationOptions? options, Tensor? epsScale = null)
        where TKind : struct, INormalizationKind
    {
        var (rows, dim, device) = Input(x, weight, eps, (y, nameof(y)));
        CheckParameter(bias, nameof(bias), dim, device);
        CheckStatistics<TKind>(mean, rstd, rows, device);
        CheckParameter(epsScale, nameof(epsScale), rows, device);
        // y may be x itself: each thread reads x[j] before it writes y[j], and only after the row's reductions.
        ShapeCheck.DistinctOrSame(y, nameof(y), x, nameof(x));
        Distinct(y, nameof(y), (weight, nameof(weight)), (bias, nameof(bias)), (mean, nameof(mean)),
            (rstd, nameof(rstd)));
        Distinct(mean, nameof(mean), (x, nameof(x)), (weight, nameof(weight)), (bias, nameof(bias)),
            (rstd, nameof(rstd)));
        Distinct(rstd, nameof(rstd), (x, nameof(x)), (weight, nameof(weight)), (bias, nameof(bias)),
            (epsScale, nameof(epsScale)));
        Distinct(y, nameof(y), (epsScale, nameof(epsScale)));
        var launch = Resolve(options, device, dim);

        if (rows == 0)
            return;
        var flags = NormalizationFlags.Output;
        if (weight is not null)
            flags |= NormalizationFlags.Weight;
        if (bias is not null)
            flags |= NormalizationFlags.Bias;
        if (rstd is not null)
            flags |= NormalizationFlags.Statistics;
        LaunchForward<TKind>(launch, x, weight, bias, y, mean, rstd, epsScale, rows, dim, eps, flags,
            hostLoop: options is null);
    }

    /// <summary>
    /// Checks every argument, then computes dx and, where their tensors are given, dWeight and dBias. Without saved
    /// statistics they are first recomputed into temporaries, which are freed after the stream has drained.
    /// </summary>
    public static void Backward<TKind>(Tensor x, Tensor? weight, Tensor dy, float eps, Tensor dx, Tensor? dWeight,
        Tensor? dBias, Tensor? mean, Tensor? rstd, NormalizationOptions? options, Tensor? epsScale = null)
        where TKind : struct, INormalizationKind
    {
        var (rows, dim, device) = Input(x, weight, eps, (dy, nameof(dy)), (dx, nameof(dx)));
        if (dWeight is not null && weight is null)
            throw new ArgumentException(
                "Argument 'dWeight' is given but 'weight' is null; expected no weight gradient without a weight.",
                nameof(dWeight));
        CheckParameter(dWeight, nameof(dWeight), dim, device);
        CheckParameter(dBias, nameof(dBias), dim, device);
        CheckStatistics<TKind>(mean, rstd, rows, device);
        CheckParameter(epsScale, nameof(epsScale), rows, device);
        // dx is also the scratch of the gradient partial sums, written while x and dy are still read.
        Distinct(dx, nameof(dx), (x, nameof(x)), (dy, nameof(dy)), (weight, nameof(weight)), (mean, nameof(mean)),
            (rstd, nameof(rstd)), (dWeight, nameof(dWeight)), (dBias, nameof(dBias)), (epsScale, nameof(epsScale)));
        Distinct(dWeight, nameof(dWeight), (x, nameof(x)), (dy, nameof(dy)), (weight, nameof(weight)),
            (mean, nameof(mean)), (rstd, nameof(rstd)), (dBias, nameof(dBias)));
        Distinct(dBias, nameof(dBias), (x, nameof(x)), (dy, nameof(dy)), (weight, nameof(weight)),
            (mean, nameof(mean)), (rstd, nameof(rstd)));
        var launch = Resolve(options, device, dim);

        if (rows == 0)
        {
            // A sum over no rows: the parameter gradients are zero.
            dWeight?.View.MemSetToZero(device.Stream);
            dBias?.View.MemSetToZero(device.Stream);
            return;
        }

        Tensor? savedMean = null, savedRstd = null;
        if (rstd is null)
        {
            savedRstd = Tensor.Uninitialized(device, rows);
            savedMean = default(TKind).Centered ? Tensor.Uninitialized(device, rows) : null;
            LaunchForward<TKind>(launch, x, weight: null, bias: null, y: null, savedMean, savedRstd, epsScale, rows,
                dim, eps, NormalizationFlags.Statistics);
            mean = savedMean;
            rstd = savedRstd;
        }
        try
        {
            if (dWeight is not null)
                LaunchParameterGradient<TKind>(launch, x, dy, mean, rstd, dx, dWeight, rows, dim, bias: false);
            if (dBias is not null)
                LaunchParameterGradient<TKind>(launch, x, dy, mean, rstd, dx, dBias, rows, dim, bias: true);
            LaunchInputGradient<TKind>(launch, x, weight, dy, dx, mean, rstd, rows, dim);
        }
        finally
        {
            if (savedRstd is not null)
            {
                // Kernels that read the temporaries may still be queued: free them only once the stream has drained.
                device.Stream.Synchronize();
                savedRstd.Dispose();
                savedMean?.Dispose();
            }
        }
    }

    private static unsafe void LaunchForward<TKind>(NormalizationOptions launch, Tensor x, Tensor? weight, Tensor? bias,
        Tensor? y, Tensor? mean, Tensor? rstd, Tensor? epsScale, int rows, int dim, float eps, int flags,
        bool hostLoop = false)
        where TKind : struct, INormalizationKind
    {
        var device = x.Device;
        // Kernels have no nullable views: an absent tensor is replaced by x, which the flags keep untouched.
        var placeholder = x.View;
        var weightView = weight?.ReadView ?? placeholder;
        var biasView = bias?.View ?? placeholder;
        var yView = y?.View ?? placeholder;
        var meanView = mean?.View ?? placeholder;
        var rstdView = rstd?.View ?? placeholder;
        var epsScaleView = epsScale?.View ?? placeholder;
        if (epsScale is not null)
            flags |= NormalizationFlags.RowEps;
        if (launch.Form == NormalizationForm.GroupPerRow)
        {
            var kernel = device.Kernel(NormalizationKernels.ForwardGroup<TKind>, accelerator =>
                accelerator.LoadKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>,
                    ArrayView<float>, ArrayView<float>, ArrayView<float>, int, float, int>(
                    NormalizationKernels.ForwardGroup<TKind>));
            kernel(device.Stream, GroupLaunch(rows, launch), x.View, weightView, biasView, yView, meanView,
                rstdView, epsScaleView, dim, eps, flags);
        }
        else if (launch.Form == NormalizationForm.SubGroupPerRow)
        {
            var kernel = device.Kernel(NormalizationKernels.ForwardSubGroup<TKind>, accelerator =>
                accelerator.LoadKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>,
                    ArrayView<float>, ArrayView<float>, ArrayView<float>, int, float, int>(
                    NormalizationKernels.ForwardSubGroup<TKind>));
            kernel(device.Stream, GroupLaunch(rows, launch), x.View, weightView, biasView, yView,
                meanView, rstdView, epsScaleView, dim, eps, flags);
        }
        else if (hostLoop && device.RunsOnHost)
        {
            // Host execution runs the library's thread-per-row form as host code (same arithmetic, no array views);
            // a configuration passed explicitly (tests, retnet verify) launches the kernel.
            HostSimd.Enter(device, "the host normalisation", requireHostExecution: true);
            HostNormalization.ForwardRows<TKind>(Address(x), weight is null ? null : Address(weight),
                bias is null ? null : Address(bias), HostSimd.Pointer(y), HostSimd.Pointer(mean), HostSimd.Pointer(rstd),
                epsScale is null ? null : Address(epsScale), rows, dim, eps, flags);
        }
        else
        {
            var kernel = device.Kernel(NormalizationKernels.ForwardRow<TKind>, accelerator =>
                accelerator.LoadAutoGroupedKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>,
                    ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, float, int, Spread>(
                    NormalizationKernels.ForwardRow<TKind>));
            var spread = Launch.Spread(device, rows);
            kernel(device.Stream, spread.Threads, x.View, weightView, biasView, yView, meanView, rstdView, epsScaleView,
                dim, eps, flags, spread);
        }
    }

    /// <summary>The host address of an input on the CPU accelerator, read-only tensors (mapped weights) included; the
    /// outputs take <see cref="HostSimd.Pointer(Tensor?)"/>, a writable view.</summary>
    private static unsafe float* Address(Tensor tensor) => (float*)tensor.ReadView.LoadEffectiveAddressAsPtr();

    private static void LaunchInputGradient<TKind>(NormalizationOptions launch, Tensor x, Tensor? weight, Tensor dy,
        Tensor dx, Tensor? mean, Tensor rstd, int rows, int dim)
        where TKind : struct, INormalizationKind
    {
        var device = x.Device;
        var weightView = weight?.ReadView ?? x.View;
        var meanView = mean?.View ?? x.View;
        var flags = weight is null ? 0 : NormalizationFlags.Weight;
        if (launch.Form == NormalizationForm.GroupPerRow)
        {
            var kernel = device.Kernel(NormalizationKernels.BackwardGroup<TKind>, accelerator =>
                accelerator.LoadKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>,
                    ArrayView<float>, ArrayView<float>, int, int>(NormalizationKernels.BackwardGroup<TKind>));
            kernel(device.Stream, GroupLaunch(rows, launch), x.View, weightView, dy.View, dx.View, meanView,
                rstd.View, dim, flags);
        }
        else if (launch.Form == NormalizationForm.SubGroupPerRow)
        {
            var kernel = device.Kernel(NormalizationKernels.BackwardSubGroup<TKind>, accelerator =>
                accelerator.LoadKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>,
                    ArrayView<float>, ArrayView<float>, int, int>(NormalizationKernels.BackwardSubGroup<TKind>));
            kernel(device.Stream, GroupLaunch(rows, launch), x.View, weightView, dy.View, dx.View,
                meanView, rstd.View, dim, flags);
        }
        else
        {
            var kernel = device.Kernel(NormalizationKernels.BackwardRow<TKind>, accelerator =>
                accelerator.LoadAutoGroupedKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>,
                    ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int, Spread>(
                    NormalizationKernels.BackwardRow<TKind>));
            var spread = Launch.Spread(device, rows);
            kernel(device.Stream, spread.Threads, x.View, weightView, dy.View, dx.View, meanView, rstd.View, dim, flags,
                spread);
        }
    }

    /// <summary>
    /// dWeight = Σ_rows dy ⊙ x̂ or dBias = Σ_rows dy, in two deterministic passes: per-chunk column sums, then the
    /// sum of the chunks in order. The partial sums (C·D ≤ R·D floats) live in dx, which is written only afterwards,
    /// so the pass needs no temporary; a single chunk is written to the gradient directly.
    /// </summary>
    private static void LaunchParameterGradient<TKind>(NormalizationOptions launch, Tensor x, Tensor dy, Tensor? mean,
        Tensor rstd, Tensor scratch, Tensor gradient, int rows, int dim, bool bias)
        where TKind : struct, INormalizationKind
    {
        var device = x.Device;
        var chunks = Launch.CeilDiv(rows, launch.ChunkRows);
        var partial = chunks == 1 ? gradient.View : scratch.View.SubView(0, chunks * dim);
        if (bias)
        {
            var kernel = device.Kernel(NormalizationKernels.BiasGradientPartial, accelerator =>
                accelerator.LoadAutoGroupedKernel<Index1D, ArrayView<float>, ArrayView<float>, int, int, int, Spread>(
                    NormalizationKernels.BiasGradientPartial));
            var spread = Launch.Spread(device, chunks * dim);
            kernel(device.Stream, spread.Threads, dy.View, partial, rows, dim, launch.ChunkRows, spread);
        }
        else
        {
            var kernel = device.Kernel(NormalizationKernels.WeightGradientPartial<TKind>, accelerator =>
                accelerator.LoadAutoGroupedKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>,
                    ArrayView<float>, ArrayView<float>, int, int, int, Spread>(
                    NormalizationKernels.WeightGradientPartial<TKind>));
            var spread = Launch.Spread(device, chunks * dim);
            kernel(device.Stream, spread.Threads, x.View, dy.View, mean?.View ?? x.View, rstd.View, partial, rows, dim,
                launch.ChunkRows, spread);
        }
        if (chunks == 1)
            return;
        var sum = device.Kernel(NormalizationKernels.ColumnSum, accelerator =>
            accelerator.LoadAutoGroupedKernel<Index1D, ArrayView<float>, ArrayView<float>, int, int, Spread>(
                NormalizationKernels.ColumnSum));
        var columns = Launch.Spread(device, dim);
        sum(device.Stream, columns.Threads, partial, gradient.View, chunks, dim, columns);
    }

    /// <summary>The launch of a group-per-row kernel with <paramref name="options"/>' form: one group per row, the
    /// dynamic shared memory of the form's group sum.</summary>
    internal static KernelConfig GroupLaunch(int rows, NormalizationOptions options) => new(rows, options.GroupSize,
        SharedMemoryConfig.RequestDynamic<float>(options.Form == NormalizationForm.SubGroupPerRow
            ? SubGroupSum.SharedFloats(options.GroupSize)
            : TreeGroupSum.SharedFloats(options.GroupSize)));

    private static NormalizationOptions Resolve(NormalizationOptions? options, RetNetDevice device, int dim)
    {
        var launch = options ?? NormalizationOptions.For(device, dim);
        launch.Validate(device);
        return launch;
    }

    /// <summary>
    /// The checks every call starts with: x and the tensors shaped like it given, eps, the weight [D], and each of
    /// <paramref name="likeX"/> on x's device with x's shape. Returns x's rows R, its last dimension D and its device.
    /// </summary>
    private static (int Rows, int Dim, RetNetDevice Device) Input(Tensor x, Tensor? weight, float eps,
        params ReadOnlySpan<(Tensor Tensor, string Name)> likeX)
    {
        ArgumentNullException.ThrowIfNull(x);
        foreach (var (tensor, name) in likeX)
            ArgumentNullException.ThrowIfNull(tensor, name);
        CheckEps(eps);
        var (rows, dim) = RowsOf(x);
        CheckParameter(weight, nameof(weight), dim, x.Device);
        foreach (var (tensor, name) in likeX)
        {
            ShapeCheck.SameDevice(x.Device, name, tensor);
            ShapeCheck.Same(tensor, name, x, nameof(x));
        }
        return (rows, dim, x.Device);
    }

    private static void CheckEps(float eps)
    {
        if (!float.IsFinite(eps) || eps < 0f)
            throw new ArgumentOutOfRangeException(nameof(eps), eps, "Expected a finite eps ≥ 0.");
    }

    /// <summary>R and D of x viewed as rows [R, D]; rejects scalars and empty rows, which have no statistics.</summary>
    private static (int Rows, int Dim) RowsOf(Tensor x)
    {
        if (x.Rank < 1)
            throw new ArgumentException(
                $"Argument 'x' has shape {ShapeCheck.Format(x.Shape)}; expected rank ≥ 1 (rows along the last dimension).",
                nameof(x));
        var dim = x.Dim(-1);
        if (dim == 0)
            throw new ArgumentException(
                $"Argument 'x' has shape {ShapeCheck.Format(x.Shape)}; expected a last dimension ≥ 1 (an empty row " +
                "has no mean).", nameof(x));
        return (x.Length / dim, dim);
    }

    private static void CheckParameter(Tensor? parameter, string name, int dim, RetNetDevice device)
    {
        if (parameter is null)
            return;
        ShapeCheck.SameDevice(device, name, parameter);
        ShapeCheck.Expect(parameter, name, dim);
    }

    private static void CheckStatistics<TKind>(Tensor? mean, Tensor? rstd, int rows, RetNetDevice device)
        where TKind : struct, INormalizationKind
    {
        if (default(TKind).Centered && (mean is null) != (rstd is null))
            throw new ArgumentException(
                $"Argument '{(mean is null ? nameof(mean) : nameof(rstd))}' is null but its partner is given; " +
                "expected mean and rstd together (both or neither).", mean is null ? nameof(mean) : nameof(rstd));
        CheckParameter(mean, nameof(mean), rows, device);
        CheckParameter(rstd, nameof(rstd), rows, device);
    }

    private static void Distinct(Tensor? output, string outputName, params ReadOnlySpan<(Tensor? Tensor, string Name)> others)
    {
        if (output is null)
            return;
        foreach (var (other, name) in others)
        {
            if (other is not null)
                ShapeCheck.Distinct(output, outputName, other, name);
        }
    }
}
