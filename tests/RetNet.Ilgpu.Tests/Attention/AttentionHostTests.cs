using RetNet.Ilgpu.Attention;
using RetNet.Ilgpu.Kernels.Gemm;
using RetNet.Ilgpu.Tests.Support;
using Xunit.Abstractions;

namespace RetNet.Ilgpu.Tests.Attention;

/// <summary>
/// The host SIMD attention code (<see cref="AttentionLaunch.Host"/>) on every instruction-set path and thread count,
/// against the double reference. It runs only on the CPU accelerator in host execution; on another lane, or in the
/// simulator execution, these tests open one, so every lane holds the host code to the same checks. Sizes cut its
/// 96-row query and key blocks and the micro-kernel's 6-row, 8/16/32-column register tiles.
/// </summary>
[Collection(DeviceCollection.Name)]
public sealed class AttentionHostTests(DeviceFixture fixture, HostCpu hostCpu, ITestOutputHelper log)
    : IClassFixture<HostCpu>
{
    private readonly RetNetDevice device = fixture.Device;

    private RetNetDevice Cpu => hostCpu.WithHostExecution(device);

    // T = 1; Dk ≠ Dv, head sizes 3, 17, 33 and 70 (none a multiple of 8 or 16); T = 100 and 200, one and two key
    // blocks past the first, the last one ragged; B > 1 and H > 1.
    private static readonly AttentionShape[] OddShapes =
    [
        new(1, 1, 1, 1, 1),
        new(2, 7, 3, 3, 17),
        new(1, 37, 2, 17, 33),
        new(1, 100, 1, 33, 3),
        new(2, 200, 2, 70, 16),
    ];

    // Paths travel as names: the enum is internal to the library and theory methods are public.
    public static TheoryData<string, int> PathsAndThreads => new()
    {
        { nameof(HostGemmPath.Auto), 2 },
        { nameof(HostGemmPath.Vector512), 3 },
        { nameof(HostGemmPath.Vector256), 2 },
        { nameof(HostGemmPath.Scalar), 1 },
    };

    [Theory, MemberData(nameof(PathsAndThreads))]
    public void Every_path_matches_the_reference_on_odd_sizes(string pathName, int threads)
    {
        var launch = AttentionLaunch.HostWith(Enum.Parse<HostGemmPath>(pathName), threads);
        log.WriteLine($"fastest host path here: {HostGemm.Best}; testing {launch}");
        for (var i = 0; i < OddShapes.Length; i++)
        {
            using var test = new AttentionTestCase(Cpu, OddShapes[i], 3000 + 10 * i);
            using var output = test.NewOutput();
            using var logSumExp = test.NewLogSumExp();
            using var gradients = test.NewGradients();
            CausalAttention.Forward(test.QueryTensor, test.KeyTensor, test.ValueTensor, test.Scale, output, logSumExp,
                launch);
            test.AssertForward($"forward, {launch}, {test}", output, logSumExp);
            CausalAttention.Backward(test.QueryTensor, test.KeyTensor, test.ValueTensor, test.Scale, output, logSumExp,
                test.OutputGradientTensor, gradients.Dq, gradients.Dk, gradients.Dv, launch);
            test.AssertBackward($"backward, {launch}, {test}", gradients);
        }
    }

    [Fact]
    public void Results_are_bit_identical_across_paths_thread_counts_and_runs()
    {
        // Items are fixed blocks of query or key rows, each summed by one thread in one order; every path takes the
        // same fused multiply-adds and the same exponentials: neither the instruction set nor the schedule may change
        // a bit.
        var shape = new AttentionShape(2, 200, 3, 33, 17);
        using var test = new AttentionTestCase(Cpu, shape, 3100);
        var first = Everything(test, AttentionLaunch.HostWith(HostGemmPath.Scalar, 1));
        foreach (var (path, threads) in new[]
                 {
                     (HostGemmPath.Scalar, 1), (HostGemmPath.Vector256, 1), (HostGemmPath.Vector256, 2),
                     (HostGemmPath.Vector512, 3), (HostGemmPath.Vector512, 7), (HostGemmPath.Auto, 16),
                 })
        {
            var again = Everything(test, AttentionLaunch.HostWith(path, threads));
            for (var i = 0; i < first.Length; i++)
                Assert.Equal(Bits(first[i]), Bits(again[i]));
        }
    }

    [Fact]
    public void Large_logits_across_key_blocks_stay_finite_and_match_the_reference()
    {
        // s = 30 gives logits of several hundred; with T = 200 the running maximum of most rows grows from one key
        // block to the next, so the accumulated output is rescaled by exp(m_old − m_new) on the host path as well.
        using var test = new AttentionTestCase(Cpu, new AttentionShape(1, 200, 2, 17, 5), 3200, scale: 30f);
        Assert.True(test.Reference.LogSumExp.Max() > 100, "the logits are not large enough to overflow exp");
        using var output = test.NewOutput();
        using var logSumExp = test.NewLogSumExp();
        using var gradients = test.NewGradients();
        CausalAttention.Forward(test.QueryTensor, test.KeyTensor, test.ValueTensor, test.Scale, output, logSumExp,
            AttentionLaunch.Host);
        Assert.All(output.ToHost(), x => Assert.True(float.IsFinite(x)));
        Assert.All(logSumExp.ToHost(), x => Assert.True(float.IsFinite(x)));
        test.AssertForward("s = 30, host SIMD", output, logSumExp);
        CausalAttention.Backward(test.QueryTensor, test.KeyTensor, test.ValueTensor, test.Scale, output, logSumExp,
            test.OutputGradientTensor, gradients.Dq, gradients.Dk, gradients.Dv, AttentionLaunch.Host);
        test.AssertBackward("s = 30, host SIMD", gradients);
    }

    [Fact]
    public void Host_launch_is_refused_on_a_device_that_does_not_run_on_the_host()
    {
        // The test device itself when it does not run on the host (a GPU, or the CPU accelerator's simulator), else
        // the CPU accelerator opened in its simulator execution.
        using var simulator = device.RunsOnHost ? RetNetDevice.Open(DeviceKind.Cpu, CpuExecution.Simulator) : null;
        var other = simulator ?? device;
        Assert.False(other.RunsOnHost);
        using var test = new AttentionTestCase(other, new AttentionShape(1, 4, 1, 2, 2), 3300);
        using var output = test.NewOutput();
        using var logSumExp = test.NewLogSumExp();
        using var gradients = test.NewGradients();
        var error = Assert.Throws<NotSupportedException>(() => CausalAttention.Forward(test.QueryTensor,
            test.KeyTensor, test.ValueTensor, test.Scale, output, logSumExp, AttentionLaunch.Host));
        Assert.Contains("host execution", error.Message);
        CausalAttention.Forward(test.QueryTensor, test.KeyTensor, test.ValueTensor, test.Scale, output, logSumExp);
        Assert.Throws<NotSupportedException>(() => CausalAttention.Backward(test.QueryTensor, test.KeyTensor,
            test.ValueTensor, test.Scale, output, logSumExp, test.OutputGradientTensor, gradients.Dq, gradients.Dk,
            gradients.Dv, AttentionLaunch.Host));
    }

    [Fact]
    public void Check_rejects_a_mask_one_position_off()
    {
        // Letting each query see the next key as well changes every row but the last: the host result passes the
        // causal reference, and the same result must fail against the off-by-one reference, forward and backward.
        var shape = new AttentionShape(1, 200, 2, 16, 16);
        using var test = new AttentionTestCase(Cpu, shape, 3400);
        using var output = test.NewOutput();
        using var logSumExp = test.NewLogSumExp();
        using var gradients = test.NewGradients();
        CausalAttention.Forward(test.QueryTensor, test.KeyTensor, test.ValueTensor, test.Scale, output, logSumExp,
            AttentionLaunch.Host);
        CausalAttention.Backward(test.QueryTensor, test.KeyTensor, test.ValueTensor, test.Scale, output, logSumExp,
            test.OutputGradientTensor, gradients.Dq, gradients.Dk, gradients.Dv, AttentionLaunch.Host);
        test.AssertForward("host SIMD", output, logSumExp);
        test.AssertBackward("host SIMD", gradients);

        Func<int, int, bool> oneTooFar = (i, j) => j <= i + 1;
        var wrong = AttentionReference.Forward(shape, test.Scale, test.Q, test.K, test.V, oneTooFar);
        Rejected(test.CheckOutput("mask one position off", output.ToHost(), wrong.Output));
        var wrongGradients = AttentionReference.Backward(shape, test.Scale, test.Q, test.K, test.V,
            test.OutputGradient, oneTooFar);
        foreach (var check in test.CheckBackward("mask one position off", gradients.Dq.ToHost(),
                     gradients.Dk.ToHost(), gradients.Dv.ToHost(), wrongGradients))
            Rejected(check);
        test.AssertZerosAreRejected("host SIMD");
    }

    /// <summary>Forward and backward with one launch: o, L, dq, dk, dv.</summary>
    private static float[][] Everything(AttentionTestCase test, AttentionLaunch launch)
    {
        using var output = test.NewOutput();
        using var logSumExp = test.NewLogSumExp();
        using var gradients = test.NewGradients();
        CausalAttention.Forward(test.QueryTensor, test.KeyTensor, test.ValueTensor, test.Scale, output, logSumExp,
            launch);
        CausalAttention.Backward(test.QueryTensor, test.KeyTensor, test.ValueTensor, test.Scale, output, logSumExp,
            test.OutputGradientTensor, gradients.Dq, gradients.Dk, gradients.Dv, launch);
        return
        [
            output.ToHost(), logSumExp.ToHost(), gradients.Dq.ToHost(), gradients.Dk.ToHost(), gradients.Dv.ToHost(),
        ];
    }

    private void Rejected(Closeness check)
    {
        log.WriteLine(check.Message);
        Numerics.AssertRejected(check);
    }

    private static int[] Bits(float[] values) => values.Select(BitConverter.SingleToInt32Bits).ToArray();
}
