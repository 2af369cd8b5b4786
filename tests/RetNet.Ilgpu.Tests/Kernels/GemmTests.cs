using ILGPU;
using ILGPU.Runtime;
using ILGPU.Runtime.CPU;
using RetNet.Ilgpu.Benchmarks;
using RetNet.Ilgpu.Devices;
using RetNet.Ilgpu.Kernels;
using RetNet.Ilgpu.Kernels.Gemm;
using RetNet.Ilgpu.Tests.Support;
using RetNet.Ilgpu.Verification.Cases;
using Xunit.Abstractions;

namespace RetNet.Ilgpu.Tests.Kernels;

[Collection(DeviceCollection.Name)]
public sealed class GemmTests(DeviceFixture fixture, HostCpu hostCpu, ITestOutputHelper output)
    : IClassFixture<HostCpu>
{
    private readonly RetNetDevice device = fixture.Device;

    // HostSimd exists only on ILGPU's CPU accelerator: on another lane its cases run on a CPU device of their own, so
    // every lane holds it to the same checks.
    private RetNetDevice On(GemmVariant variant) => variant == GemmVariant.HostSimd ? hostCpu.For(device) : device;

    public static TheoryData<GemmVariant, bool, bool, int, int, int> VariantsTranspositionsAndSizes()
    {
        var data = new TheoryData<GemmVariant, bool, bool, int, int, int>();
        foreach (var variant in new[] { GemmVariant.Tiled, GemmVariant.Simple, GemmVariant.HostSimd, GemmVariant.Auto })
        {
            foreach (var (ta, tb) in new[] { (false, false), (true, false), (false, true), (true, true) })
            {
                foreach (var (m, n, k) in new[] { (1, 1, 1), (13, 7, 5), (17, 33, 9) })
                    data.Add(variant, ta, tb, m, n, k);
            }
        }
        return data;
    }

    [Theory, MemberData(nameof(VariantsTranspositionsAndSizes))]
    public void Every_variant_matches_the_reference_for_every_transposition(GemmVariant variant, bool transposeA,
        bool transposeB, int m, int n, int k) =>
        AssertMatchesReference(new GemmCase(1, m, n, k, false, false), transposeA, transposeB, variant, seed: m * 100 + k);

    public static TheoryData<GemmVariant, bool, bool> VariantsAndTranspositions()
    {
        var data = new TheoryData<GemmVariant, bool, bool>();
        foreach (var variant in new[] { GemmVariant.Tiled, GemmVariant.Simple, GemmVariant.HostSimd })
        {
            foreach (var (ta, tb) in new[] { (false, false), (true, false), (false, true), (true, true) })
                data.Add(variant, ta, tb);
        }
        return data;
    }

    [Theory, MemberData(nameof(VariantsAndTranspositions))]
    public void Batched_products_use_each_batch_entry_and_broadcast_a_matrix_operand(GemmVariant variant,
        bool transposeA, bool transposeB)
    {
        AssertMatchesReference(new GemmCase(3, 11, 10, 9, BatchedA: true, BatchedB: true), transposeA, transposeB, variant, 1);
        AssertMatchesReference(new GemmCase(3, 12, 9, 7, BatchedA: true, BatchedB: false), transposeA, transposeB, variant, 2);
        AssertMatchesReference(new GemmCase(2, 5, 17, 6, BatchedA: false, BatchedB: true), transposeA, transposeB, variant, 3);
    }

    [Theory, MemberData(nameof(VariantsAndTranspositions))]
    public void Alpha_scales_the_product_and_beta_accumulates_into_the_old_c(GemmVariant variant, bool transposeA,
        bool transposeB)
    {
        AssertMatchesReference(new GemmCase(2, 9, 14, 11, true, true, Alpha: -0.75f, Beta: 1f), transposeA, transposeB, variant, 4);
        AssertMatchesReference(new GemmCase(1, 6, 5, 3, false, false, Alpha: 2.5f, Beta: -0.5f), transposeA, transposeB, variant, 5);
        AssertMatchesReference(new GemmCase(2, 7, 3, 4, true, false, Alpha: 0f, Beta: 0.25f), transposeA, transposeB, variant, 6);
    }

    [Theory, InlineData(GemmVariant.Tiled), InlineData(GemmVariant.Simple), InlineData(GemmVariant.HostSimd)]
    public void Beta_zero_ignores_nan_garbage_in_an_uninitialized_output(GemmVariant variant)
    {
        var device = On(variant);
        var a = Numerics.Uniform(7, 6 * 5);
        var b = Numerics.Uniform(8, 5 * 4);
        using var ta = Tensor.FromHost(device, a, 6, 5);
        using var tb = Tensor.FromHost(device, b, 5, 4);
        using var c = Tensor.Uninitialized(device, 6, 4);
        c.CopyFromHost(Enumerable.Repeat(float.NaN, 24).ToArray());

        Gemm.Run(ta, tb, c, variant: variant);

        Numerics.AssertClose("c", c.ToHost(), GemmReference.Forward(new GemmShape(1, 6, 4, 5), a, b));
    }

    [Theory, InlineData(GemmVariant.Tiled), InlineData(GemmVariant.Simple), InlineData(GemmVariant.HostSimd)]
    public void An_empty_inner_dimension_leaves_beta_times_c(GemmVariant variant)
    {
        var device = On(variant);
        using var a = Tensor.Zeros(device, 3, 0);
        using var b = Tensor.Zeros(device, 0, 4);
        var old = Numerics.Uniform(9, 12);
        using var c = Tensor.FromHost(device, old, 3, 4);

        Gemm.Run(a, b, c, alpha: 2f, beta: 0.5f, variant: variant);

        Numerics.AssertClose("c", c.ToHost(), old.Select(v => 0.5 * v).ToArray());
    }

    [Theory, InlineData(GemmVariant.Tiled), InlineData(GemmVariant.Simple), InlineData(GemmVariant.HostSimd)]
    public void Gradients_of_a_product_are_products_with_a_transposed_operand(GemmVariant variant)
    {
        var device = On(variant);
        // Y[batch, M, N] = X[batch, M, K]·W[K, N] with W shared by the batch (a Linear layer):
        // dX = dY·Wᵀ per entry, and dW = Σ_p X_pᵀ·dY_p, one product once the batch is folded into the rows.
        const int batch = 3, m = 5, n = 4, k = 7;
        var shape = new GemmShape(batch, m, n, k, BroadcastB: true);
        var x = Numerics.Uniform(10, batch * m * k);
        var w = Numerics.Uniform(11, k * n);
        var dy = Numerics.Uniform(12, batch * m * n);
        using var tx = Tensor.FromHost(device, x, batch, m, k);
        using var tw = Tensor.FromHost(device, w, k, n);
        using var tdy = Tensor.FromHost(device, dy, batch, m, n);
        using var dx = Tensor.Uninitialized(device, batch, m, k);
        using var dw = Tensor.Uninitialized(device, k, n);

        Gemm.Run(tdy, tw, dx, transposeB: true, variant: variant);
        Gemm.Run(tx.Reshape(batch * m, k), tdy.Reshape(batch * m, n), dw, transposeA: true, variant: variant);

        var (expectedDx, expectedDw) = GemmReference.Backward(shape, x, w, dy);
        Numerics.AssertClose("dX", dx.ToHost(), expectedDx);
        Numerics.AssertClose("dW", dw.ToHost(), expectedDw);
    }

    [Fact]
    public void Auto_is_host_simd_on_the_host_path_simple_on_the_simulator_and_tiled_elsewhere()
    {
        Assert.Equal(Expected(device), Gemm.Resolve(device, GemmVariant.Auto));
        Assert.Equal(GemmVariant.Tiled, Gemm.Resolve(device, GemmVariant.Tiled));
        Assert.Equal(GemmVariant.Simple, Gemm.Resolve(device, GemmVariant.Simple));
        var cpu = hostCpu.For(device);
        Assert.Equal(Expected(cpu), Gemm.Resolve(cpu, GemmVariant.Auto));
        Assert.Equal(GemmVariant.HostSimd, Gemm.Resolve(cpu, GemmVariant.HostSimd));

        static GemmVariant Expected(RetNetDevice d) =>
            d.RunsOnHost ? GemmVariant.HostSimd : d.IsCpuSimulator ? GemmVariant.Simple : GemmVariant.Tiled;
    }

    [Fact]
    public void Host_simd_is_refused_on_a_device_other_than_the_cpu_accelerator()
    {
        if (device.IsCpuSimulator)
        {
            output.WriteLine($"{device} is the CPU accelerator: nothing to refuse on this lane.");
            return;
        }
        using var a = Tensor.FromHost(device, Numerics.Uniform(46, 12), 3, 4);
        using var b = Tensor.FromHost(device, Numerics.Uniform(47, 8), 4, 2);
        using var c = Tensor.FromHost(device, Enumerable.Repeat(float.NaN, 6).ToArray(), 3, 2);
        var error = Assert.Throws<NotSupportedException>(() => Gemm.Run(a, b, c, variant: GemmVariant.HostSimd));
        Assert.Contains("CPU accelerator", error.Message);
        Assert.Throws<NotSupportedException>(() => Gemm.RunHostSimd(a, b, c, HostGemmPath.Scalar, 1));
        Assert.All(c.ToHost(), v => Assert.True(float.IsNaN(v), $"a refused HostSimd wrote {v}"));
    }

    // Shapes that cut the 6-row and 8/16/32-column register blocks, the 256-deep K-blocks (with beta ≠ 0 across
    // several K-blocks, where the old C is kept aside), the 2048-column B block, the parallel row and column splits,
    // the thread-per-entry batch schedule and the folding of a batched A against a broadcast B.
    private static readonly GemmCase[] HostCases =
    [
        new(1, 1, 1, 1, false, false),
        new(1, 13, 17, 19, false, false),
        new(1, 7, 9, 1, false, false, Alpha: 1.5f, Beta: 0.5f),
        new(1, 5, 37, 1000, false, false, Alpha: -0.5f, Beta: 2f),
        new(1, 150, 140, 300, false, false),
        new(1, 7, 2100, 3, false, false),
        new(1, 3, 700, 260, false, false, Alpha: 0.75f, Beta: -1f),
        new(3, 11, 10, 9, true, true, Alpha: 2f, Beta: 1f),
        new(5, 12, 9, 7, true, false),
        new(2, 5, 17, 6, false, true),
        new(6, 20, 33, 40, true, true),
    ];

    // Paths travel as names: the enum is internal to the library and theory methods are public.
    public static TheoryData<string, int, bool, bool> HostPathsThreadsAndTranspositions()
    {
        var data = new TheoryData<string, int, bool, bool>();
        foreach (var (path, threads) in new[]
                 {
                     (HostGemmPath.Auto, 2), (HostGemmPath.Vector512, 3), (HostGemmPath.Vector256, 2),
                     (HostGemmPath.Scalar, 1),
                 })
        {
            foreach (var (ta, tb) in new[] { (false, false), (true, false), (false, true), (true, true) })
                data.Add(path.ToString(), threads, ta, tb);
        }
        return data;
    }

    [Theory, MemberData(nameof(HostPathsThreadsAndTranspositions))]
    public void Host_simd_paths_match_the_reference_on_edge_shapes(string pathName, int threads, bool transposeA,
        bool transposeB)
    {
        var path = Enum.Parse<HostGemmPath>(pathName);
        var cpu = hostCpu.For(device);
        output.WriteLine($"fastest host path here: {HostGemm.Best}; testing {path} on {threads} threads");
        for (var i = 0; i < HostCases.Length; i++)
        {
            var problem = HostCases[i];
            var shape = problem.Shape(transposeA, transposeB);
            var (a, b, c) = problem.Inputs(shape, seed: 60 + i);
            var actual = RunHost(cpu, problem, shape, a, b, c, path, threads);
            Numerics.AssertClose($"HostSimd {path} ×{threads} {shape} alpha={problem.Alpha} beta={problem.Beta}",
                actual, GemmReference.Forward(shape, a, b, problem.Alpha, problem.Beta, c));
        }
    }

    [Fact]
    public void Host_simd_results_are_bit_identical_across_paths_thread_counts_and_runs()
    {
        // Every path takes one fused multiply-add per k in ascending k and threads never split K, so neither the
        // instruction set nor the schedule may change a single bit.
        var cpu = hostCpu.For(device);
        foreach (var problem in new[] { HostCases[3], HostCases[4], HostCases[6], HostCases[10] })
        {
            var shape = problem.Shape(true, false);
            var (a, b, c) = problem.Inputs(shape, seed: 80);
            var first = RunHost(cpu, problem, shape, a, b, c, HostGemmPath.Scalar, 1);
            foreach (var (path, threads) in new[]
                     {
                         (HostGemmPath.Scalar, 1), (HostGemmPath.Vector256, 1), (HostGemmPath.Vector256, 2),
                         (HostGemmPath.Vector512, 2), (HostGemmPath.Vector512, 3), (HostGemmPath.Auto, 4),
                     })
            {
                Assert.Equal(first, RunHost(cpu, problem, shape, a, b, c, path, threads));
            }
        }
    }

    // Around the unpacked path's row limit (8): M = 1, 2, 7, 8 run unpacked, 9 packed; odd N and K cut the vector
    // panels and the in-register transpose tiles, K = 300 and 600 cross K-blocks (with beta ≠ 0), a batched A against
    // a broadcast B folds into 2·3 = 6 or 3·3 = 9 rows, and 1·520·260 elements of B split the panels over threads.
    private static readonly GemmCase[] SmallRowCases =
    [
        new(1, 1, 1, 1, false, false),
        new(1, 1, 37, 19, false, false),
        new(1, 1, 128, 128, false, false),
        new(1, 2, 64, 300, false, false, Alpha: 1.5f, Beta: 0.5f),
        new(1, 7, 33, 17, false, false, Alpha: -0.5f, Beta: 2f),
        new(1, 8, 47, 600, false, false, Alpha: 0.75f, Beta: -1f),
        new(1, 9, 31, 40, false, false),
        new(1, 3, 520, 260, false, false, Alpha: 2f, Beta: 1f),
        new(2, 3, 45, 23, true, false),
        new(3, 3, 16, 32, true, false, Alpha: 1f, Beta: 0.5f),
        new(3, 2, 21, 11, false, true),
        new(2, 5, 40, 9, true, true, Alpha: 0.5f, Beta: 1f),
    ];

    [Theory, MemberData(nameof(HostPathsThreadsAndTranspositions))]
    public void Host_simd_small_row_products_match_the_reference_and_the_packed_path_bit_for_bit(string pathName,
        int threads, bool transposeA, bool transposeB)
    {
        // The unpacked path takes the packed path's fused multiply-add chain for every element, so forcing every
        // product through the packing (smallRows: 0) may not change a bit. A weight stored [N, K] (transposed B, a
        // Linear layer's) is the exception: the vector paths stream one dot product per element (HostDots), summed
        // in another fixed order, so there it matches the reference and is the same bit for bit on any thread count.
        var path = Enum.Parse<HostGemmPath>(pathName);
        var cpu = hostCpu.For(device);
        for (var i = 0; i < SmallRowCases.Length; i++)
        {
            var problem = SmallRowCases[i];
            var shape = problem.Shape(transposeA, transposeB);
            var (a, b, c) = problem.Inputs(shape, seed: 120 + i);
            var name = $"HostSimd {path} ×{threads} {shape} alpha={problem.Alpha} beta={problem.Beta}";
            var actual = RunHost(cpu, problem, shape, a, b, c, path, threads);
            Numerics.AssertClose(name, actual, GemmReference.Forward(shape, a, b, problem.Alpha, problem.Beta, c));
            Assert.Equal(RunHost(cpu, problem, shape, a, b, c, path, 1), actual);
            if (transposeB && path != HostGemmPath.Scalar)
                continue;
            Assert.Equal(RunHost(cpu, problem, shape, a, b, c, path, threads, smallRows: 0), actual);
            Assert.Equal(RunHost(cpu, problem, shape, a, b, c, HostGemmPath.Scalar, 1), actual);
        }
    }

    [Fact]
    public void Host_simd_small_row_check_rejects_a_swapped_operand_order()
    {
        // Negative control for the bit-identity above: a product summed in another order (k descending) differs
        // from the unpacked path in some bit, so equality there is not vacuous.
        var cpu = hostCpu.For(device);
        var problem = new GemmCase(1, 1, 64, 300, false, false);
        var shape = problem.Shape(false, true);
        var (a, b, c) = problem.Inputs(shape, seed: 140);
        var actual = RunHost(cpu, problem, shape, a, b, c, HostGemm.Best, 1);
        var reversed = new float[shape.N];
        for (var j = 0; j < shape.N; j++)
        {
            var acc = 0f;
            for (var k = shape.K - 1; k >= 0; k--)
                acc = MathF.FusedMultiplyAdd(a[k], b[j * shape.K + k], acc);
            reversed[j] = acc;
        }
        Numerics.AssertClose("k descending", reversed, GemmReference.Forward(shape, a, b, 1, 0, c));
        Assert.NotEqual(reversed, actual);
    }

    [Fact]
    public void Host_simd_reads_and_writes_views_at_offsets_only()
    {
        // Operands and output are slices in the middle of larger tensors: the pointers must start at the views'
        // offsets, and the neighbouring rows must come out untouched.
        var cpu = hostCpu.For(device);
        var shape = new GemmShape(1, 9, 35, 13);
        var a = Numerics.Uniform(90, 20 * 13);
        var b = Numerics.Uniform(91, 30 * 35);
        var c = Numerics.Uniform(92, 15 * 35);
        using var ta = Tensor.FromHost(cpu, a, 20, 13);
        using var tb = Tensor.FromHost(cpu, b, 30, 35);
        using var tc = Tensor.FromHost(cpu, c, 15, 35);

        Gemm.Run(ta.Slice(4, 9), tb.Slice(11, 13), tc.Slice(3, 9), alpha: 1f, beta: 0.5f, variant: GemmVariant.HostSimd);

        var result = tc.ToHost();
        var expected = GemmReference.Forward(shape, a.AsSpan(4 * 13, 9 * 13), b.AsSpan(11 * 35, 13 * 35), 1, 0.5,
            c.AsSpan(3 * 35, 9 * 35));
        Numerics.AssertClose("sliced product", result.AsSpan(3 * 35, 9 * 35).ToArray(), expected);
        Assert.Equal(c[..(3 * 35)], result[..(3 * 35)]);
        Assert.Equal(c[(12 * 35)..], result[(12 * 35)..]);
    }

    private static float[] RunHost(RetNetDevice cpu, GemmCase problem, GemmShape shape, float[] a, float[] b,
        float[] c, HostGemmPath path, int threads, int smallRows = HostGemm.SmallRows)
    {
        var (dimsA, dimsB, dimsC) = problem.Dims(shape);
        using var ta = Tensor.FromHost(cpu, a, dimsA);
        using var tb = Tensor.FromHost(cpu, b, dimsB);
        using var tc = Tensor.FromHost(cpu, c, dimsC);
        Gemm.RunHostSimd(ta, tb, tc, path, threads, shape.TransposeA, shape.TransposeB, problem.Alpha, problem.Beta,
            smallRows);
        return tc.ToHost();
    }

    [Fact]
    public void Policy_picks_a_tile_per_device_class_and_the_largest_that_fits_smaller_groups()
    {
        Assert.IsType<GemmTile32x32>(GemmTiles.Largest(16));
        Assert.IsType<GemmTile64x64>(GemmTiles.Largest(127));
        Assert.IsType<GemmTile128x64>(GemmTiles.Largest(128));
        Assert.IsType<GemmTile128x64>(GemmTiles.Largest(255));
        Assert.IsType<GemmTile128x128>(GemmTiles.Largest(256));
        Assert.IsType<GemmTile128x128>(GemmTiles.Largest(4096));
        Assert.Throws<NotSupportedException>(() => GemmTiles.Largest(8));

        Assert.IsType<GemmTile128x128>(TileFor(DeviceClass.NvidiaGpu, true, 1024));
        Assert.IsType<GemmTile128x128>(TileFor(DeviceClass.AmdGpu, true, 256));
        Assert.IsType<GemmTile64x64>(TileFor(DeviceClass.IntelGpu, true, 512));
        Assert.IsType<GemmTile32x32>(TileFor(DeviceClass.CpuAccelerator, false, 16));
        Assert.IsType<GemmTile128x128>(TileFor(DeviceClass.OtherOpenCL, true, 1024));
        Assert.IsType<GemmTile64x64>(TileFor(DeviceClass.OtherOpenCL, false, 4096));
        // A device whose groups stop below the class's tile gets the largest tile that fits.
        Assert.IsType<GemmTile128x64>(TileFor(DeviceClass.NvidiaGpu, true, 128));
        Assert.IsType<GemmTile32x32>(TileFor(DeviceClass.IntelGpu, true, 32));

        var tile = GemmTiles.Largest(device.Policy.GemmGroupSize);
        output.WriteLine($"{device} (max group {device.MaxGroupSize}): tiled GEMM uses {GemmTiles.Describe(tile)}");
        Assert.True(GemmTiles.Threads(tile) <= device.MaxGroupSize);

        static IGemmTile TileFor(DeviceClass deviceClass, bool isGpu, int maxGroupSize) =>
            GemmTiles.Largest(DevicePolicy.GemmGroupSizeFor(deviceClass, isGpu, maxGroupSize));
    }

    [Fact]
    public void Every_tile_stages_whole_quads_and_the_largest_stays_within_two_groups_per_multiprocessor()
    {
        foreach (var tile in GemmTiles.All)
        {
            var what = GemmTiles.Describe(tile);
            Assert.True(tile.BM % RegisterBlock.Rows == 0 && tile.BN % RegisterBlock.Columns == 0 && tile.BK % 4 == 0, what);
            Assert.InRange(GemmTiles.QuadsA(tile), 1, 2);
            Assert.InRange(GemmTiles.QuadsB(tile), 1, 2);
            Assert.Equal(tile.BM * tile.BK, 4 * GemmTiles.QuadsA(tile) * GemmTiles.Threads(tile));
            Assert.Equal(tile.BK * tile.BN, 4 * GemmTiles.QuadsB(tile) * GemmTiles.Threads(tile));
            Assert.True(GemmTiles.SharedBytes(tile) <= 48 * 1024, $"{what}: {GemmTiles.SharedBytes(tile)} bytes of shared memory");
        }
        var big = default(GemmTile128x128);
        Assert.Equal(128, 65536 / (big.MinGroupsPerMultiprocessor * GemmTiles.Threads(big)));
    }

    [Fact]
    public void Tiled_kernel_ptx_has_launch_bounds_and_vector_shared_loads()
    {
        // What the register budget and the vectorised shared-memory reads rest on, checked in the generated PTX. The
        // barrier-free kernel states no bounds and has no shared memory: the negative control for both searches.
        var tiled = KernelRegistry.All.Single(k => k.Name == $"GemmKernels.Tiled<{nameof(GemmTile128x128)}>");
        var simple = KernelRegistry.All.Single(k => k.Name == "GemmKernels.Simple");
        foreach (var target in new[] { CompileTarget.PtxSm80, CompileTarget.PtxSm90 })
        {
            var ptx = KernelCompileCheck.GenerateSource(tiled, target);
            Assert.Contains(".maxntid 256, 1, 1", ptx);
            Assert.Contains(".minnctapersm 2", ptx);
            Assert.Equal(4, CountOf(ptx, "ld.shared.v4.f32"));
            Assert.DoesNotContain(".local", ptx);
            var plain = KernelCompileCheck.GenerateSource(simple, target);
            Assert.DoesNotContain(".maxntid", plain);
            Assert.Equal(0, CountOf(plain, "ld.shared.v4.f32"));
        }

        static int CountOf(string text, string what) => (text.Length - text.Replace(what, "").Length) / what.Length;
    }

    [Fact]
    public void A_tile_runs_exactly_when_its_group_fits_the_device_and_is_refused_otherwise()
    {
        AssertTileRunsOrIsRefused<GemmTile128x128>(device);
        AssertTileRunsOrIsRefused<GemmTile128x64>(device);
        AssertTileRunsOrIsRefused<GemmTile64x64>(device);
        AssertTileRunsOrIsRefused<GemmTile32x32>(device);

        // The refusal on every machine: the CPU accelerator is always present and its groups hold 16 threads.
        using var cpu = device.IsCpuSimulator ? null : RetNetDevice.Open(DeviceKind.Cpu);
        var small = cpu ?? device;
        Assert.True(GemmTiles.Threads(default(GemmTile64x64)) > small.MaxGroupSize,
            $"{small} launches groups of {small.MaxGroupSize} threads");
        AssertTileRunsOrIsRefused<GemmTile64x64>(small);
    }

    private static void AssertTileRunsOrIsRefused<TTile>(RetNetDevice target) where TTile : struct, IGemmTile
    {
        var shape = new GemmShape(1, 13, 7, 5);
        var a = Numerics.Uniform(44, shape.ElementsA);
        var b = Numerics.Uniform(45, shape.ElementsB);
        var garbage = Enumerable.Repeat(float.NaN, shape.ElementsC).ToArray();
        using var ta = Tensor.FromHost(target, a, 13, 5);
        using var tb = Tensor.FromHost(target, b, 5, 7);
        using var tc = Tensor.FromHost(target, garbage, 13, 7);
        var what = $"{GemmTiles.Describe(default(TTile))} on {target} (groups of at most {target.MaxGroupSize})";
        if (GemmTiles.Threads(default(TTile)) <= target.MaxGroupSize)
        {
            Gemm.RunTiled<TTile>(ta, tb, tc);
            Numerics.AssertClose(what, tc.ToHost(), GemmReference.Forward(shape, a, b));
        }
        else
        {
            Assert.Throws<NotSupportedException>(() => Gemm.RunTiled<TTile>(ta, tb, tc));
            Assert.All(tc.ToHost(), v => Assert.True(float.IsNaN(v), $"{what}: a refused launch wrote {v}"));
        }
    }

    [Fact]
    public void Mismatched_inner_dimensions_are_rejected_naming_b_and_both_shapes()
    {
        using var a = Tensor.Zeros(device, 3, 5);
        using var b = Tensor.Zeros(device, 6, 4);
        using var c = Tensor.Zeros(device, 3, 4);
        var error = Assert.Throws<ArgumentException>(() => Gemm.Run(a, b, c));
        Assert.Equal("b", error.ParamName);
        Assert.Contains("inner dimensions differ: a has K=5, b has K=6", error.Message);
        Assert.Contains("[3, 5]", error.Message);
        Assert.Contains("[6, 4]", error.Message);

        // Transposed, a [5, 3] holds Aᵀ with K = 5 and b [4, 6] holds Bᵀ with K = 6.
        using var at = Tensor.Zeros(device, 5, 3);
        using var bt = Tensor.Zeros(device, 4, 6);
        var transposed = Assert.Throws<ArgumentException>(() => Gemm.Run(at, bt, c, transposeA: true, transposeB: true));
        Assert.Equal("b", transposed.ParamName);
        Assert.Contains("a has K=5, b has K=6", transposed.Message);
    }

    [Fact]
    public void Wrong_ranks_batches_and_outputs_are_rejected_naming_the_argument_and_shapes()
    {
        using var vector = Tensor.Zeros(device, 5);
        using var a = Tensor.Zeros(device, 2, 3, 5);
        using var b = Tensor.Zeros(device, 5, 4);
        using var c = Tensor.Zeros(device, 2, 3, 4);

        var rank = Assert.Throws<ArgumentException>(() => Gemm.Run(vector, b, c));
        Assert.Equal("a", rank.ParamName);
        Assert.Contains("[5]", rank.Message);

        using var otherBatch = Tensor.Zeros(device, 3, 5, 4);
        var batch = Assert.Throws<ArgumentException>(() => Gemm.Run(a, otherBatch, c));
        Assert.Equal("b", batch.ParamName);
        Assert.Contains("[2, 3, 5]", batch.Message);
        Assert.Contains("[3, 5, 4]", batch.Message);

        using var unbatchedC = Tensor.Zeros(device, 3, 4);
        var output = Assert.Throws<ArgumentException>(() => Gemm.Run(a, b, unbatchedC));
        Assert.Equal("c", output.ParamName);
        Assert.Contains("[3, 4]", output.Message);
        Assert.Contains("[2, 3, 4]", output.Message);

        using var a2 = Tensor.Zeros(device, 3, 5);
        using var transposedC = Tensor.Zeros(device, 4, 3);
        var swapped = Assert.Throws<ArgumentException>(() => Gemm.Run(a2, b, transposedC));
        Assert.Equal("c", swapped.ParamName);
        Assert.Contains("[4, 3]", swapped.Message);
        Assert.Contains("[3, 4]", swapped.Message);
    }

    [Fact]
    public void Aliased_outputs_and_non_finite_scalars_are_rejected_before_anything_is_written()
    {
        using var square = Tensor.FromHost(device, Numerics.Uniform(13, 16), 4, 4);
        using var other = Tensor.FromHost(device, Numerics.Uniform(14, 16), 4, 4);
        var before = square.ToHost();

        Assert.Equal("c", Assert.Throws<ArgumentException>(() => Gemm.Run(square, other, square)).ParamName);
        Assert.Equal("c", Assert.Throws<ArgumentException>(() => Gemm.Run(other, square, square)).ParamName);
        Assert.Equal("alpha", Assert.Throws<ArgumentOutOfRangeException>(
            () => Gemm.Run(other, other, square, alpha: float.NaN)).ParamName);
        Assert.Equal("beta", Assert.Throws<ArgumentOutOfRangeException>(
            () => Gemm.Run(other, other, square, beta: float.PositiveInfinity)).ParamName);
        Assert.Equal("variant", Assert.Throws<ArgumentOutOfRangeException>(
            () => Gemm.Run(other, other, square, variant: (GemmVariant)7)).ParamName);
        Assert.Equal(before, square.ToHost());
    }

    [Theory, InlineData(GemmVariant.Tiled), InlineData(GemmVariant.Simple), InlineData(GemmVariant.HostSimd)]
    public void Check_rejects_a_transposed_operand(GemmVariant variant)
    {
        var device = On(variant);
        // Square operands fit either storage, so a kernel that read B transposed would run without complaint.
        var shape = new GemmShape(1, 13, 13, 13);
        var a = Numerics.Uniform(40, shape.ElementsA);
        var b = Numerics.Uniform(41, shape.ElementsB);
        using var ta = Tensor.FromHost(device, a, 13, 13);
        using var tb = Tensor.FromHost(device, b, 13, 13);
        using var c = Tensor.Uninitialized(device, 13, 13);
        var expected = GemmReference.Forward(shape, a, b);

        Gemm.Run(ta, tb, c, variant: variant);
        Numerics.AssertClose("A·B", c.ToHost(), expected);
        Gemm.Run(ta, tb, c, transposeB: true, variant: variant);
        AssertRejected(Numerics.Check("A·Bᵀ against A·B", c.ToHost(), expected));
    }

    [Theory, InlineData(GemmVariant.Tiled), InlineData(GemmVariant.Simple), InlineData(GemmVariant.HostSimd)]
    public void Check_rejects_zero_output_of_small_operands(GemmVariant variant)
    {
        var device = On(variant);
        // Operands of 1e-3 give |C| ~ 1e-6: under the former bound 1e-4·(1 + max |ref|) zeros passed.
        var shape = new GemmShape(1, 9, 14, 11);
        var a = Numerics.Uniform(42, shape.ElementsA, 1e-3f);
        var b = Numerics.Uniform(43, shape.ElementsB, 1e-3f);
        using var ta = Tensor.FromHost(device, a, 9, 11);
        using var tb = Tensor.FromHost(device, b, 11, 14);
        using var c = Tensor.Uninitialized(device, 9, 14);
        var expected = GemmReference.Forward(shape, a, b);

        Gemm.Run(ta, tb, c, variant: variant);
        Numerics.AssertClose("A·B at scale 1e-3", c.ToHost(), expected);
        AssertRejected(Numerics.Check("zeros", new float[shape.ElementsC], expected));
    }

    private void AssertRejected(Closeness check)
    {
        output.WriteLine(check.Message);
        Numerics.AssertRejected(check);
    }

    private void AssertMatchesReference(GemmCase problem, bool transposeA, bool transposeB, GemmVariant variant, int seed)
    {
        var device = On(variant);
        var shape = problem.Shape(transposeA, transposeB);
        var (dimsA, dimsB, dimsC) = problem.Dims(shape);
        var (a, b, c) = problem.Inputs(shape, seed);
        using var ta = Tensor.FromHost(device, a, dimsA);
        using var tb = Tensor.FromHost(device, b, dimsB);
        using var tc = Tensor.FromHost(device, c, dimsC);

        Gemm.Run(ta, tb, tc, transposeA, transposeB, problem.Alpha, problem.Beta, variant);

        Numerics.AssertClose($"{variant} {shape} alpha={problem.Alpha} beta={problem.Beta}", tc.ToHost(),
            GemmReference.Forward(shape, a, b, problem.Alpha, problem.Beta, c));
    }
}

