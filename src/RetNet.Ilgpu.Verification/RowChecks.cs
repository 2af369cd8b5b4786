using RetNet.Ilgpu.Devices;
using RetNet.Ilgpu.Kernels;
using RetNet.Ilgpu.Kernels.CrossEntropy;
using RetNet.Ilgpu.Kernels.Normalization;
using RetNet.Ilgpu.Kernels.Reductions;
using RetNet.Ilgpu.Tensors;
using RetNet.Ilgpu.Verification.Cases;
using CrossEntropyOp = RetNet.Ilgpu.Kernels.CrossEntropy.CrossEntropy;
using ReductionsOp = RetNet.Ilgpu.Kernels.Reductions.Reductions;

namespace RetNet.Ilgpu.Verification;

/// <summary>
/// Row-wise operators with a choice of form and group size: RMSNorm and LayerNorm (thread per row, group per row),
/// the two-pass reductions, cross-entropy (thread per row, group per row).
/// </summary>
internal static class RowChecks
{
    private const double Tolerance = 1e-4;
    private const float Eps = 1e-5f;

    // Rows × dim: one element; an odd dim below every group; a dim above the largest group (several per thread).
    private static readonly (int Rows, int Dim)[] RowShapes = [(1, 1), (5, 37), (3, 300)];

    public static void Normalization(VerificationContext context)
    {
        var device = context.Device;
        var largest = Launch.PowerOfTwoGroup(device, DevicePolicy.PreferredReductionGroup);
        NormalizationOptions[] configurations =
        [
            new(NormalizationForm.ThreadPerRow, 1, NormalizationOptions.DefaultChunkRows),
            new(NormalizationForm.GroupPerRow, 1, NormalizationOptions.DefaultChunkRows),
            // Two rows per chunk: chunks that do not divide the rows in the gradient's first pass.
            new(NormalizationForm.GroupPerRow, Math.Min(4, largest), 2),
            new(NormalizationForm.GroupPerRow, largest, NormalizationOptions.DefaultChunkRows),
            .. SubGroupSizes(context, "Normalization", ["NormalizationKernels.ForwardSubGroup<RmsNormalization>",
                    "NormalizationKernels.ForwardSubGroup<LayerNormalization>",
                    "NormalizationKernels.BackwardSubGroup<RmsNormalization>",
                    "NormalizationKernels.BackwardSubGroup<LayerNormalization>"])
                .Select(size => new NormalizationOptions(NormalizationForm.SubGroupPerRow, size, 2)),
        ];
        foreach (var (rows, dim) in RowShapes)
        {
            var shape = $"{rows}x{dim}";
            var x = CaseInputs.Uniform(51, rows * dim, 2f);
            var w = CaseInputs.Uniform(52, dim).Select(v => 1 + 0.5f * v).ToArray();
            var bias = CaseInputs.Uniform(53, dim);
            var dy = CaseInputs.Uniform(54, rows * dim);
            var (xd, wd, dyd) = (CaseInputs.ToDouble(x), CaseInputs.ToDouble(w), CaseInputs.ToDouble(dy));
            var rms = NormalizationReference.RmsNormForward(xd, wd, dim, Eps);
            var rmsBackward = NormalizationReference.RmsNormBackward(xd, wd, dyd, dim, Eps);
            var rmsFloor = NormalizationCases.GradientFloor(xd, wd, dyd, dim, rms.Rstd, null);
            var layer = NormalizationReference.LayerNormForward(xd, wd, CaseInputs.ToDouble(bias), dim, Eps);
            var layerBackward = NormalizationReference.LayerNormBackward(xd, wd, dyd, dim, Eps);
            var layerFloor = NormalizationCases.GradientFloor(xd, wd, dyd, dim, layer.Rstd, layer.Mean);
            RowTensors Upload() => new(Tensor.FromHost(device, x, rows, dim), Tensor.FromHost(device, w, dim),
                Tensor.FromHost(device, bias, dim), Tensor.FromHost(device, dy, rows, dim));
            foreach (var options in configurations.Distinct())
            {
                var name = options.Form switch
                {
                    NormalizationForm.ThreadPerRow => "thread per row",
                    NormalizationForm.SubGroupPerRow => $"sub-groups, group {options.GroupSize}, chunk {options.ChunkRows}",
                    _ => $"group {options.GroupSize}, chunk {options.ChunkRows}",
                };
                context.Check($"RmsNorm.Forward {name}", shape, Tolerance, () =>
                {
                    using var t = Upload();
                    RmsNorm.Forward(t.X, t.Weight, Eps, t.Y, t.Rstd, options);
                    return [new("y", t.Y.ToHost(), rms.Y), new("rstd", t.Rstd.ToHost(), rms.Rstd)];
                });
                context.Check($"RmsNorm.Backward {name}", shape, Tolerance, () =>
                {
                    using var t = Upload();
                    RmsNorm.Backward(t.X, t.Weight, t.Dy, Eps, t.Dx, t.DWeight, rstd: null, options);
                    return [new("dx", t.Dx.ToHost(), rmsBackward.Dx, rmsFloor),
                        new("dWeight", t.DWeight.ToHost(), rmsBackward.DWeight)];
                });
                context.Check($"LayerNorm.Forward {name}", shape, Tolerance, () =>
                {
                    using var t = Upload();
                    LayerNorm.Forward(t.X, t.Weight, t.Bias, Eps, t.Y, t.Mean, t.Rstd, options);
                    return [new("y", t.Y.ToHost(), layer.Y), new("mean", t.Mean.ToHost(), layer.Mean),
                        new("rstd", t.Rstd.ToHost(), layer.Rstd)];
                });
                context.Check($"LayerNorm.Backward {name}", shape, Tolerance, () =>
                {
                    using var t = Upload();
                    LayerNorm.Backward(t.X, t.Weight, t.Dy, Eps, t.Dx, t.DWeight, t.DBias, mean: null, rstd: null,
                        options);
                    return [new("dx", t.Dx.ToHost(), layerBackward.Dx, layerFloor),
                        new("dWeight", t.DWeight.ToHost(), layerBackward.DWeight),
                        new("dBias", t.DBias.ToHost(), layerBackward.DBias!)];
                });
            }
        }
    }

