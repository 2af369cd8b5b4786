using RetNet.Ilgpu.Devices;
using RetNet.Ilgpu.Kernels;
using RetNet.Ilgpu.Kernels.Gemm;
using RetNet.Ilgpu.Tests.Support;
using RetNet.Ilgpu.Verification.Cases;
using Xunit.Abstractions;

namespace RetNet.Ilgpu.Tests.Kernels;

/// <summary>
/// The small-row GEMM (a decoding step's Linear layers: at most 8 rows against a weight stored [N, K]) against the
/// float64 reference, at every reduction and group size the policy can launch it with, and the rule that routes
/// such products to it.
/// </summary>
[Collection(DeviceCollection.Name)]
public sealed class GemmSmallRowsTests(DeviceFixture fixture, ITestOutputHelper output)
{
    private readonly RetNetDevice device = fixture.Device;

    /// <summary>
    /// Every launch the policy can pick on this lane's device: the tree and (where the device has sub-group
    /// operations) the sub-group sum, at one thread, the device's smallest sub-group launch and every power of two up
    /// to 256 within its group limit.
    /// </summary>
    private IEnumerable<SmallRowsLaunch> Launches()
    {
        var policy = device.Policy;
        for (var size = 1; size <= Math.Min(DevicePolicy.PreferredReductionGroup, device.MaxGroupSize); size *= 4)
        {
            yield return new(GroupReduction.SharedMemoryTree, size);
            if (policy.SupportsSubGroups && size % policy.SubGroupGranularity == 0)
                yield return new(GroupReduction.SubGroups, size);
        }
        yield return SmallRowsLaunch.For(device, int.MaxValue);
    }

    // Rows 1..8 (every register of the kernel), K = 37 (not a multiple of any group).
    [Fact]
    public void Every_row_count_and_launch_matches_the_reference()
    {
        foreach (var launch in Launches().Distinct())
        {
            for (var m = 1; m <= GemmKernels.MaxSmallRows; m++)
                AssertMatches(new GemmCase(1, m, 5, 37, false, false), launch, seed: m);
        }
    }

    [Fact]
    public void Edge_shapes_match_the_reference()
    {
        var launch = SmallRowsLaunch.For(device, 300);
        AssertMatches(new GemmCase(1, 3, 4, 1, false, false), launch, seed: 11);
        AssertMatches(new GemmCase(1, 2, 1, 300, false, false), launch, seed: 12);
        AssertMatches(new GemmCase(1, 1, 1025, 20, false, false), launch, seed: 13);
        AssertMatches(new GemmCase(1, 8, 3, 513, false, false), launch, seed: 14);
    }

    [Fact]
    public void Alpha_and_beta_apply_and_beta_zero_ignores_nan_in_c()
    {
        foreach (var launch in Launches().Distinct())
        {
            AssertMatches(new GemmCase(1, 4, 6, 29, false, false, Alpha: -0.75f, Beta: 0.5f), launch, seed: 21);
            AssertMatches(new GemmCase(1, 3, 6, 29, false, false, Alpha: 0f, Beta: -2f), launch, seed: 22);
            // Beta 0: C starts as NaN (GemmCase.Inputs), which must not reach the result.
            AssertMatches(new GemmCase(1, 5, 6, 29, false, false, Alpha: 2f), launch, seed: 23);
        }
    }

    [Fact]
    public void Batches_fold_against_a_broadcast_weight_and_stride_otherwise()
    {
        var launch = SmallRowsLaunch.For(device, 40);
        // 4 × 2 rows against one weight: one 8-row product.
        AssertMatches(new GemmCase(4, 2, 9, 40, BatchedA: true, BatchedB: false), launch, seed: 31);
        // 3 × 3 rows do not fold into 8: a batch of 3-row products over the same weight.
        AssertMatches(new GemmCase(3, 3, 9, 40, BatchedA: true, BatchedB: false, Beta: 1f), launch, seed: 32);
        AssertMatches(new GemmCase(2, 5, 7, 40, BatchedA: true, BatchedB: true), launch, seed: 33);
        AssertMatches(new GemmCase(3, 2, 7, 40, BatchedA: false, BatchedB: true), launch, seed: 34);
    }