/// <summary>Every tile of the tiled kernel against the reference, on shapes that cut every tile edge.</summary>
[Collection(DeviceCollection.Name)]
public sealed class GemmTileTests(DeviceFixture fixture, GemmWideCpuAccelerator wideCpu, ITestOutputHelper output)
    : IClassFixture<GemmWideCpuAccelerator>
{
    private readonly RetNetDevice device = fixture.Device;

    // Shapes cut every tile edge (32, 64, 128) and every K-step (4, 8): a lone element, K = 1 against a wide
    // output, K below one step, one element past a step, a partial last step, exactly two steps of the largest tile
    // (so the double buffer ends on a full step) over both 128 edges, a batched product and both broadcasts; two
    // accumulate with alpha and beta, the others overwrite NaN.
    private static readonly GemmCase[] Cases =
    [
        new(1, 1, 1, 1, false, false),
        new(2, 40, 35, 1, true, true),
        new(1, 13, 7, 5, false, false),
        new(2, 17, 33, 9, true, true, Alpha: 0.5f, Beta: -1.5f),
        new(3, 70, 37, 21, true, false),
        new(2, 9, 66, 17, false, true),
        new(1, 131, 130, 16, false, false, Alpha: -1f, Beta: 0.25f),
    ];

    public static TheoryData<string, bool, bool> TilesAndTranspositions()
    {
        var data = new TheoryData<string, bool, bool>();
        foreach (var tile in GemmTiles.All)
        {
            foreach (var (ta, tb) in new[] { (false, false), (true, false), (false, true), (true, true) })
                data.Add(tile.GetType().Name, ta, tb);
        }
        return data;
    }

    public static TheoryData<string> Tiles()
    {
        var data = new TheoryData<string>();
        foreach (var tile in GemmTiles.All)
            data.Add(tile.GetType().Name);
        return data;
    }

    [Theory, MemberData(nameof(TilesAndTranspositions))]
    public void Every_tile_matches_the_reference(string tile, bool transposeA, bool transposeB)
    {
        for (var i = 0; i < Cases.Length; i++)
        {
            var problem = Cases[i];
            var shape = problem.Shape(transposeA, transposeB);
            var (a, b, c) = problem.Inputs(shape, seed: 20 + i);
            var actual = RunTile(tile, problem, shape, a, b, c);
            Numerics.AssertClose($"{tile} {shape}", actual,
                GemmReference.Forward(shape, a, b, problem.Alpha, problem.Beta, c));
        }
    }

    [Theory, MemberData(nameof(Tiles))]
    public void Every_tile_check_rejects_a_dropped_last_k_step_and_a_transposed_operand(string tile)
    {
        // The failures a double-buffered kernel is prone to: the last, partial K-step never multiplied (k = 20 lies
        // in it for every step size; dropping that column alone must already fail), or an operand staged along the
        // wrong dimension. B is square, so reading it
        // transposed still makes a product of the right shape.
        var problem = new GemmCase(1, 19, 21, 21, false, false);
        var shape = problem.Shape(false, false);
        var (a, b, c) = problem.Inputs(shape, seed: 50);
        var actual = RunTile(tile, problem, shape, a, b, c);
        Numerics.AssertClose($"{tile} {shape}", actual, GemmReference.Forward(shape, a, b));

        var truncated = (float[])a.Clone();
        for (var m = 0; m < shape.M; m++)
            truncated[m * shape.K + shape.K - 1] = 0f;
        AssertRejected(Numerics.Check("without the last K-step", actual, GemmReference.Forward(shape, truncated, b)));
        AssertRejected(Numerics.Check("B transposed", actual, GemmReference.Forward(shape with { TransposeB = true }, a, b)));
    }

    public static TheoryData<string, TensorDType, bool> TilesAndNarrowTypes()
    {
        var data = new TheoryData<string, TensorDType, bool>();
        foreach (var tile in GemmTiles.All)
        {
            foreach (var type in new[] { TensorDType.BFloat16, TensorDType.Float16 })
            {
                data.Add(tile.GetType().Name, type, false);
                data.Add(tile.GetType().Name, type, true);
            }
        }
        return data;
    }

    [Theory, MemberData(nameof(TilesAndNarrowTypes))]
    public void Every_tile_reads_16_bit_weights_as_their_exact_values(string tile, TensorDType type, bool transposeB)
    {
        var problem = new GemmCase(2, 9, 66, 17, BatchedA: true, BatchedB: false, Alpha: 0.5f, Beta: 1f);
        var shape = problem.Shape(false, transposeB);
        var (a, b, c) = problem.Inputs(shape, seed: 60);
        var actual = RunTile(tile, problem, shape, a, b, c, type);
        var stored = b.Select(v => TensorDTypes.Round(v, type)).ToArray();
        Numerics.AssertClose($"{tile} {type} {shape}", actual, GemmReference.Forward(shape, a, stored, problem.Alpha,
            problem.Beta, c));
        // Negative control: the unrounded weights' product is not what the kernel computed from 16-bit storage.
        AssertRejected(Numerics.Check("fp32 weights", actual, GemmReference.Forward(shape, a, b, problem.Alpha,
            problem.Beta, c)));
    }

    private void AssertRejected(Closeness check)
    {
        output.WriteLine(check.Message);
        Numerics.AssertRejected(check);
    }

    private float[] RunTile(string tile, GemmCase problem, GemmShape shape, float[] a, float[] b, float[] c,
        TensorDType bType = TensorDType.Float32) => tile switch
    {
        nameof(GemmTile128x128) => RunTile<GemmTile128x128>(problem, shape, a, b, c, bType),
        nameof(GemmTile128x64) => RunTile<GemmTile128x64>(problem, shape, a, b, c, bType),
        nameof(GemmTile64x64) => RunTile<GemmTile64x64>(problem, shape, a, b, c, bType),
        nameof(GemmTile32x32) => RunTile<GemmTile32x32>(problem, shape, a, b, c, bType),
        _ => throw new ArgumentException($"No test dispatch for tile {tile}.", nameof(tile)),
    };

    private float[] RunTile<TTile>(GemmCase problem, GemmShape shape, float[] a, float[] b, float[] c,
        TensorDType bType) where TTile : struct, IGemmTile
    {
        // A tile whose group the test device cannot launch (ILGPU's default CPU accelerator stops at 16 threads) runs
        // on a CPU accelerator with 256-thread groups instead.
        if (GemmTiles.Threads(default(TTile)) > device.MaxGroupSize)
            return wideCpu.RunTiled<TTile>(shape, a, b, c, problem.Alpha, problem.Beta, bType);
        var (dimsA, dimsB, dimsC) = problem.Dims(shape);
        using var ta = Tensor.FromHost(device, a, dimsA);
        using var tb = Tensor.FromHost(device, b, bType, dimsB);
        using var tc = Tensor.FromHost(device, c, dimsC);
        Gemm.RunTiled<TTile>(ta, tb, tc, shape.TransposeA, shape.TransposeB, problem.Alpha, problem.Beta);
        return tc.ToHost();
    }
}

