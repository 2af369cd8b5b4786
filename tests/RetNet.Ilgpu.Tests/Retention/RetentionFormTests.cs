using RetNet.Ilgpu.Retention;
using RetNet.Ilgpu.Tests.Support;
using Xunit.Abstractions;

namespace RetNet.Ilgpu.Tests.Retention;

/// <summary>
/// Every form, at every kernel configuration the library can launch (barrier-free; each tile at the device's group
/// size and at 7 threads; host SIMD code when the device runs on the host), against the double reference. Shapes are small enough for the CPU accelerator's barriers
/// yet cover several row tiles, depth slices and column tiles of both tiles, ragged edges and short last chunks.
/// </summary>
[Collection(DeviceCollection.Name)]
public sealed class RetentionFormTests(DeviceFixture fixture, ITestOutputHelper log)
{
    private readonly RetNetDevice device = fixture.Device;

    private static readonly RetentionShape[] Shapes =
    [
        new(1, 1, 1, 1, 1),
        new(2, 7, 3, 5, 4),
        new(1, 37, 2, 20, 18),
        new(1, 70, 1, 33, 70),
    ];

    // Theory data is fixed at discovery, before the fixture opens the device: the count comes from a device opened
    // the same way (RETNET_DEVICE, RETNET_CPU_EXECUTION) and closed again.
    private static readonly Lazy<int> ConfigurationCount = new(() =>
    {
        using var probe = RetNetDevice.Open(DeviceKind.Auto);
        return RetentionLaunch.Configurations(probe).Count;
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

    public static TheoryData<int> ShapeIndices => new(Enumerable.Range(0, Shapes.Length));

    private RetentionLaunch Configuration(int index) => RetentionLaunch.Configurations(device)[index];

    private RetentionTestCase Case(int shape, int seed, bool withInitialState = true, bool withOutputGradient = true,
        bool withFinalStateGradient = true) =>
        new(device, Shapes[shape], DecaySchedule.Paper(Shapes[shape].Heads), seed, 1f, withInitialState,
            withOutputGradient, withFinalStateGradient);

    private static int[] ChunkSizes(RetentionShape shape) => [1, 3, 16, shape.SeqLen, shape.SeqLen + 5];

    [Theory, MemberData(nameof(ConfigurationsAndShapes))]
    public void Parallel_forward_matches_the_reference(int configuration, int shape)
    {
        var launch = Configuration(configuration);
        foreach (var withInitialState in new[] { false, true })
        {
            using var test = Case(shape, 100 + shape, withInitialState);
            using var output = test.NewOutput();
            using var final = test.NewState();
            ParallelRetention.Forward(test.QueryTensor, test.KeyTensor, test.ValueTensor, test.Decay, output,
                test.InitialStateTensor, final, launch);
            test.AssertForward($"parallel, {launch}, {test}", output, final);
        }
    }

    [Theory, MemberData(nameof(ConfigurationsAndShapes))]
    public void Chunkwise_forward_matches_the_reference_for_any_chunk_size(int configuration, int shape)
    {
        var launch = Configuration(configuration);
        using var test = Case(shape, 200 + shape);
        using var output = test.NewOutput();
        using var final = test.NewState();
        foreach (var chunkSize in ChunkSizes(test.Shape))
        {
            ChunkwiseRetention.Forward(test.QueryTensor, test.KeyTensor, test.ValueTensor, test.Decay, chunkSize,
                output, test.InitialStateTensor, final, launch);
            test.AssertForward($"chunkwise C={chunkSize}, {launch}, {test}", output, final);
        }
    }

    [Theory, MemberData(nameof(ConfigurationsAndShapes))]
    public void Parallel_backward_matches_the_reference(int configuration, int shape)
    {
        var launch = Configuration(configuration);
        using var test = Case(shape, 300 + shape);
        using var gradients = test.NewGradients();
        ParallelRetention.Backward(test.QueryTensor, test.KeyTensor, test.ValueTensor, test.Decay,
            test.InitialStateTensor, test.OutputGradientTensor, test.FinalStateGradientTensor, gradients.Dq,
            gradients.Dk, gradients.Dv, gradients.DInitialState, launch);
        test.AssertBackward($"parallel backward, {launch}, {test}", gradients);
    }

    [Theory, MemberData(nameof(ConfigurationsAndShapes))]
    public void Chunkwise_backward_matches_the_reference_for_any_chunk_size(int configuration, int shape)
    {
        var launch = Configuration(configuration);
        using var test = Case(shape, 400 + shape);
        using var gradients = test.NewGradients();
        foreach (var chunkSize in ChunkSizes(test.Shape))
        {
            ChunkwiseRetention.Backward(test.QueryTensor, test.KeyTensor, test.ValueTensor, test.Decay, chunkSize,
                test.InitialStateTensor, test.OutputGradientTensor, test.FinalStateGradientTensor, gradients.Dq,
                gradients.Dk, gradients.Dv, gradients.DInitialState, launch);
            test.AssertBackward($"chunkwise backward C={chunkSize}, {launch}, {test}", gradients);
        }
    }

    [Theory]
    [InlineData(false, true)]
    [InlineData(true, false)]
    [InlineData(false, false)]
    public void Backward_treats_an_absent_output_or_final_state_gradient_as_zero(bool withOutputGradient,
        bool withFinalStateGradient)
    {
        foreach (var launch in RetentionLaunch.Configurations(device))
        {
            using var test = Case(1, 500, true, withOutputGradient, withFinalStateGradient);
            using var gradients = test.NewGradients();
            ParallelRetention.Backward(test.QueryTensor, test.KeyTensor, test.ValueTensor, test.Decay,
                test.InitialStateTensor, test.OutputGradientTensor, test.FinalStateGradientTensor, gradients.Dq,
                gradients.Dk, gradients.Dv, gradients.DInitialState, launch);
            test.AssertBackward($"parallel backward, {launch}, {test}", gradients);
            ChunkwiseRetention.Backward(test.QueryTensor, test.KeyTensor, test.ValueTensor, test.Decay, 3,
                test.InitialStateTensor, test.OutputGradientTensor, test.FinalStateGradientTensor, gradients.Dq,
                gradients.Dk, gradients.Dv, gradients.DInitialState, launch);
            test.AssertBackward($"chunkwise backward, {launch}, {test}", gradients);
        }
    }

    [Theory, MemberData(nameof(ShapeIndices))]
    public void Recurrent_form_matches_the_reference_in_one_call_and_token_by_token(int shape)
    {
        using var test = Case(shape, 600 + shape);
        var s = test.Shape;
        using var output = test.NewOutput();
        using var state = Tensor.FromHost(device, test.InitialState!, s.StateShape);
        RecurrentRetention.Forward(test.QueryTensor, test.KeyTensor, test.ValueTensor, test.Decay, output, state);
        test.AssertForward($"recurrent, {test}", output, state);

        // Decoding: T calls of one token each through the same state.
        var step = s with { SeqLen = 1 };
        var outputs = new float[s.ValueLength];
        state.CopyFromHost(test.InitialState!);
        for (var t = 0; t < s.SeqLen; t++)
        {
            using var q = Tensor.FromHost(device, RetentionTokens.Slice(test.Q, s, s.KeyDim, t, 1), step.QueryShape);
            using var k = Tensor.FromHost(device, RetentionTokens.Slice(test.K, s, s.KeyDim, t, 1), step.QueryShape);
            using var v = Tensor.FromHost(device, RetentionTokens.Slice(test.V, s, s.ValueDim, t, 1), step.ValueShape);
            using var o = Tensor.Zeros(device, step.ValueShape);
            RecurrentRetention.Forward(q, k, v, test.Decay, o, state);
            RetentionTokens.Place(o.ToHost(), outputs, s, s.ValueDim, t, 1);
        }
        Numerics.AssertClose($"decoding token by token, {test}: output", outputs, test.Reference.Output);
        Numerics.AssertClose($"decoding token by token, {test}: state", state.ToHost(), test.Reference.FinalState);
    }

    [Fact]
    public void Chunkwise_prefill_then_recurrent_decoding_continues_the_sequence()
    {
        using var test = Case(2, 700);
        var s = test.Shape;
        const int prefix = 23;
        var head = s with { SeqLen = prefix };
        var tail = s with { SeqLen = s.SeqLen - prefix };
        using var state = Tensor.FromHost(device, test.InitialState!, s.StateShape);
        using var q1 = Tensor.FromHost(device, RetentionTokens.Slice(test.Q, s, s.KeyDim, 0, prefix), head.QueryShape);
        using var k1 = Tensor.FromHost(device, RetentionTokens.Slice(test.K, s, s.KeyDim, 0, prefix), head.QueryShape);
        using var v1 = Tensor.FromHost(device, RetentionTokens.Slice(test.V, s, s.ValueDim, 0, prefix), head.ValueShape);
        using var o1 = Tensor.Zeros(device, head.ValueShape);
        using var q2 = Tensor.FromHost(device, RetentionTokens.Slice(test.Q, s, s.KeyDim, prefix, tail.SeqLen), tail.QueryShape);
        using var k2 = Tensor.FromHost(device, RetentionTokens.Slice(test.K, s, s.KeyDim, prefix, tail.SeqLen), tail.QueryShape);
        using var v2 = Tensor.FromHost(device, RetentionTokens.Slice(test.V, s, s.ValueDim, prefix, tail.SeqLen), tail.ValueShape);
        using var o2 = Tensor.Zeros(device, tail.ValueShape);

        // The state advances in place: the final state of the prefill overwrites its initial state.
        ChunkwiseRetention.Forward(q1, k1, v1, test.Decay, 8, o1, state, state);
        RecurrentRetention.Forward(q2, k2, v2, test.Decay, o2, state);

        var outputs = new float[s.ValueLength];
        RetentionTokens.Place(o1.ToHost(), outputs, s, s.ValueDim, 0, prefix);
        RetentionTokens.Place(o2.ToHost(), outputs, s, s.ValueDim, prefix, tail.SeqLen);
        Numerics.AssertClose("prefill + decode: output", outputs, test.Reference.Output);
        Numerics.AssertClose("prefill + decode: state", state.ToHost(), test.Reference.FinalState);
    }

    [Fact]
    public void Decay_within_1e_minus_7_of_one_over_a_long_sequence_stays_within_tolerance()
    {
        // γ this close to 1 is not even representable in fp32 (1 − 2e-8 rounds to 1): the kernels get log γ and γ − 1
        // from double, and the sums of 300 undecayed unit terms per output stay within the one tolerance rule.
        var shape = new RetentionShape(1, 300, 2, 64, 64);
        var decay = DecaySchedule.FromValues(1 - 1e-7, 1 - 2e-8);
        using var test = new RetentionTestCase(device, shape, decay, 800);
        using var output = test.NewOutput();
        using var final = test.NewState();
        using var gradients = test.NewGradients();
        ParallelRetention.Forward(test.QueryTensor, test.KeyTensor, test.ValueTensor, decay, output,
            test.InitialStateTensor, final);
        test.AssertForward("parallel, γ ≈ 1", output, final);
        ChunkwiseRetention.Forward(test.QueryTensor, test.KeyTensor, test.ValueTensor, decay, 64, output,
            test.InitialStateTensor, final);
        test.AssertForward("chunkwise, γ ≈ 1", output, final);
        final.CopyFrom(test.InitialStateTensor!);
        RecurrentRetention.Forward(test.QueryTensor, test.KeyTensor, test.ValueTensor, decay, output, final);
        test.AssertForward("recurrent, γ ≈ 1", output, final);
        ParallelRetention.Backward(test.QueryTensor, test.KeyTensor, test.ValueTensor, decay, test.InitialStateTensor,
            test.OutputGradientTensor, test.FinalStateGradientTensor, gradients.Dq, gradients.Dk, gradients.Dv,
            gradients.DInitialState);
        test.AssertBackward("parallel backward, γ ≈ 1", gradients);
        ChunkwiseRetention.Backward(test.QueryTensor, test.KeyTensor, test.ValueTensor, decay, 64,
            test.InitialStateTensor, test.OutputGradientTensor, test.FinalStateGradientTensor, gradients.Dq,
            gradients.Dk, gradients.Dv, gradients.DInitialState);
        test.AssertBackward("chunkwise backward, γ ≈ 1", gradients);
    }

    [Fact]
    public void Temporaries_are_freed_and_the_parallel_form_allocates_far_less_than_a_T_by_T_buffer()
    {
        var shape = new RetentionShape(1, 256, 1, 4, 4);
        using var test = new RetentionTestCase(device, shape, DecaySchedule.Torchscale(1), 900);
        using var output = test.NewOutput();
        using var gradients = test.NewGradients();
        var before = device.Memory.CurrentBytes;
        device.Memory.ResetPeak();
        ParallelRetention.Forward(test.QueryTensor, test.KeyTensor, test.ValueTensor, test.Decay, output);
        ParallelRetention.Backward(test.QueryTensor, test.KeyTensor, test.ValueTensor, test.Decay, null,
            test.OutputGradientTensor, null, gradients.Dq, gradients.Dk, gradients.Dv);
        Assert.True(device.Memory.PeakBytes - before < 256L * 256 * 4 / 100,
            $"parallel form allocated {device.Memory.PeakBytes - before} bytes");
        ChunkwiseRetention.Forward(test.QueryTensor, test.KeyTensor, test.ValueTensor, test.Decay, 16, output);
        ChunkwiseRetention.Backward(test.QueryTensor, test.KeyTensor, test.ValueTensor, test.Decay, 16, null,
            test.OutputGradientTensor, null, gradients.Dq, gradients.Dk, gradients.Dv);
        Assert.Equal(before, device.Memory.CurrentBytes);
    }

    // Negative controls: results that are wrong in ways a vacuous or too-loose check would miss, each of which the
    // project's check must reject. Each logs the rejection (difference against bound).

    [Fact]
    public void Check_rejects_zero_output_and_gradients_at_input_scale_1e_minus_3()
    {
        // Inputs of 1e-3 give |o| ≲ 1e-5 (q·S_0 and (q·k)v are products of two and three of them), far below the
        // former absolute bound 1e-4·(1 + max |ref|), which let zeros pass. The kernels' own results must still pass.
        using var test = new RetentionTestCase(device, Shapes[2], DecaySchedule.Paper(Shapes[2].Heads), 1000, 1e-3f);
        using var output = test.NewOutput();
        using var final = test.NewState();
        using var gradients = test.NewGradients();
        ParallelRetention.Forward(test.QueryTensor, test.KeyTensor, test.ValueTensor, test.Decay, output,
            test.InitialStateTensor, final);
        test.AssertForward("parallel at scale 1e-3", output, final);
        ParallelRetention.Backward(test.QueryTensor, test.KeyTensor, test.ValueTensor, test.Decay,
            test.InitialStateTensor, test.OutputGradientTensor, test.FinalStateGradientTensor, gradients.Dq,
            gradients.Dk, gradients.Dv, gradients.DInitialState);
        test.AssertBackward("parallel backward at scale 1e-3", gradients);

        var s = test.Shape;
        var zeros = test.CheckOutput("zeros", new float[s.ValueLength]);
        Rejected(zeros);
        var maxReference = zeros.MaxDifference; // zeros miss the reference by the reference itself
        Assert.True(maxReference <= 1e-4 * (1 + maxReference), "the former rule would have accepted these zeros");
        Rejected(test.CheckFinalState("zeros", new float[s.StateLength]));
        foreach (var check in test.CheckBackward("zeros", new float[s.QueryLength], new float[s.QueryLength],
                     new float[s.ValueLength], new float[s.StateLength]))
            Rejected(check);
    }

    [Fact]
    public void Check_rejects_a_decay_rounded_to_one_in_fp32_over_a_long_sequence()
    {
        // γ = 1 − 2⁻²⁶ rounds to 1 in fp32. Over T = 2¹⁵ tokens that write nothing (k = v = 0) the initial state
        // decays by γ^T = 1 − 4.9e-4, about five times the tolerance: a kernel that took γ as fp32 keeps S_0 whole.
        // The kernels get log γ from double and pass; γ = 1 − 1e-13, whose powers up to T round to exactly 1 in fp32,
        // stands for γ = 1 (which DecaySchedule refuses). Chunkwise only: the parallel form is O(T²), and the recurrent
        // form's fp32 state cannot decay by less than half an ulp per token (s + (γ − 1)·s rounds back to s), so at
        // this γ it computes γ = 1 too: a limit of decoding with an fp32 state, not of the check.
        const double gamma = 1 - 1.0 / (1 << 26);
        Assert.Equal(1f, (float)gamma);
        var shape = new RetentionShape(1, 1 << 15, 1, 4, 4);
        var q = Numerics.Uniform(1200, shape.QueryLength);
        var s0 = Numerics.Uniform(1201, shape.StateLength);
        var zerosK = new float[shape.QueryLength];
        var zerosV = new float[shape.ValueLength];
        var reference = RetentionReference.Recurrent(shape, DecaySchedule.FromValues(gamma), q, zerosK, zerosV, s0);
        using var tq = Tensor.FromHost(device, q, shape.QueryShape);
        using var tk = Tensor.FromHost(device, zerosK, shape.QueryShape);
        using var tv = Tensor.FromHost(device, zerosV, shape.ValueShape);
        using var initial = Tensor.FromHost(device, s0, shape.StateShape);
        using var output = Tensor.Zeros(device, shape.ValueShape);
        using var final = Tensor.Zeros(device, shape.StateShape);

        ChunkwiseRetention.Forward(tq, tk, tv, DecaySchedule.FromValues(gamma), 256, output, initial, final);
        Numerics.AssertClose("true γ: output", output.ToHost(), reference.Output);
        Numerics.AssertClose("true γ: final state", final.ToHost(), reference.FinalState);

        ChunkwiseRetention.Forward(tq, tk, tv, DecaySchedule.FromValues(1 - 1e-13), 256, output, initial, final);
        Rejected(Numerics.Check("γ rounded to 1: output", output.ToHost(), reference.Output));
        Rejected(Numerics.Check("γ rounded to 1: final state", final.ToHost(), reference.FinalState));
    }

    [Fact]
    public void Check_rejects_swapped_queries_and_keys()
    {
        // o_t = Σ_j γ^(t−j) (q_t·k_j) v_j: swapping q and k scores key t against query j, a different sum.
        using var test = Case(2, 1300);
        using var output = test.NewOutput();
        using var final = test.NewState();
        ParallelRetention.Forward(test.KeyTensor, test.QueryTensor, test.ValueTensor, test.Decay, output,
            test.InitialStateTensor, final);
        Rejected(test.CheckOutput("q and k swapped", output.ToHost()));
        Rejected(test.CheckFinalState("q and k swapped", final.ToHost()));
    }

    private void Rejected(Closeness check)
    {
        log.WriteLine(check.Message);
        Numerics.AssertRejected(check);
    }
}
