using RetNet.Ilgpu.Devices;
using RetNet.Ilgpu.Kernels;
using RetNet.Ilgpu.Kernels.Gemm;
using RetNet.Ilgpu.Tensors;
using RetNet.Ilgpu.Verification.Cases;

namespace RetNet.Ilgpu.Verification;

/// <summary>GEMM in every variant: the simple kernel, each tile of the tiled one, the small-row kernel with each
/// group sum, and the host SIMD paths.</summary>
internal static class GemmChecks
{
    private const double Tolerance = 1e-4;

    /// <summary>A problem: operand shapes, transpositions and the alpha, beta of C = alpha·op(A)·op(B) + beta·C.</summary>
    private sealed record Problem(int[] A, int[] B, bool TransposeA, bool TransposeB, float Alpha, float Beta,
        TensorDType AType = TensorDType.Float32, TensorDType BType = TensorDType.Float32)
    {
        public GemmShape Shape => GemmShape.Of(A, B, TransposeA, TransposeB);

        public override string ToString()
        {
            var s = Shape;
            return $"{(s.Batch > 1 ? $"batch={s.Batch} " : "")}M={s.M} N={s.N} K={s.K}" +
                   $"{(TransposeA ? " Aᵀ" : "")}{(TransposeB ? " Bᵀ" : "")}{(s.BroadcastB ? " B broadcast" : "")}" +
                   $"{(Beta != 0 ? $" β={Beta}" : "")}" +
                   $"{(AType != TensorDType.Float32 ? $" A {TensorDTypes.Name(AType)}" : "")}" +
                   $"{(BType != TensorDType.Float32 ? $" B {TensorDTypes.Name(BType)}" : "")}";
        }
    }

    private static readonly Problem[] Problems =
    [
        new([1, 1], [1, 1], false, false, 1f, 0f),
        new([9, 17], [9, 33], true, false, 0.5f, 1f),
        new([2, 70, 20], [67, 20], false, true, 1f, 0f),
        // A Linear layer over 16-bit weights (W [out, in], y = x·Wᵀ), and both operands 16-bit.
        new([2, 9, 37], [21, 37], false, true, 1f, 0f, BType: TensorDType.BFloat16),
        new([9, 17], [17, 33], false, false, 0.5f, 1f, TensorDType.Float16, TensorDType.BFloat16),
        // Decoding: one row, and a batch of four 2-row entries against a broadcast weight (folded into 8 rows), K not
        // a multiple of any group; bf16 and fp16 weights, 16-bit activations, and β.
        new([1, 300], [19, 300], false, true, 1f, 0f, BType: TensorDType.BFloat16),
        new([4, 2, 37], [23, 37], false, true, 1f, 0f, TensorDType.Float16, TensorDType.Float16),
        new([3, 37], [7, 37], false, true, -0.5f, 0.5f),
    ];

    public static void Run(VerificationContext context)
    {
        var device = context.Device;
        if (!device.IsCpuSimulator)
            context.Skip("Gemm host SIMD", "-", "host SIMD runs on ILGPU's CPU accelerator only");
        var smallRowLaunches = SmallRowLaunches(context);
        foreach (var problem in Problems)
        {
            var shape = problem.ToString();
            Check(context, "Gemm simple", problem, (a, b, c) =>
                Gemm.Run(a, b, c, problem.TransposeA, problem.TransposeB, problem.Alpha, problem.Beta,
                    GemmVariant.Simple));
            foreach (var tile in GemmTiles.All)
            {
                var name = $"Gemm tiled {tile.BM}x{tile.BN}x{tile.BK}";
                var threads = GemmTiles.Threads(tile);
                if (threads > device.MaxGroupSize)
                {
                    context.Skip(name, shape, $"{threads} threads per group; the device allows {device.MaxGroupSize}",
                        $"GemmKernels.Tiled<{tile.GetType().Name}>");
                    continue;
                }
                Check(context, name, problem, (a, b, c) => RunTiled(tile, a, b, c, problem));
            }
            if (Gemm.SmallRows(problem.Shape) is not null)
            {
                foreach (var launch in smallRowLaunches)
                {
                    var name = $"Gemm small rows {(launch.Reduction == GroupReduction.SubGroups ? "sub-groups" : "tree")}" +
                               $", group {launch.GroupSize}";
                    Check(context, name, problem, (a, b, c) =>
                        Gemm.RunSmallRows(a, b, c, launch, problem.TransposeA, problem.TransposeB, problem.Alpha,
                            problem.Beta));
                }
            }
            foreach (var (path, threads) in new[]
                     {
                         (HostGemmPath.Auto, Environment.ProcessorCount), (HostGemmPath.Vector512, 2),
                         (HostGemmPath.Vector256, 2), (HostGemmPath.Scalar, 1),
                     })
            {
                if (!device.IsCpuSimulator)
                    break;
                Check(context, $"Gemm host SIMD {path} ×{threads}", problem, (a, b, c) =>
                    Gemm.RunHostSimd(a, b, c, path, threads, problem.TransposeA, problem.TransposeB, problem.Alpha,
                        problem.Beta));
            }
        }
    }