/// <summary>
/// ILGPU's CPU accelerator with 256-thread groups (4 threads a warp, 64 warps), for the tiles the default CPU device
/// (16 threads a group) cannot launch. The library opens only default devices, so this loads the kernel directly,
/// with the grid and arguments <see cref="Gemm"/> computes.
/// </summary>
public sealed class GemmWideCpuAccelerator : IDisposable
{
    private readonly Lazy<(Context Context, Accelerator Accelerator)> cpu = new(() =>
    {
        var context = Context.Create(builder => builder.CPU(new CPUDevice(4, 64, 1)).EnableAlgorithms());
        return (context, context.CreateCPUAccelerator(0, CPUAcceleratorMode.Parallel));
    });

    internal float[] RunTiled<TTile>(GemmShape shape, float[] a, float[] b, float[] c, float alpha, float beta,
        TensorDType bType = TensorDType.Float32)
        where TTile : struct, IGemmTile
    {
        var accelerator = cpu.Value.Accelerator;
        Assert.True(GemmTiles.Threads(default(TTile)) <= accelerator.MaxNumThreadsPerGroup);
        using var da = accelerator.Allocate1D<float>(a.Length);
        using var db = accelerator.Allocate1D<float>(b.Length);
        using var dbBits = accelerator.Allocate1D<ushort>(Math.Max(1, b.Length));
        using var dc = accelerator.Allocate1D<float>(c.Length);
        da.View.CopyFromCPU(a);
        db.View.CopyFromCPU(b);
        dc.View.CopyFromCPU(c);
        var code = NarrowFloat.CodeOf(bType);
        if (bType != TensorDType.Float32)
            dbBits.View.SubView(0, b.Length).CopyFromCPU(b.Select(v => NarrowFloat.FromSingle(v, code)).ToArray());
        var kernel = accelerator.LoadKernel<FloatSource, FloatSource, ArrayView<float>, GemmArguments>(
            GemmKernels.Tiled<TTile>, LaunchBounds.Of<TTile>());
        kernel(accelerator.DefaultStream, Gemm.TiledConfig(default(TTile), shape),
            new FloatSource(da.View, dbBits.View, NarrowFloat.Float32Code), new FloatSource(db.View, dbBits.View, code),
            dc.View, new GemmArguments(shape, alpha, beta));
        accelerator.Synchronize();
        return dc.GetAsArray1D();
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        if (cpu.IsValueCreated)
        {
            cpu.Value.Accelerator.Dispose();
            cpu.Value.Context.Dispose();
        }
    }
}