    [Theory]
    [InlineData(TensorDType.Float32, TensorDType.BFloat16)]
    [InlineData(TensorDType.Float32, TensorDType.Float16)]
    [InlineData(TensorDType.BFloat16, TensorDType.BFloat16)]
    [InlineData(TensorDType.Float16, TensorDType.Float32)]
    public void Sixteen_bit_operands_are_read_as_their_exact_values(TensorDType aType, TensorDType bType)
    {
        foreach (var launch in Launches().Distinct())
        {
            var (actual, expected, _) = RunNarrow(new GemmCase(2, 3, 11, 45, true, false), launch, aType, bType);
            Numerics.AssertClose($"{launch} A {aType} B {bType}", actual, expected);
        }
    }

    [Fact]
    public void Check_rejects_a_dropped_last_k_shifted_rows_and_unrounded_weights()
    {
        var launch = SmallRowsLaunch.For(device, 45);
        var problem = new GemmCase(1, 4, 11, 45, false, false);
        var shape = problem.Shape(false, true);
        var (a, b, c) = problem.Inputs(shape, 41);
        var actual = Run(problem, launch, a, b, c);
        Numerics.AssertClose("small rows", actual, GemmReference.Forward(shape, a, b));

        // The reference without the last k: a kernel that stopped one step short of a ragged K.
        var shortA = (float[])a.Clone();
        for (var m = 0; m < problem.M; m++)
            shortA[m * problem.K + problem.K - 1] = 0f;
        AssertRejected(Numerics.Check("last k dropped", actual, GemmReference.Forward(shape, shortA, b)));

        // Rows shifted by one: a kernel that wrote row m's sum to row m + 1.
        var expected = GemmReference.Forward(shape, a, b);
        var shifted = new double[expected.Length];
        for (var i = 0; i < expected.Length; i++)
            shifted[i] = expected[(i + problem.N) % expected.Length];
        AssertRejected(Numerics.Check("rows shifted", actual, shifted));

        // A bf16 weight against the product of the fp32 values before they were rounded to bf16.
        var (narrow, _, unrounded) = RunNarrow(problem, launch, TensorDType.Float32, TensorDType.BFloat16);
        AssertRejected(Numerics.Check("unrounded fp32 weights", narrow, unrounded));
    }

    [Fact]
    public void Launches_the_device_cannot_run_and_too_many_rows_are_refused()
    {
        using var a = Tensor.Zeros(device, 9, 4);
        using var b = Tensor.Zeros(device, 3, 4);
        using var c = Tensor.Zeros(device, 9, 3);
        Assert.Throws<NotSupportedException>(() =>
            Gemm.RunSmallRows(a, b, c, SmallRowsLaunch.For(device, 4), transposeB: true));
        using var a8 = Tensor.Zeros(device, 8, 4);
        using var c8 = Tensor.Zeros(device, 8, 3);
        Assert.Throws<ArgumentOutOfRangeException>(() =>
            Gemm.RunSmallRows(a8, b, c8, new SmallRowsLaunch(GroupReduction.SharedMemoryTree, 3), transposeB: true));
        Assert.Throws<ArgumentOutOfRangeException>(() => Gemm.RunSmallRows(a8, b, c8,
            new SmallRowsLaunch(GroupReduction.SharedMemoryTree, 2 * device.MaxGroupSize), transposeB: true));
    }

    [Fact]
    public void Policy_uses_the_kernel_off_the_cpu_accelerator_with_groups_sized_to_k()
    {
        var pocl = new LaunchLimits(DeviceClass.OtherOpenCL, 4096, 4096, SupportsSubGroups: true, IsOpenClCpu: true);
        var cpu = new LaunchLimits(DeviceClass.CpuAccelerator, 16, 4, SupportsSubGroups: true, IsOpenClCpu: false);
        Assert.True(DevicePolicy.UsesSmallRowGemmFor(LaunchLimits.NvidiaGpu));
        Assert.True(DevicePolicy.UsesSmallRowGemmFor(pocl));
        Assert.False(DevicePolicy.UsesSmallRowGemmFor(cpu));
        Assert.Equal(new SmallRowsLaunch(GroupReduction.SubGroups, 256), SmallRowsLaunch.For(LaunchLimits.NvidiaGpu, 4096));
        // A short K gets a smaller group, still whole warps for the sub-group sum.
        Assert.Equal(new SmallRowsLaunch(GroupReduction.SubGroups, 32), SmallRowsLaunch.For(LaunchLimits.NvidiaGpu, 20));
        Assert.Equal(new SmallRowsLaunch(GroupReduction.SharedMemoryTree, DevicePolicy.PreferredOpenClCpuSmallRowGroup),
            SmallRowsLaunch.For(pocl, 1024));
    }