    /// <summary>
    /// One row shape on the device: the inputs x [rows, dim], weight and bias [dim], dy [rows, dim], and zeroed
    /// outputs of either norm in either direction (y, mean and rstd per row, dx, dWeight, dBias).
    /// </summary>
    private sealed class RowTensors(Tensor x, Tensor weight, Tensor bias, Tensor dy) : IDisposable
    {
        public Tensor X { get; } = x;
        public Tensor Weight { get; } = weight;
        public Tensor Bias { get; } = bias;
        public Tensor Dy { get; } = dy;
        public Tensor Y { get; } = Tensor.Zeros(x.Device, x.ShapeArray);
        public Tensor Mean { get; } = Tensor.Zeros(x.Device, x.Dim(0));
        public Tensor Rstd { get; } = Tensor.Zeros(x.Device, x.Dim(0));
        public Tensor Dx { get; } = Tensor.Zeros(x.Device, x.ShapeArray);
        public Tensor DWeight { get; } = Tensor.Zeros(x.Device, weight.ShapeArray);
        public Tensor DBias { get; } = Tensor.Zeros(x.Device, weight.ShapeArray);

        public void Dispose()
        {
            foreach (var tensor in new[] { X, Weight, Bias, Dy, Y, Mean, Rstd, Dx, DWeight, DBias })
                tensor.Dispose();
        }
    }

    public static void Reductions(VerificationContext context)
    {
        var device = context.Device;
        ReductionLaunch[] launches = device.RunsOnHost
            ? [ReductionLaunch.For(device)]
            : [ReductionLaunch.For(device), new(1, 3), new(Math.Min(4, device.MaxGroupSize), 5),
               new(Launch.PowerOfTwoGroup(device, 256), 1024),
               .. SubGroupSizes(context, "Reductions", ["ReductionKernels.ReduceSubGroup<SumReduction>",
                       "ReductionKernels.ReduceSubGroup<SquareSumReduction>",
                       "ReductionKernels.ReduceSubGroup<AbsMaxReduction>"])
                   .Select(size => new ReductionLaunch(size, 5, GroupReduction.SubGroups))];
        foreach (var n in new[] { 1, 777, 4099 })
        {
            var shape = $"n={n}";
            if (device.RunsOnHost)
                context.Skip("Reductions group kernels", shape,
                    "host execution reduces on the host (RETNET_CPU_EXECUTION=simulator runs the kernels)",
                    "ReductionKernels.Reduce<SumReduction>", "ReductionKernels.Reduce<SquareSumReduction>",
                    "ReductionKernels.Reduce<AbsMaxReduction>", "ReductionKernels.ReduceSubGroup<SumReduction>",
                    "ReductionKernels.ReduceSubGroup<SquareSumReduction>",
                    "ReductionKernels.ReduceSubGroup<AbsMaxReduction>");
            var x = CaseInputs.Uniform(61, n, 2f);
            x[n / 2] = -9f;
            foreach (var launch in launches.Distinct())
            {
                var name = device.RunsOnHost
                    ? "Reductions host blocks"
                    : launch.Reduction == GroupReduction.SubGroups
                        ? $"Reductions sub-groups, group {launch.GroupSize} × ≤{launch.MaxGroups}"
                        : $"Reductions group {launch.GroupSize} × ≤{launch.MaxGroups}";
                context.Check(name, shape, Tolerance, () =>
                {
                    using var tx = Tensor.FromHost(device, x, n);
                    using var result = Tensor.Zeros(device, 1);
                    float Reduce<TFirst, TSecond>(float scale)
                        where TFirst : struct, IReduction where TSecond : struct, IReduction
                    {
                        ReductionsOp.Reduce<TFirst, TSecond>([tx], "x", result, scale, launch);
                        return result.ToHost()[0];
                    }
                    // A sum's rounding scales with √n · max |x| (the tests' floor), not with the sum itself.
                    return
                    [
                        new("sum", [Reduce<SumReduction, SumReduction>(1f)], [ReductionReference.Sum(x)],
                            Math.Sqrt(n) * 9),
                        new("half sum of squares", [Reduce<SquareSumReduction, SumReduction>(0.5f)],
                            [0.5 * ReductionReference.SumOfSquares(x)]),
                        new("max |x|", [Reduce<AbsMaxReduction, AbsMaxReduction>(1f)], [ReductionReference.MaxAbs(x)]),
                    ];
                });
            }
        }
    }

