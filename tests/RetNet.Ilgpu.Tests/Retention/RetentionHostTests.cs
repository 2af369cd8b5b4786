using RetNet.Ilgpu.Kernels.Gemm;
using RetNet.Ilgpu.Retention;
using RetNet.Ilgpu.Tests.Support;
using Xunit.Abstractions;

namespace RetNet.Ilgpu.Tests.Retention;

/// <summary>
/// The host SIMD retention code (<see cref="RetentionLaunch.Host"/>) on every instruction-set path and thread count,
/// against the double reference and against the barrier-free kernels it replaces. It runs on the CPU accelerator only;
/// on another lane these tests open one, so every lane holds the host code to the same checks. Sizes cut its 64-row
/// and 64-column blocks and the micro-kernel's 6-row, 8/16/32-column register tiles; the recurrent scan's 8/16-lane
/// vectors and 32/64-column groups.
/// </summary>
[Collection(DeviceCollection.Name)]
public sealed class RetentionHostTests(DeviceFixture fixture, HostCpu hostCpu, ITestOutputHelper log)
    : IClassFixture<HostCpu>
{
    private readonly RetNetDevice device = fixture.Device;

    private RetNetDevice Cpu => hostCpu.For(device);

    // T = 1; Dk ≠ Dv, neither a multiple of 8 or 16; T over two 64-row blocks with Dv over two 64-column blocks.
    private static readonly RetentionShape[] OddShapes =
    [
        new(1, 1, 1, 1, 1),
        new(2, 7, 3, 3, 17),
        new(1, 37, 2, 17, 33),
        new(1, 70, 1, 33, 3),
        new(2, 150, 2, 16, 70),
    ];

    // C dividing T or not, at and across the 64-row block, C = T and C > T.
    private static int[] ChunkSizes(RetentionShape shape) =>
        new[] { 1, 3, 64, 65, shape.SeqLen, shape.SeqLen + 5 }.Distinct().ToArray();

    // Paths travel as names: the enum is internal to the library and theory methods are public.
    public static TheoryData<string, int> PathsAndThreads => new()
    {
        { nameof(HostGemmPath.Auto), 2 },
        { nameof(HostGemmPath.Vector512), 3 },
        { nameof(HostGemmPath.Vector256), 2 },
        { nameof(HostGemmPath.Scalar), 1 },
    };

    [Theory, MemberData(nameof(PathsAndThreads))]
    public void Every_path_matches_the_reference_on_odd_sizes_and_chunk_sizes(string pathName, int threads)
    {
        var path = Enum.Parse<HostGemmPath>(pathName);
        var launch = RetentionLaunch.HostWith(path, threads);
        log.WriteLine($"fastest host path here: {HostGemm.Best}; testing {launch}");
        for (var i = 0; i < OddShapes.Length; i++)
        {
            using var test = new RetentionTestCase(Cpu, OddShapes[i], DecaySchedule.Paper(OddShapes[i].Heads), 2000 + i);
            using var output = test.NewOutput();
            using var final = test.NewState();
            using var gradients = test.NewGradients();
            ParallelRetention.Forward(test.QueryTensor, test.KeyTensor, test.ValueTensor, test.Decay, output,
                test.InitialStateTensor, final, launch);
            test.AssertForward($"parallel, {launch}, {test}", output, final);
            ParallelRetention.Backward(test.QueryTensor, test.KeyTensor, test.ValueTensor, test.Decay,
                test.InitialStateTensor, test.OutputGradientTensor, test.FinalStateGradientTensor, gradients.Dq,
                gradients.Dk, gradients.Dv, gradients.DInitialState, launch);
            test.AssertBackward($"parallel backward, {launch}, {test}", gradients);
            foreach (var chunkSize in ChunkSizes(test.Shape))
            {
                ChunkwiseRetention.Forward(test.QueryTensor, test.KeyTensor, test.ValueTensor, test.Decay, chunkSize,
                    output, test.InitialStateTensor, final, launch);
                test.AssertForward($"chunkwise C={chunkSize}, {launch}, {test}", output, final);
                ChunkwiseRetention.Backward(test.QueryTensor, test.KeyTensor, test.ValueTensor, test.Decay,
                    chunkSize, test.InitialStateTensor, test.OutputGradientTensor, test.FinalStateGradientTensor,
                    gradients.Dq, gradients.Dk, gradients.Dv, gradients.DInitialState, launch);
                test.AssertBackward($"chunkwise backward C={chunkSize}, {launch}, {test}", gradients);
            }
        }
    }

    [Fact]
    public void Results_are_bit_identical_across_paths_thread_counts_and_runs()
    {
        // Items are fixed blocks of rows and state columns, each summed by one thread in one order, and every path
        // takes the same fused multiply-adds: neither the instruction set nor the schedule may change a bit.
        var shape = new RetentionShape(2, 150, 3, 33, 17);
        using var test = new RetentionTestCase(Cpu, shape, DecaySchedule.Paper(shape.Heads), 2100);
        var first = Everything(test, RetentionLaunch.HostWith(HostGemmPath.Scalar, 1), chunkSize: 40);
        foreach (var (path, threads) in new[]
                 {
                     (HostGemmPath.Scalar, 1), (HostGemmPath.Vector256, 1), (HostGemmPath.Vector256, 2),
                     (HostGemmPath.Vector512, 3), (HostGemmPath.Vector512, 7), (HostGemmPath.Auto, 16),
                 })
        {
            var again = Everything(test, RetentionLaunch.HostWith(path, threads), chunkSize: 40);
            for (var i = 0; i < first.Count; i++)
                Assert.Equal(Bits(first[i]), Bits(again[i]));
        }
    }

    public static TheoryData<bool, bool, bool> CausalFlags()
    {
        var data = new TheoryData<bool, bool, bool>();
        foreach (var reverse in new[] { false, true })
        foreach (var transposeState in new[] { false, true })
        foreach (var hasState in new[] { false, true })
            data.Add(reverse, transposeState, hasState);
        return data;
    }

    [Theory, MemberData(nameof(CausalFlags))]
    public void Causal_product_equals_the_barrier_free_kernel(bool reverse, bool transposeState, bool hasState)
    {
        // x, y [B, T, H, 17], z and the output [B, T, H, 33], the window states stored [17, 33] or, transposed,
        // [33, 17]: the operands of o and dv (plain state) and of dq and dk (transposed), forward and reverse.
        var cpu = Cpu;
        const int chunkSize = 40;
        var shape = new RetentionShape(2, 150, 2, 17, 33);
        var chunks = shape.ChunkCount(chunkSize);
        using var x = Tensor.FromHost(cpu, Numerics.Uniform(2200, shape.QueryLength), shape.QueryShape);
        using var y = Tensor.FromHost(cpu, Numerics.Uniform(2201, shape.QueryLength), shape.QueryShape);
        using var z = Tensor.FromHost(cpu, Numerics.Uniform(2202, shape.ValueLength), shape.ValueShape);
        using var state = hasState
            ? Tensor.FromHost(cpu, Numerics.Uniform(2203, shape.StateLength * chunks), shape.Batch, shape.Heads,
                chunks, shape.KeyDim, shape.ValueDim)
            : null;
        using var decay = DecaySchedule.Paper(shape.Heads).Upload(cpu);
        using var expected = Tensor.Zeros(cpu, shape.ValueShape);
        using var actual = Tensor.Zeros(cpu, shape.ValueShape);

        RetentionLaunch.BarrierFree.Causal(
            new CausalOperands(x, y, z, state, transposeState, decay, expected, chunkSize, reverse));
        RetentionLaunch.Host.Causal(
            new CausalOperands(x, y, z, state, transposeState, decay, actual, chunkSize, reverse));
        Numerics.AssertClose($"causal product reverse={reverse} transposed={transposeState} state={hasState}",
            actual.ToHost(), expected.ToHost());
    }

    public static TheoryData<bool, bool, bool, bool> StateFlags()
    {
        var data = new TheoryData<bool, bool, bool, bool>();
        foreach (var reverse in new[] { false, true })
        foreach (var hasInitial in new[] { false, true })
        foreach (var (chunkStates, final) in new[] { (true, false), (false, true), (true, true) })
            data.Add(reverse, hasInitial, chunkStates, final);
        return data;
    }

    [Theory, MemberData(nameof(StateFlags))]
    public void State_walk_equals_the_barrier_free_kernel(bool reverse, bool hasInitial, bool writeChunkStates,
        bool writeFinal)
    {
        // x [B, T, H, 17], y [B, T, H, 70] (two column blocks), C = 40 leaving a last chunk of 30. The host walk writes
        // its final matrix over the initial one (in place), the kernel into a matrix of its own.
        var cpu = Cpu;
        const int chunkSize = 40;
        var shape = new RetentionShape(2, 150, 2, 17, 70);
        var chunks = shape.ChunkCount(chunkSize);
        var initialValues = Numerics.Uniform(2302, shape.StateLength);
        using var x = Tensor.FromHost(cpu, Numerics.Uniform(2300, shape.QueryLength), shape.QueryShape);
        using var y = Tensor.FromHost(cpu, Numerics.Uniform(2301, shape.ValueLength), shape.ValueShape);
        using var initial = Tensor.FromHost(cpu, initialValues, shape.StateShape);
        using var decay = DecaySchedule.Paper(shape.Heads).Upload(cpu);
        Tensor ChunkStates() => Tensor.Zeros(cpu, shape.Batch, shape.Heads, chunks, shape.KeyDim, shape.ValueDim);
        using var expectedChunks = ChunkStates();
        using var actualChunks = ChunkStates();
        using var expectedFinal = Tensor.Zeros(cpu, shape.StateShape);
        using var inPlace = Tensor.FromHost(cpu, initialValues, shape.StateShape);

        RetentionLaunch.BarrierFree.States(new StateOperands(x, y, hasInitial ? initial : null, decay,
            writeChunkStates ? expectedChunks : null, writeFinal ? expectedFinal : null, chunkSize, reverse));
        RetentionLaunch.Host.States(new StateOperands(x, y, hasInitial ? inPlace : null, decay,
            writeChunkStates ? actualChunks : null, writeFinal ? inPlace : null, chunkSize, reverse));
        var what = $"state walk reverse={reverse} initial={hasInitial}";
        Numerics.AssertClose($"{what}: chunk states", actualChunks.ToHost(), expectedChunks.ToHost());
        Numerics.AssertClose($"{what}: final", inPlace.ToHost(), writeFinal ? expectedFinal.ToHost() : initialValues);
    }

    [Fact]
    public void Final_state_and_its_gradient_may_overwrite_the_initial_ones()
    {
        var shape = new RetentionShape(2, 150, 2, 17, 33);
        using var test = new RetentionTestCase(Cpu, shape, DecaySchedule.Paper(shape.Heads), 2400);
        using var output = test.NewOutput();
        using var gradients = test.NewGradients();
        using var state = test.NewState();
        using var stateGradient = test.NewState();
        foreach (var chunkSize in new[] { 40, 64, shape.SeqLen + 5 })
        {
            state.CopyFrom(test.InitialStateTensor!);
            ChunkwiseRetention.Forward(test.QueryTensor, test.KeyTensor, test.ValueTensor, test.Decay, chunkSize,
                output, state, state, RetentionLaunch.Host);
            test.AssertForward($"chunkwise C={chunkSize}, S_T over S_0", output, state);
            stateGradient.CopyFrom(test.FinalStateGradientTensor!);
            ChunkwiseRetention.Backward(test.QueryTensor, test.KeyTensor, test.ValueTensor, test.Decay, chunkSize,
                test.InitialStateTensor, test.OutputGradientTensor, stateGradient, gradients.Dq, gradients.Dk,
                gradients.Dv, stateGradient, RetentionLaunch.Host);
            Numerics.AssertClose($"chunkwise backward C={chunkSize}, dS_0 over dS_T", stateGradient.ToHost(),
                test.ReferenceGradients.InitialStateGradient);
        }
        state.CopyFrom(test.InitialStateTensor!);
        ParallelRetention.Forward(test.QueryTensor, test.KeyTensor, test.ValueTensor, test.Decay, output, state, state,
            RetentionLaunch.Host);
        test.AssertForward("parallel, S_T over S_0", output, state);
    }

    [Fact]
    public void Check_rejects_a_decay_mask_off_by_one_position()
    {
        // A mask that weights score (t, j) by γ^(t−j+1) instead of γ^(t−j) scales every output of a problem without
        // initial state by γ. With γ = 1 − 2⁻¹² that is 2.4e-4 relative, a little above the tolerance: the host
        // result passes, the off-by-one one must not.
        const double gamma = 1 - 1.0 / 4096;
        var shape = new RetentionShape(1, 150, 1, 16, 16);
        using var test = new RetentionTestCase(Cpu, shape, DecaySchedule.FromValues(gamma), 2500,
            withInitialState: false);
        using var output = test.NewOutput();
        ParallelRetention.Forward(test.QueryTensor, test.KeyTensor, test.ValueTensor, test.Decay, output, null, null,
            RetentionLaunch.Host);
        var values = output.ToHost();
        Assert.True(test.CheckOutput("host SIMD", values).Passed, test.CheckOutput("host SIMD", values).Message);
        var shifted = test.CheckOutput("mask one position off", values.Select(v => (float)gamma * v).ToArray());
        log.WriteLine(shifted.Message);
        Numerics.AssertRejected(shifted);
    }

    // T = 1 (a decoding step); Dk, Dv not multiples of 8 or 16, Dv over one and two 64-column blocks; B, H > 1; the
    // last touches 2·64·2·33·70 state cells, enough for the scan to split its items over threads.
    private static readonly RetentionShape[] RecurrentShapes =
    [
        new(1, 1, 1, 1, 1),
        new(3, 1, 2, 33, 70),
        new(2, 7, 3, 5, 17),
        new(1, 37, 2, 17, 131),
        new(2, 64, 2, 33, 70),
    ];

    [Theory, MemberData(nameof(PathsAndThreads))]
    public void Recurrent_scan_equals_the_kernel_bit_for_bit_and_matches_the_reference(string pathName, int threads)
    {
        // The host scan takes the kernel's own separate multiplies and adds per state element, in the kernel's order:
        // output and state must equal the barrier-free kernel's (simulated or called directly) in every bit.
        var path = Enum.Parse<HostGemmPath>(pathName);
        var launch = RetentionLaunch.HostWith(path, threads);
        log.WriteLine($"fastest host path here: {HostGemm.Best}; testing {launch}");
        for (var i = 0; i < RecurrentShapes.Length; i++)
        {
            foreach (var withState in new[] { true, false })
            {
                var shape = RecurrentShapes[i];
                var decay = DecaySchedule.Paper(shape.Heads);
                using var test = new RetentionTestCase(Cpu, shape, decay, 2700 + i, withInitialState: withState);
                var (kernelOutput, kernelState) = Recurrent(test, RetentionLaunch.BarrierFree);
                var (output, state) = Recurrent(test, launch);
                var what = $"recurrent, {launch}, {test}, initial state {withState}";
                var expected = RetentionReference.Recurrent(shape, decay, test.Q, test.K, test.V, test.InitialState);
                Numerics.AssertClose($"{what}: output", output, expected.Output);
                Numerics.AssertClose($"{what}: state", state, expected.FinalState);
                Assert.Equal(Bits(kernelOutput), Bits(output));
                Assert.Equal(Bits(kernelState), Bits(state));
            }
        }
    }

    [Fact]
    public void Recurrent_bit_check_rejects_a_fused_state_update()
    {
        // Negative control for the bit-identity above: the same scan with γ·s + k·v as one fused multiply-add rounds
        // once instead of twice and differs from the kernel in some bit, though not beyond the tolerance.
        var shape = new RetentionShape(1, 37, 2, 17, 33);
        var decay = DecaySchedule.Paper(shape.Heads);
        using var test = new RetentionTestCase(Cpu, shape, decay, 2800);
        var (kernelOutput, _) = Recurrent(test, RetentionLaunch.BarrierFree);
        var state = (float[])test.InitialState!.Clone();
        var fused = new float[shape.ValueLength];
        using var table = decay.Upload(Cpu);
        var logGammas = table.ToHost();
        for (var h = 0; h < shape.Heads; h++)
        {
            var gamma = RetentionKernels.Decay(logGammas[h], 1);
            for (var t = 0; t < shape.SeqLen; t++)
            {
                var row = t * shape.Heads + h;
                for (var e = 0; e < shape.ValueDim; e++)
                {
                    var sum = 0f;
                    for (var i = 0; i < shape.KeyDim; i++)
                    {
                        var cell = (h * shape.KeyDim + i) * shape.ValueDim + e;
                        state[cell] = MathF.FusedMultiplyAdd(test.K[row * shape.KeyDim + i],
                            test.V[row * shape.ValueDim + e], gamma * state[cell]);
                        sum += test.Q[row * shape.KeyDim + i] * state[cell];
                    }
                    fused[row * shape.ValueDim + e] = sum;
                }
            }
        }
        var expected = RetentionReference.Recurrent(shape, decay, test.Q, test.K, test.V, test.InitialState);
        Numerics.AssertClose("fused state update", fused, expected.Output);
        Assert.NotEqual(Bits(kernelOutput), Bits(fused));
    }

    /// <summary>The recurrent scan of a test case through one launch, from its initial state (or zeros).</summary>
    private static (float[] Output, float[] State) Recurrent(RetentionTestCase test, RetentionLaunch launch)
    {
        using var output = test.NewOutput();
        using var state = test.NewState();
        if (test.InitialStateTensor is not null)
            state.CopyFrom(test.InitialStateTensor);
        RecurrentRetention.Forward(test.QueryTensor, test.KeyTensor, test.ValueTensor, test.Decay, output, state,
            launch);
        return (output.ToHost(), state.ToHost());
    }

    [Fact]
    public void Host_launch_is_refused_off_the_CPU_accelerator()
    {
        if (device.IsCpuSimulator)
        {
            log.WriteLine($"{device} is the CPU accelerator: nothing to refuse on this lane.");
            return;
        }
        var shape = new RetentionShape(1, 4, 1, 2, 2);
        using var test = new RetentionTestCase(device, shape, DecaySchedule.Paper(1), 2600);
        using var output = test.NewOutput();
        var error = Assert.Throws<NotSupportedException>(() => ParallelRetention.Forward(test.QueryTensor,
            test.KeyTensor, test.ValueTensor, test.Decay, output, null, null, RetentionLaunch.Host));
        Assert.Contains("CPU accelerator", error.Message);
    }

    /// <summary>Parallel and chunkwise forward and backward with one launch: outputs, final states, gradients.</summary>
    private static List<float[]> Everything(RetentionTestCase test, RetentionLaunch launch, int chunkSize)
    {
        using var output = test.NewOutput();
        using var final = test.NewState();
        using var gradients = test.NewGradients();
        var results = new List<float[]>();
        void Gradients() =>
            results.AddRange([gradients.Dq.ToHost(), gradients.Dk.ToHost(), gradients.Dv.ToHost(),
                gradients.DInitialState.ToHost()]);
        ParallelRetention.Forward(test.QueryTensor, test.KeyTensor, test.ValueTensor, test.Decay, output,
            test.InitialStateTensor, final, launch);
        results.AddRange([output.ToHost(), final.ToHost()]);
        ChunkwiseRetention.Forward(test.QueryTensor, test.KeyTensor, test.ValueTensor, test.Decay, chunkSize, output,
            test.InitialStateTensor, final, launch);
        results.AddRange([output.ToHost(), final.ToHost()]);
        ParallelRetention.Backward(test.QueryTensor, test.KeyTensor, test.ValueTensor, test.Decay,
            test.InitialStateTensor, test.OutputGradientTensor, test.FinalStateGradientTensor, gradients.Dq,
            gradients.Dk, gradients.Dv, gradients.DInitialState, launch);
        Gradients();
        ChunkwiseRetention.Backward(test.QueryTensor, test.KeyTensor, test.ValueTensor, test.Decay, chunkSize,
            test.InitialStateTensor, test.OutputGradientTensor, test.FinalStateGradientTensor, gradients.Dq,
            gradients.Dk, gradients.Dv, gradients.DInitialState, launch);
        Gradients();
        return results;
    }

    private static int[] Bits(float[] values) => values.Select(BitConverter.SingleToInt32Bits).ToArray();
}