public sealed class GemmReferenceTests
{
    [Fact]
    public void Reference_multiplies_a_known_product_in_every_storage_layout()
    {
        // [[1, 2], [3, 4]]·[[5, 6], [7, 8]] = [[19, 22], [43, 50]]; the transposed storages hold the same matrices.
        float[] a = [1, 2, 3, 4], at = [1, 3, 2, 4], b = [5, 6, 7, 8], bt = [5, 7, 6, 8];
        double[] expected = [19, 22, 43, 50];
        Assert.Equal(expected, GemmReference.Forward(new GemmShape(1, 2, 2, 2), a, b));
        Assert.Equal(expected, GemmReference.Forward(new GemmShape(1, 2, 2, 2, TransposeA: true), at, b));
        Assert.Equal(expected, GemmReference.Forward(new GemmShape(1, 2, 2, 2, TransposeB: true), a, bt));
        Assert.Equal(expected, GemmReference.Forward(new GemmShape(1, 2, 2, 2, true, true), at, bt));
        Assert.Equal([2 * 19 + 1, 2 * 22 - 1, 2 * 43 + 1, 2 * 50 - 1],
            GemmReference.Forward(new GemmShape(1, 2, 2, 2), a, b, alpha: 2, beta: 1, c: [1, -1, 1, -1]));
    }

