using RetNet.Ilgpu.Attention;
using RetNet.Ilgpu.Tests.Support;
using Xunit.Abstractions;

namespace RetNet.Ilgpu.Tests.Attention;

/// <summary>
/// Causal attention at every kernel configuration the library can launch (barrier-free; each tile at the device's
/// group size and at 7 threads; host SIMD code when the device runs on the host) against the double reference, forward
/// and backward. Shapes are small enough for the
/// CPU accelerator's barriers yet cover T = 1, several query and key tiles of both tiles with ragged last tiles,
/// Dk ≠ Dv, odd head dimensions that leave partial depth slices and column tiles, B > 1 and H > 1.
/// </summary>
[Collection(DeviceCollection.Name)]
public sealed class AttentionFormTests(DeviceFixture fixture, ITestOutputHelper log)
{
    private readonly RetNetDevice device = fixture.Device;

    private static readonly AttentionShape[] Shapes =
    [
        new(1, 1, 1, 1, 1),
        new(2, 7, 3, 5, 4),
        new(1, 37, 2, 17, 3),
        new(1, 70, 1, 33, 70),
    ];

    // Theory data is fixed at discovery, before the fixture opens the device: the count comes from a device opened
    // the same way (RETNET_DEVICE, RETNET_CPU_EXECUTION) and closed again.
    private static readonly Lazy<int> ConfigurationCount = new(() =>
    {
        using var probe = RetNetDevice.Open(DeviceKind.Auto);
        return AttentionLaunch.Configurations(probe).Count;
    });

    public static TheoryData<int, int> ConfigurationsAndShapes
    {
        get
        {
            var data = new TheoryData<int, int>();
            for (var c = 0; c < ConfigurationCount.Value; c++)
            for (var s = 0; s < Shapes.Length; s++)
                data.Add(c, s);
            return data;
        }
    }

    public static TheoryData<int> Configurations => new(Enumerable.Range(0, ConfigurationCount.Value));

    // One thread, a count that divides nothing evenly, and more threads than any problem below has items.
    public static TheoryData<int> ForcedThreads => [1, 3, 70_001];

    private AttentionLaunch Configuration(int index) => AttentionLaunch.Configurations(device)[index];

    [Theory, MemberData(nameof(ConfigurationsAndShapes))]
    public void Forward_matches_the_reference(int configuration, int shape)
    {
        var launch = Configuration(configuration);
        using var test = new AttentionTestCase(device, Shapes[shape], 100 + shape);
        using var output = test.NewOutput();
        using var logSumExp = test.NewLogSumExp();
        CausalAttention.Forward(test.QueryTensor, test.KeyTensor, test.ValueTensor, test.Scale, output, logSumExp,
            launch);
        test.AssertForward($"forward, {launch}, {test}", output, logSumExp);
        // Without the log-sum-exp the output is the same.
        using var alone = test.NewOutput();
        CausalAttention.Forward(test.QueryTensor, test.KeyTensor, test.ValueTensor, test.Scale, alone, null, launch);
        Assert.Equal(output.ToHost(), alone.ToHost());
    }

    [Theory, MemberData(nameof(ConfigurationsAndShapes))]
    public void Backward_matches_the_reference(int configuration, int shape)
    {
        var launch = Configuration(configuration);
        using var test = new AttentionTestCase(device, Shapes[shape], 200 + shape);
        using var output = test.NewOutput();
        using var logSumExp = test.NewLogSumExp();
        using var gradients = test.NewGradients();
        CausalAttention.Forward(test.QueryTensor, test.KeyTensor, test.ValueTensor, test.Scale, output, logSumExp,
            launch);
        CausalAttention.Backward(test.QueryTensor, test.KeyTensor, test.ValueTensor, test.Scale, output, logSumExp,
            test.OutputGradientTensor, gradients.Dq, gradients.Dk, gradients.Dv, launch);
        test.AssertBackward($"backward, {launch}, {test}", gradients);

        // Overwritten, not accumulated: a second call gives the same gradients.
        var first = gradients.Dq.ToHost();
        CausalAttention.Backward(test.QueryTensor, test.KeyTensor, test.ValueTensor, test.Scale, output, logSumExp,
            test.OutputGradientTensor, gradients.Dq, gradients.Dk, gradients.Dv, launch);
        Assert.Equal(first, gradients.Dq.ToHost());
    }

