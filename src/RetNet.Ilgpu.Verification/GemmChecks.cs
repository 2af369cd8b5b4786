using RetNet.Ilgpu.Devices;
using RetNet.Ilgpu.Kernels;
using RetNet.Ilgpu.Kernels.Gemm;
using RetNet.Ilgpu.Tensors;
using RetNet.Ilgpu.Verification.Cases;

namespace RetNet.Ilgpu.Verification;

/// <summary>GEMM in every variant: the simple kernel, each tile of the tiled one (also on a product of several tiles
/// each way), the small-row kernel with each group sum, and the host SIMD paths.</summary>
internal static class GemmChecks
{
    private const double Tolerance = 1e-4;

    /// <summary>A problem: the case, its transpositions and the types A and B are stored in.</summary>
    private sealed record Problem(GemmCase Case, bool TransposeA = false, bool TransposeB = false,
        TensorDType AType = TensorDType.Float32, TensorDType BType = TensorDType.Float32)
    {
        public GemmShape Shape => Case.Shape(TransposeA, TransposeB);

        public override string ToString()
        {
            var s = Shape;
            return $"{(s.Batch > 1 ? $"batch={s.Batch} " : "")}M={s.M} N={s.N} K={s.K}" +
                   $"{(TransposeA ? " Aᵀ" : "")}{(TransposeB ? " Bᵀ" : "")}{(s.BroadcastB ? " B broadcast" : "")}" +
                   $"{(Case.Beta != 0 ? $" β={Case.Beta}" : "")}" +
                   $"{(AType != TensorDType.Float32 ? $" A {TensorDTypes.Name(AType)}" : "")}" +
                   $"{(BType != TensorDType.Float32 ? $" B {TensorDTypes.Name(BType)}" : "")}";
        }
    }

    private static readonly Problem[] Problems =
    [
        new(new GemmCase(1, 1, 1, 1, false, false)),
        new(new GemmCase(1, 17, 33, 9, false, false, 0.5f, 1f), TransposeA: true),
        new(new GemmCase(2, 70, 67, 20, BatchedA: true, BatchedB: false), TransposeB: true),
        // A Linear layer over 16-bit weights (W [out, in], y = x·Wᵀ), and both operands 16-bit.
        new(new GemmCase(2, 9, 21, 37, BatchedA: true, BatchedB: false), TransposeB: true,
            BType: TensorDType.BFloat16),
        new(new GemmCase(1, 9, 33, 17, false, false, 0.5f, 1f), AType: TensorDType.Float16,
            BType: TensorDType.BFloat16),
        // Decoding: one row, and a batch of four 2-row entries against a broadcast weight (folded into 8 rows), K not
        // a multiple of any group; bf16 and fp16 weights, 16-bit activations, and β.
        new(new GemmCase(1, 1, 19, 300, false, false), TransposeB: true, BType: TensorDType.BFloat16),
        new(new GemmCase(4, 2, 23, 37, BatchedA: true, BatchedB: false), TransposeB: true, AType: TensorDType.Float16,
            BType: TensorDType.Float16),
        new(new GemmCase(1, 3, 7, 37, false, false, -0.5f, 0.5f), TransposeB: true),
    ];

    /// <summary>
    /// A Linear layer's product (B stored [N, K], β ≠ 0) over more than 2×2 of <paramref name="tile"/>'s output tiles,
    /// neither M nor N a multiple of it, and five K-steps, the last one partial: full tiles next to each other in both
    /// directions, and partial ones on every edge.
    /// </summary>
    private static Problem Spanning(IGemmTile tile) =>
        new(new GemmCase(1, 2 * tile.BM + 3, 2 * tile.BN + 5, 4 * tile.BK + 3, false, false, 1f, 0.5f),
            TransposeB: true);

    /// <summary>The tiled kernel at each tile: the tile's instance and the launch forced to it.</summary>
    private static readonly (IGemmTile Tile, TiledRun Run)[] Tiles =
    [
        (new GemmTile128x128(), Gemm.RunTiled<GemmTile128x128>),
        (new GemmTile128x64(), Gemm.RunTiled<GemmTile128x64>),
        (new GemmTile64x64(), Gemm.RunTiled<GemmTile64x64>),
        (new GemmTile32x32(), Gemm.RunTiled<GemmTile32x32>),
    ];