    [Theory]
    [InlineData(false, false, false)]
    [InlineData(true, false, false)]
    [InlineData(false, true, true)]
    [InlineData(true, true, true)]
    public void Reference_gradient_agrees_with_finite_differences(bool transposeA, bool transposeB, bool broadcastB)
    {
        // loss = Σ dC ⊙ C is linear in each operand, so a central difference is exact up to rounding; the step is
        // divided by the perturbation float storage actually made.
        var shape = new GemmShape(2, 3, 4, 5, transposeA, transposeB, BroadcastB: broadcastB);
        var a = Numerics.Uniform(30, shape.ElementsA);
        var b = Numerics.Uniform(31, shape.ElementsB);
        var dC = Numerics.Uniform(32, shape.ElementsC);
        const double alpha = 1.5;
        var (da, db) = GemmReference.Backward(shape, a, b, dC, alpha);

        double Loss(float[] x, float[] y) =>
            GemmReference.Forward(shape, x, y, alpha).Select((v, i) => v * dC[i]).Sum();
        double Difference(float[] values, int i, Func<float[], double> loss)
        {
            var original = values[i];
            values[i] = original + 0.25f;
            var up = values[i];
            var lossUp = loss(values);
            values[i] = original - 0.25f;
            var down = values[i];
            var lossDown = loss(values);
            values[i] = original;
            return (lossUp - lossDown) / ((double)up - down);
        }

        for (var i = 0; i < a.Length; i++)
            Assert.Equal(Difference(a, i, x => Loss(x, b)), da[i], 1e-9);
        for (var i = 0; i < b.Length; i++)
            Assert.Equal(Difference(b, i, y => Loss(a, y)), db[i], 1e-9);
    }