    [Fact]
    public void Reference_gradients_equal_central_differences_of_the_reference()
    {
        // loss = Σ dO ⊙ o, so ∂loss/∂x is the reference backward; the secant over the float-rounded x ± h is exact up
        // to O(h²) and double rounding.
        var shape = new AttentionShape(2, 6, 2, 3, 5);
        using var test = new AttentionTestCase(device, shape, 300);
        var gradients = test.ReferenceGradients;
        foreach (var (name, inputs, expected) in new[]
                 {
                     ("q", test.Q, gradients.QueryGradient), ("k", test.K, gradients.KeyGradient),
                     ("v", test.V, gradients.ValueGradient),
                 })
        {
            var indices = new[] { 0, inputs.Length / 3, inputs.Length / 2 + 1, inputs.Length - 1 };
            var numeric = new double[indices.Length];
            var analytic = new float[indices.Length];
            for (var n = 0; n < indices.Length; n++)
            {
                var i = indices[n];
                var x = inputs[i];
                var (up, down) = (x + 1e-3f, x - 1e-3f);
                inputs[i] = up;
                var lossUp = Loss();
                inputs[i] = down;
                var lossDown = Loss();
                inputs[i] = x;
                numeric[n] = (lossUp - lossDown) / ((double)up - down);
                analytic[n] = (float)expected[i];
            }
            // The analytic values rounded to float carry 6e-8 relative; the secant's O(h²) is ~1e-7 here.
            Numerics.AssertClose($"d{name}: reference backward against central differences", analytic, numeric, 1e-5,
                floor: expected.Max(Math.Abs));
        }

        double Loss()
        {
            var output = AttentionReference.Forward(shape, test.Scale, test.Q, test.K, test.V).Output;
            var sum = 0.0;
            for (var i = 0; i < output.Length; i++)
                sum += output[i] * test.OutputGradient[i];
            return sum;
        }
    }

    [Theory, MemberData(nameof(Configurations))]
    public void Large_logits_stay_finite_and_match_the_reference(int configuration)
    {
        // s = 30 gives logits of several hundred: exp of them overflows fp32 unless the running maximum comes first.
        var launch = Configuration(configuration);
        using var test = new AttentionTestCase(device, new AttentionShape(1, 20, 2, 17, 5), 400, scale: 30f);
        Assert.True(test.Reference.LogSumExp.Max() > 100, "the logits are not large enough to overflow exp");
        using var output = test.NewOutput();
        using var logSumExp = test.NewLogSumExp();
        using var gradients = test.NewGradients();
        CausalAttention.Forward(test.QueryTensor, test.KeyTensor, test.ValueTensor, test.Scale, output, logSumExp,
            launch);
        Assert.All(output.ToHost(), x => Assert.True(float.IsFinite(x)));
        test.AssertForward($"s = 30, {launch}", output, logSumExp);
        CausalAttention.Backward(test.QueryTensor, test.KeyTensor, test.ValueTensor, test.Scale, output, logSumExp,
            test.OutputGradientTensor, gradients.Dq, gradients.Dk, gradients.Dv, launch);
        test.AssertBackward($"s = 30, {launch}", gradients);
    }

    [Theory, MemberData(nameof(ForcedThreads))]
    public void Barrier_free_kernels_give_the_same_bits_for_any_thread_count(int threads)
    {
        using var test = new AttentionTestCase(device, new AttentionShape(2, 19, 3, 6, 5), 500);
        var expected = Run();

        device.ForcedLaunchThreads = threads;
        float[][] actual;
        try
        {
            actual = Run();
        }
        finally
        {
            device.ForcedLaunchThreads = null;
        }

        for (var i = 0; i < expected.Length; i++)
            Assert.Equal(expected[i], actual[i]);

        float[][] Run()
        {
            var s = test.Shape;
            using var output = test.NewOutput();
            using var logSumExp = test.NewLogSumExp();
            using var gradients = test.NewGradients();
            using var keyCache = Tensor.Zeros(device, s.Batch, s.Heads, s.SeqLen, s.KeyDim);
            using var valueCache = Tensor.Zeros(device, s.Batch, s.Heads, s.SeqLen, s.ValueDim);
            using var step = Tensor.Zeros(device, s.Batch, 1, s.Heads, s.ValueDim);
            using var q = Tensor.FromHost(device, AttentionTokens.Slice(test.Q, s, s.KeyDim, s.SeqLen - 1, 1),
                s.Batch, 1, s.Heads, s.KeyDim);
            CausalAttention.Forward(test.QueryTensor, test.KeyTensor, test.ValueTensor, test.Scale, output, logSumExp,
                AttentionLaunch.BarrierFree);
            CausalAttention.Backward(test.QueryTensor, test.KeyTensor, test.ValueTensor, test.Scale, output,
                logSumExp, test.OutputGradientTensor, gradients.Dq, gradients.Dk, gradients.Dv,
                AttentionLaunch.BarrierFree);
            CausalAttention.AppendToCache(test.KeyTensor, keyCache, [0, 0]);
            CausalAttention.AppendToCache(test.ValueTensor, valueCache, [0, 0]);
            CausalAttention.Step(q, keyCache, valueCache, [s.SeqLen, s.SeqLen - 5], test.Scale, step);
            return
            [
                output.ToHost(), logSumExp.ToHost(), gradients.Dq.ToHost(), gradients.Dk.ToHost(),
                gradients.Dv.ToHost(), keyCache.ToHost(), valueCache.ToHost(), step.ToHost(),
            ];
        }
    }