    public static void CrossEntropy(VerificationContext context)
    {
        var device = context.Device;
        const int ignore = CrossEntropyOp.DefaultIgnoreIndex;
        CrossEntropyLaunch[] launches =
        [
            new(CrossEntropyForm.RowPerThread, 1), new(CrossEntropyForm.RowPerGroup, 1),
            new(CrossEntropyForm.RowPerGroup, Math.Min(4, device.MaxGroupSize)),
            new(CrossEntropyForm.RowPerGroup, Launch.PowerOfTwoGroup(device, 256)),
            new(CrossEntropyForm.RowPerGroup, Launch.PowerOfTwoGroup(device, 1024)),
            .. SubGroupSizes(context, "CrossEntropy", ["CrossEntropyKernels.RowPerSubGroups"])
                .Select(size => new CrossEntropyLaunch(CrossEntropyForm.RowPerSubGroups, size)),
        ];
        foreach (var (rows, classes) in new[] { (1, 1), (5, 37), (7, 300) })
        {
            var logits = CaseInputs.Uniform(71, rows * classes, 4f);
            var random = new Random(72);
            // The fourth row is ignored where there is one.
            var targets = Enumerable.Range(0, rows).Select(n => n == 3 ? ignore : random.Next(classes)).ToArray();
            var count = Math.Max(1, targets.Count(t => t != ignore));
            var (loss, gradient) = CrossEntropyReference.ForwardBackward(CaseInputs.ToDouble(logits), targets,
                classes, ignore);
            foreach (var launch in launches.Distinct())
            {
                var name = launch.Form switch
                {
                    CrossEntropyForm.RowPerThread => "CrossEntropy thread per row",
                    CrossEntropyForm.RowPerSubGroups => $"CrossEntropy sub-groups, group {launch.GroupSize}",
                    _ => $"CrossEntropy group {launch.GroupSize}",
                };
                context.Check(name, $"N={rows} V={classes}", Tolerance, () =>
                {
                    using var tLogits = Tensor.FromHost(device, logits, rows, classes);
                    using var tTargets = IndexTensor.FromHost(device, targets, rows);
                    using var dLogits = Tensor.Zeros(device, rows, classes);
                    using var tLoss = Tensor.Zeros(device, 1);
                    CrossEntropyOp.Run(tLogits, tTargets, dLogits, tLoss, ignore, 1f, launch);
                    // The gradient times the counted rows: elements of softmax − onehot, held to their own scale.
                    return
                    [
                        new("loss", tLoss.ToHost(), [loss]),
                        new("dLogits · count", dLogits.ToHost().Select(g => g * count).ToArray(),
                            gradient.Select(g => g * count).ToArray()),
                    ];
                });
            }
        }
    }

    /// <summary>
    /// The group sizes the sub-group variants are checked at: the smallest the device runs them with and the largest
    /// the policy picks (256 or the device limit). None, with a skip row naming <paramref name="kernels"/>, where the
    /// device has no sub-group operations.
    /// </summary>
    internal static int[] SubGroupSizes(VerificationContext context, string check, string[] kernels)
    {
        var policy = context.Device.Policy;
        if (!policy.SupportsSubGroups)
        {
            context.Skip($"{check} sub-groups", "-", "the device has no sub-group operations (cl_khr_subgroups)",
                kernels);
            return [];
        }
        var largest = Launch.PowerOfTwoGroup(context.Device, DevicePolicy.PreferredReductionGroup);
        return largest < policy.SubGroupGranularity ? [] : [policy.SubGroupGranularity, largest];
    }
}