    [Fact]
    public void Reference_rejects_arrays_of_the_wrong_length()
    {
        var error = Assert.Throws<ArgumentException>(
            () => GemmReference.Forward(new GemmShape(1, 2, 2, 3), new float[6], new float[5]));
        Assert.Equal("b", error.ParamName);
    }
}

[Collection(DeviceCollection.Name)]
public sealed class GemmBenchmarkTests(DeviceFixture fixture)
{
    private readonly RetNetDevice device = fixture.Device;

    [Fact]
    public void Benchmark_reports_every_implementation_with_positive_times()
    {
        var results = GemmBenchmark.Run(device, [(16, 8, 12)], warmup: 1, repetitions: 3);

        string[] expected = device.IsCpuSimulator
            ? [GemmBenchmark.Tiled, GemmBenchmark.Simple, GemmBenchmark.HostSimd, GemmBenchmark.CSharpReference]
            : [GemmBenchmark.Tiled, GemmBenchmark.Simple, GemmBenchmark.CSharpReference];
        Assert.Equal(expected, results.Select(r => r.Implementation));
        Assert.All(results, r =>
        {
            Assert.Equal((16, 8, 12), (r.M, r.N, r.K));
            Assert.True(r.MedianMs > 0, $"{r.Implementation}: {r.MedianMs} ms");
            Assert.True(double.IsFinite(r.GFlops) && r.GFlops > 0, $"{r.Implementation}: {r.GFlops} GFLOP/s");
        });
        Assert.NotEmpty(GemmBenchmark.DefaultShapes(device));
    }
}