    // The tree at one thread and at the largest group the device allows up to 256, the sub-group sum at its sizes.
    private static SmallRowsLaunch[] SmallRowLaunches(VerificationContext context)
    {
        var largest = Launch.PowerOfTwoGroup(context.Device, DevicePolicy.PreferredReductionGroup);
        SmallRowsLaunch[] launches =
        [
            new(GroupReduction.SharedMemoryTree, 1),
            new(GroupReduction.SharedMemoryTree, largest),
            .. RowChecks.SubGroupSizes(context, "Gemm small rows", ["GemmKernels.SmallRows<SubGroupSum>"])
                .Select(size => new SmallRowsLaunch(GroupReduction.SubGroups, size)),
        ];
        return launches.Distinct().ToArray();
    }

    private static void Check(VerificationContext context, string name, Problem problem, Action<Tensor, Tensor, Tensor> run)
    {
        var shape = problem.Shape;
        context.Check(name, problem.ToString(), Tolerance, () =>
        {
            // 16-bit operands are held to the product of the values they store (rounded here the way the upload rounds).
            var a = CaseInputs.Uniform(1, shape.ElementsA).Select(v => TensorDTypes.Round(v, problem.AType)).ToArray();
            var b = CaseInputs.Uniform(2, shape.ElementsB).Select(v => TensorDTypes.Round(v, problem.BType)).ToArray();
            var c = CaseInputs.Uniform(3, shape.ElementsC);
            int[] cShape = problem.A.Length == 3 || problem.B.Length == 3 ? [shape.Batch, shape.M, shape.N] : [shape.M, shape.N];
            using var ta = Tensor.FromHost(context.Device, a, problem.AType, problem.A);
            using var tb = Tensor.FromHost(context.Device, b, problem.BType, problem.B);
            using var tc = Tensor.FromHost(context.Device, c, cShape);
            run(ta, tb, tc);
            var expected = GemmReference.Forward(shape, a, b, problem.Alpha, problem.Beta, c);
            return [new CheckedOutput("c", tc.ToHost(), expected)];
        });
    }

    private static void RunTiled(IGemmTile tile, Tensor a, Tensor b, Tensor c, Problem p)
    {
        switch (tile)
        {
            case GemmTile128x128:
                Gemm.RunTiled<GemmTile128x128>(a, b, c, p.TransposeA, p.TransposeB, p.Alpha, p.Beta);
                break;
            case GemmTile128x64:
                Gemm.RunTiled<GemmTile128x64>(a, b, c, p.TransposeA, p.TransposeB, p.Alpha, p.Beta);
                break;
            case GemmTile64x64:
                Gemm.RunTiled<GemmTile64x64>(a, b, c, p.TransposeA, p.TransposeB, p.Alpha, p.Beta);
                break;
            case GemmTile32x32:
                Gemm.RunTiled<GemmTile32x32>(a, b, c, p.TransposeA, p.TransposeB, p.Alpha, p.Beta);
                break;
            default:
                throw new InvalidOperationException($"No check for GEMM tile {tile.GetType().Name}.");
        }
    }
}