    [Fact]
    public void Auto_routes_small_transposed_products_to_the_kernel_where_the_policy_says_so()
    {
        var smallRows = device.Policy.Reduction == GroupReduction.SubGroups
            ? typeof(GemmKernels).GetMethod(nameof(GemmKernels.SmallRows))!.MakeGenericMethod(typeof(SubGroupSum))
            : typeof(GemmKernels).GetMethod(nameof(GemmKernels.SmallRows))!.MakeGenericMethod(typeof(TreeGroupSum));
        bool Launched(int rows, int batch, bool transposeB)
        {
            using var a = Tensor.Zeros(device, batch, rows, 16);
            using var b = transposeB ? Tensor.Zeros(device, 5, 16) : Tensor.Zeros(device, 16, 5);
            using var c = Tensor.Zeros(device, batch, rows, 5);
            var previous = device.KernelRecorder;
            var launched = new HashSet<System.Reflection.MethodInfo>();
            device.KernelRecorder = launched;
            try
            {
                Gemm.Run(a, b, c, transposeB: transposeB);
                device.Synchronize();
            }
            finally
            {
                device.KernelRecorder = previous;
            }
            output.WriteLine($"{batch}×{rows} rows, Bᵀ {transposeB}: {string.Join(", ", launched.Select(k => k.Name))}");
            return launched.Contains(smallRows);
        }

        var expected = DevicePolicy.UsesSmallRowGemmFor(device.Limits);
        Assert.Equal(expected, Launched(1, 1, transposeB: true));
        Assert.Equal(expected, Launched(8, 1, transposeB: true));
        Assert.Equal(expected, Launched(2, 4, transposeB: true));
        Assert.False(Launched(9, 1, transposeB: true));
        Assert.False(Launched(1, 1, transposeB: false));
    }

    private void AssertMatches(GemmCase problem, SmallRowsLaunch launch, int seed)
    {
        var shape = problem.Shape(false, true);
        var (a, b, c) = problem.Inputs(shape, seed);
        var actual = Run(problem, launch, a, b, c);
        Numerics.AssertClose($"{launch} {shape} alpha={problem.Alpha} beta={problem.Beta}", actual,
            GemmReference.Forward(shape, a, b, problem.Alpha, problem.Beta, c));
    }

    private float[] Run(GemmCase problem, SmallRowsLaunch launch, float[] a, float[] b, float[] c)
    {
        var shape = problem.Shape(false, true);
        var (dimsA, dimsB, dimsC) = problem.Dims(shape);
        using var ta = Tensor.FromHost(device, a, dimsA);
        using var tb = Tensor.FromHost(device, b, dimsB);
        using var tc = Tensor.FromHost(device, c, dimsC);
        Gemm.RunSmallRows(ta, tb, tc, launch, transposeB: true, alpha: problem.Alpha, beta: problem.Beta);
        return tc.ToHost();
    }

    // The product with 16-bit operands, the reference on the values they store, and the reference on the fp32 values
    // before rounding.
    private (float[] Actual, double[] Expected, double[] Unrounded) RunNarrow(GemmCase problem, SmallRowsLaunch launch,
        TensorDType aType, TensorDType bType)
    {
        var shape = problem.Shape(false, true);
        var (dimsA, dimsB, dimsC) = problem.Dims(shape);
        var (a, b, c) = problem.Inputs(shape, 51);
        var storedA = a.Select(v => TensorDTypes.Round(v, aType)).ToArray();
        var storedB = b.Select(v => TensorDTypes.Round(v, bType)).ToArray();
        using var ta = Tensor.FromHost(device, a, aType, dimsA);
        using var tb = Tensor.FromHost(device, b, bType, dimsB);
        using var tc = Tensor.FromHost(device, c, dimsC);
        Gemm.RunSmallRows(ta, tb, tc, launch, transposeB: true, alpha: problem.Alpha, beta: problem.Beta);
        return (tc.ToHost(), GemmReference.Forward(shape, storedA, storedB, problem.Alpha, problem.Beta, c),
            GemmReference.Forward(shape, storedA, b, problem.Alpha, problem.Beta, c));
    }

    private void AssertRejected(Closeness check)
    {
        output.WriteLine(check.Message);
        Numerics.AssertRejected(check);
    }
}