    [Fact]
    public void Forward_and_backward_allocate_far_less_than_a_T_by_T_buffer()
    {
        var shape = new AttentionShape(1, 256, 1, 4, 4);
        using var test = new AttentionTestCase(device, shape, 600);
        using var output = test.NewOutput();
        using var logSumExp = test.NewLogSumExp();
        using var gradients = test.NewGradients();
        var before = device.Memory.CurrentBytes;
        device.Memory.ResetPeak();
        CausalAttention.Forward(test.QueryTensor, test.KeyTensor, test.ValueTensor, test.Scale, output, logSumExp);
        CausalAttention.Backward(test.QueryTensor, test.KeyTensor, test.ValueTensor, test.Scale, output, logSumExp,
            test.OutputGradientTensor, gradients.Dq, gradients.Dk, gradients.Dv);
        Assert.True(device.Memory.PeakBytes - before < 256L * 256 * 4 / 50,
            $"attention allocated {device.Memory.PeakBytes - before} bytes");
        Assert.Equal(before, device.Memory.CurrentBytes);
        test.AssertForward("default launch", output, logSumExp);
        test.AssertBackward("default launch", gradients);
    }

    // Negative controls: results that are wrong in ways a vacuous or too-loose check would miss, each of which the
    // project's check must reject. Each logs the rejection (difference against bound).

    [Theory, MemberData(nameof(Configurations))]
    public void Check_rejects_future_keys_and_a_mask_off_by_one(int configuration)
    {
        var launch = Configuration(configuration);
        using var test = new AttentionTestCase(device, Shapes[2], 700);
        var s = test.Shape;
        using var output = test.NewOutput();
        using var logSumExp = test.NewLogSumExp();
        using var gradients = test.NewGradients();
        CausalAttention.Forward(test.QueryTensor, test.KeyTensor, test.ValueTensor, test.Scale, output, logSumExp,
            launch);
        CausalAttention.Backward(test.QueryTensor, test.KeyTensor, test.ValueTensor, test.Scale, output, logSumExp,
            test.OutputGradientTensor, gradients.Dq, gradients.Dk, gradients.Dv, launch);
        test.AssertForward($"{launch}", output, logSumExp);

        Func<int, int, bool> everyKey = (_, _) => true;
        Func<int, int, bool> oneTooFar = (i, j) => j <= i + 1;
        foreach (var (name, mask) in new[] { ("non-causal mask", everyKey), ("mask off by one", oneTooFar) })
        {
            var wrong = AttentionReference.Forward(s, test.Scale, test.Q, test.K, test.V, mask);
            Rejected(test.CheckOutput($"{name}, {launch}", output.ToHost(), wrong.Output));
            var wrongGradients = AttentionReference.Backward(s, test.Scale, test.Q, test.K, test.V,
                test.OutputGradient, mask);
            // dv of the last key, for one, is P·dO of the queries that see it: a leak changes every gradient.
            foreach (var check in test.CheckBackward($"{name}, {launch}", gradients.Dq.ToHost(),
                         gradients.Dk.ToHost(), gradients.Dv.ToHost(), wrongGradients))
                Rejected(check);
        }
        test.AssertZerosAreRejected($"{launch}");
    }

    [Fact]
    public void Check_rejects_a_wrong_scale_swapped_queries_and_keys_and_keys_shifted_by_one_position()
    {
        using var test = new AttentionTestCase(device, Shapes[2], 800);
        var s = test.Shape;
        using var output = test.NewOutput();

        CausalAttention.Forward(test.QueryTensor, test.KeyTensor, test.ValueTensor, 1f, output);
        Rejected(test.CheckOutput("scale 1 instead of 1/√Dk", output.ToHost()));

        // o_i = Σ_j softmax(q_i·k_j) v_j: swapping q and k scores key i against query j, another distribution.
        CausalAttention.Forward(test.KeyTensor, test.QueryTensor, test.ValueTensor, test.Scale, output);
        Rejected(test.CheckOutput("q and k swapped", output.ToHost()));

        // The logit of (i, j) formed with the key of position j + 1 (the last wrapping to the first).
        var shifted = new float[test.K.Length];
        var rowLength = s.Heads * s.KeyDim;
        for (var b = 0; b < s.Batch; b++)
        for (var t = 0; t < s.SeqLen; t++)
            Array.Copy(test.K, (b * s.SeqLen + (t + 1) % s.SeqLen) * rowLength, shifted,
                (b * s.SeqLen + t) * rowLength, rowLength);
        using var shiftedKeys = Tensor.FromHost(device, shifted, s.QueryShape);
        CausalAttention.Forward(test.QueryTensor, shiftedKeys, test.ValueTensor, test.Scale, output);
        Rejected(test.CheckOutput("keys shifted by one position", output.ToHost()));
    }

    private void Rejected(Closeness check)
    {
        log.WriteLine(check.Message);
        Numerics.AssertRejected(check);
    }
}