    private delegate void TiledRun(Tensor a, Tensor b, Tensor c, bool transposeA, bool transposeB, float alpha,
        float beta);

    private static readonly (HostGemmPath Path, int Threads)[] HostPaths =
    [
        (HostGemmPath.Auto, Environment.ProcessorCount), (HostGemmPath.Vector512, 2), (HostGemmPath.Vector256, 2),
        (HostGemmPath.Scalar, 1),
    ];

    public static void Run(VerificationContext context)
    {
        var device = context.Device;
        if (!device.IsCpuSimulator)
            context.Skip("Gemm host SIMD", "-", "host SIMD runs on ILGPU's CPU accelerator only");
        var smallRowLaunches = SmallRowLaunches(context);
        foreach (var problem in Problems)
        {
            Check(context, "Gemm simple", problem, (a, b, c, p) =>
                Gemm.Run(a, b, c, p.TransposeA, p.TransposeB, p.Case.Alpha, p.Case.Beta, GemmVariant.Simple));
            foreach (var tile in GemmTiles.All)
                CheckTiled(context, tile, problem);
            if (Gemm.SmallRows(problem.Shape) is not null)
            {
                foreach (var launch in smallRowLaunches)
                {
                    var name = $"Gemm small rows {(launch.Reduction == GroupReduction.SubGroups ? "sub-groups" : "tree")}" +
                               $", group {launch.GroupSize}";
                    Check(context, name, problem, (a, b, c, p) =>
                        Gemm.RunSmallRows(a, b, c, launch, p.TransposeA, p.TransposeB, p.Case.Alpha, p.Case.Beta));
                }
            }
            if (device.IsCpuSimulator)
            {
                foreach (var (path, threads) in HostPaths)
                    Check(context, $"Gemm host SIMD {path} ×{threads}", problem, (a, b, c, p) =>
                        Gemm.RunHostSimd(a, b, c, path, threads, p.TransposeA, p.TransposeB, p.Case.Alpha,
                            p.Case.Beta));
            }
        }
        foreach (var tile in GemmTiles.All)
            CheckTiled(context, tile, Spanning(tile));
    }

    /// <summary>The tiled kernel forced to <paramref name="tile"/>, or a skip row where the device cannot launch it.</summary>
    private static void CheckTiled(VerificationContext context, IGemmTile tile, Problem problem)
    {
        var name = $"Gemm tiled {tile.BM}x{tile.BN}x{tile.BK}";
        var threads = GemmTiles.Threads(tile);
        if (threads > context.Device.MaxGroupSize)
        {
            context.Skip(name, problem.ToString(),
                $"{threads} threads per group; the device allows {context.Device.MaxGroupSize}",
                $"GemmKernels.Tiled<{tile.GetType().Name}>");
            return;
        }
        var run = Tiles.FirstOrDefault(t => t.Tile.GetType() == tile.GetType()).Run;
        Check(context, name, problem, (a, b, c, p) =>
        {
            if (run is null)
                throw new InvalidOperationException($"No check launches GEMM tile {tile.GetType().Name}.");
            run(a, b, c, p.TransposeA, p.TransposeB, p.Case.Alpha, p.Case.Beta);
        });
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

    private static void Check(VerificationContext context, string name, Problem problem,
        Action<Tensor, Tensor, Tensor, Problem> run)
    {
        context.Check(name, problem.ToString(), Tolerance, () =>
        {
            var shape = problem.Shape;
            var (dimsA, dimsB, dimsC) = problem.Case.Dims(shape);
            var (a, b, c) = problem.Case.Inputs(shape, seed: 1);
            // 16-bit operands are held to the product of the values they store.
            a = CaseInputs.Rounded(a, problem.AType);
            b = CaseInputs.Rounded(b, problem.BType);
            using var ta = Tensor.FromHost(context.Device, a, problem.AType, dimsA);
            using var tb = Tensor.FromHost(context.Device, b, problem.BType, dimsB);
            using var tc = Tensor.FromHost(context.Device, c, dimsC);
            run(ta, tb, tc, problem);
            var expected = GemmReference.Forward(shape, a, b, problem.Case.Alpha, problem.Case.Beta, c);
            return [new CheckedOutput("c", tc.ToHost(), expected)];
        });
    }
}
