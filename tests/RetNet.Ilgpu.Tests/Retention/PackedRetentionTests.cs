using RetNet.Ilgpu.Retention;
using RetNet.Ilgpu.Tests.Support;
using static RetNet.Ilgpu.Tests.Support.NegativeControls;

namespace RetNet.Ilgpu.Tests.Retention;

/// <summary>
/// Packed documents (<see cref="PackedSequences"/>): every form, at every kernel configuration the library can launch,
/// forward and backward, equals running each document alone, and the same comparison rejects the same kernels run
/// with the boundaries ignored. Documents are cut so that boundaries fall inside and at the edges of chunks and tiles,
/// with one-token documents, several documents per row and rows of different cuts.
/// </summary>
[Collection(DeviceCollection.Name)]
public sealed class PackedRetentionTests(DeviceFixture fixture)
{
    private readonly RetNetDevice device = fixture.Device;

    private static readonly (RetentionShape Shape, int[][] Lengths)[] Cases =
    [
        (new(2, 20, 3, 5, 4), [[7, 13], [1, 3, 16]]),
        (new(1, 37, 2, 20, 18), [[5, 1, 14, 17]]),
        (new(1, 45, 1, 20, 70), [[20, 2, 23]]),
    ];

    private static readonly Lazy<int> ConfigurationCount = new(() =>
    {
        using var probe = RetNetDevice.Open(DeviceKind.Auto);
        return RetentionLaunch.Configurations(probe).Count;
    });

    public static TheoryData<int, int> ConfigurationsAndCases
    {
        get
        {
            var data = new TheoryData<int, int>();
            for (var c = 0; c < ConfigurationCount.Value; c++)
            for (var s = 0; s < Cases.Length; s++)
                data.Add(c, s);
            return data;
        }
    }

    private PackedRetentionCase Case(int index, int seed) =>
        new(device, Cases[index].Shape, DecaySchedule.Paper(Cases[index].Shape.Heads), Cases[index].Lengths, seed);

    // A chunk of 3 puts boundaries at every offset within a chunk; T + 5 is one chunk holding every document. Chunks of
    // other sizes are drawn by the property suite.
    private static int[] ChunkSizes(RetentionShape shape) => [3, shape.SeqLen + 5];

    [Theory, MemberData(nameof(ConfigurationsAndCases))]
    public void Every_form_forward_equals_each_document_alone(int configuration, int index)
    {
        var launch = RetentionLaunch.Configurations(device)[configuration];
        using var test = Case(index, 700 + index);
        var t = test.Test;
        using var output = t.NewOutput();
        using var state = t.NewState();

        ParallelRetention.Forward(t.QueryTensor, t.KeyTensor, t.ValueTensor, t.Decay, output, t.InitialStateTensor,
            state, launch, bounds: test.Bounds);
        test.AssertForward($"packed parallel, {launch}, {test}", output, state);
        foreach (var chunkSize in ChunkSizes(test.Shape))
        {
            ChunkwiseRetention.Forward(t.QueryTensor, t.KeyTensor, t.ValueTensor, t.Decay, chunkSize, output,
                t.InitialStateTensor, state, launch, bounds: test.Bounds);
            test.AssertForward($"packed chunkwise C={chunkSize}, {launch}, {test}", output, state);
        }
        state.CopyFrom(t.InitialStateTensor!);
        RecurrentRetention.Forward(t.QueryTensor, t.KeyTensor, t.ValueTensor, t.Decay, output, state, launch,
            bounds: test.Bounds);
        test.AssertForward($"packed recurrent, {launch}, {test}", output, state);

        // The negative control: the same kernels with the boundaries ignored (no reset, no mask).
        ChunkwiseRetention.Forward(t.QueryTensor, t.KeyTensor, t.ValueTensor, t.Decay, 16, output,
            t.InitialStateTensor, state, launch);
        test.AssertOutputRejected($"chunkwise, {launch}, {test}", output);
        state.CopyFrom(t.InitialStateTensor!);
        RecurrentRetention.Forward(t.QueryTensor, t.KeyTensor, t.ValueTensor, t.Decay, output, state, launch);
        test.AssertOutputRejected($"recurrent, {launch}, {test}", output);
    }

    [Theory, MemberData(nameof(ConfigurationsAndCases))]
    public void Parallel_and_chunkwise_gradients_equal_each_document_alone(int configuration, int index)
    {
        var launch = RetentionLaunch.Configurations(device)[configuration];
        using var test = Case(index, 800 + index);
        var t = test.Test;
        using var gradients = t.NewGradients();

        ParallelRetention.Backward(t.QueryTensor, t.KeyTensor, t.ValueTensor, t.Decay, t.InitialStateTensor,
            t.OutputGradientTensor, t.FinalStateGradientTensor, gradients.Dq, gradients.Dk, gradients.Dv,
            gradients.DInitialState, launch, bounds: test.Bounds);
        test.AssertBackward($"packed parallel backward, {launch}, {test}", gradients);
        foreach (var chunkSize in ChunkSizes(test.Shape))
        {
            ChunkwiseRetention.Backward(t.QueryTensor, t.KeyTensor, t.ValueTensor, t.Decay, chunkSize,
                t.InitialStateTensor, t.OutputGradientTensor, t.FinalStateGradientTensor, gradients.Dq, gradients.Dk,
                gradients.Dv, gradients.DInitialState, launch, bounds: test.Bounds);
            test.AssertBackward($"packed chunkwise backward C={chunkSize}, {launch}, {test}", gradients);
        }

        // The negative control: the same backward kernels with the boundaries ignored.
        ChunkwiseRetention.Backward(t.QueryTensor, t.KeyTensor, t.ValueTensor, t.Decay, 16, t.InitialStateTensor,
            t.OutputGradientTensor, t.FinalStateGradientTensor, gradients.Dq, gradients.Dk, gradients.Dv,
            gradients.DInitialState, launch);
        test.AssertGradientsRejected($"chunkwise backward, {launch}, {test}", gradients);
    }

    [Fact]
    public void The_public_packed_calls_equal_each_document_alone()
    {
        using var test = Case(0, 900);
        var t = test.Test;
        using var output = t.NewOutput();
        using var state = t.NewState();
        using var gradients = t.NewGradients();

        ParallelRetention.ForwardPacked(t.QueryTensor, t.KeyTensor, t.ValueTensor, t.Decay, test.CuSeqlens, output,
            t.InitialStateTensor, state);
        test.AssertForward("ParallelRetention.ForwardPacked", output, state);
        ChunkwiseRetention.ForwardPacked(t.QueryTensor, t.KeyTensor, t.ValueTensor, t.Decay, 4, test.CuSeqlens,
            output, t.InitialStateTensor, state);
        test.AssertForward("ChunkwiseRetention.ForwardPacked", output, state);
        state.CopyFrom(t.InitialStateTensor!);
        RecurrentRetention.ForwardPacked(t.QueryTensor, t.KeyTensor, t.ValueTensor, t.Decay, test.CuSeqlens, output,
            state);
        test.AssertForward("RecurrentRetention.ForwardPacked", output, state);

        ParallelRetention.BackwardPacked(t.QueryTensor, t.KeyTensor, t.ValueTensor, t.Decay, test.CuSeqlens,
            t.InitialStateTensor, t.OutputGradientTensor, t.FinalStateGradientTensor, gradients.Dq, gradients.Dk,
            gradients.Dv, gradients.DInitialState);
        test.AssertBackward("ParallelRetention.BackwardPacked", gradients);
        ChunkwiseRetention.BackwardPacked(t.QueryTensor, t.KeyTensor, t.ValueTensor, t.Decay, 4, test.CuSeqlens,
            t.InitialStateTensor, t.OutputGradientTensor, t.FinalStateGradientTensor, gradients.Dq, gradients.Dk,
            gradients.Dv, gradients.DInitialState);
        test.AssertBackward("ChunkwiseRetention.BackwardPacked", gradients);
    }

    [Fact]
    public void The_packed_references_equal_each_document_alone_and_each_other()
    {
        foreach (var index in Enumerable.Range(0, Cases.Length))
        {
            using var test = Case(index, 1000 + index);
            var (parallel, recurrent, parallelGradients, recurrentGradients) = test.PackedReferences();
            foreach (var (form, output, gradients) in new[]
                     {
                         ("parallel", parallel, parallelGradients), ("recurrent", recurrent, recurrentGradients),
                     })
            {
                Numerics.AssertClose($"{form} reference: output, {test}", ToFloat(output.Output), test.Alone.Output);
                Numerics.AssertClose($"{form} reference: final state, {test}", ToFloat(output.FinalState),
                    test.Alone.FinalState);
                Numerics.AssertClose($"{form} reference: dq, {test}", ToFloat(gradients.QueryGradient),
                    test.AloneGradients.QueryGradient);
                Numerics.AssertClose($"{form} reference: dk, {test}", ToFloat(gradients.KeyGradient),
                    test.AloneGradients.KeyGradient);
                Numerics.AssertClose($"{form} reference: dv, {test}", ToFloat(gradients.ValueGradient),
                    test.AloneGradients.ValueGradient);
                Numerics.AssertClose($"{form} reference: dS0, {test}", ToFloat(gradients.InitialStateGradient),
                    test.AloneGradients.InitialStateGradient);
            }

            // The negative control: the reference without the boundaries.
            var t = test.Test;
            var unpacked = RetentionReference.Parallel(test.Shape, t.Decay, t.Q, t.K, t.V, t.InitialState);
            Numerics.AssertRejected(test.CheckOutput($"unpacked reference, {test}", ToFloat(unpacked.Output)));
        }
    }

    [Fact]
    public void One_document_per_row_is_the_unpacked_computation()
    {
        using var test = new PackedRetentionCase(device, new RetentionShape(2, 9, 2, 3, 5), DecaySchedule.Paper(2),
            [[9], [9]], 1100);
        var t = test.Test;
        using var output = t.NewOutput();
        using var state = t.NewState();
        ChunkwiseRetention.ForwardPacked(t.QueryTensor, t.KeyTensor, t.ValueTensor, t.Decay, 4, test.CuSeqlens,
            output, t.InitialStateTensor, state);
        t.AssertForward("packed with one document per row", output, state);
    }

    [Fact]
    public void Offsets_are_checked_naming_the_argument_the_expectation_and_the_value()
    {
        using var q = Tensor.Zeros(device, 2, 3, 1, 2);
        using var v = Tensor.Zeros(device, 2, 3, 1, 2);
        using var o = Tensor.Zeros(device, 2, 3, 1, 2);
        var decay = DecaySchedule.Paper(1);
        void Rejected(int[] offsets, params string[] fragments)
        {
            var error = Assert.ThrowsAny<ArgumentException>(() =>
                ParallelRetention.ForwardPacked(q, q, v, decay, offsets, o));
            Assert.Equal("cuSeqlens", error.ParamName);
            foreach (var fragment in fragments)
                Assert.Contains(fragment, error.Message);
        }

        Rejected([1, 3, 6], "starts at 1", "expected 0");
        Rejected([0, 3, 3, 6], "not strictly increasing", "[2] = 3 after [1] = 3");
        Rejected([0, 3, 5], "ends at 5", "B·T = 2·3 = 6");
        Rejected([0, 2, 6], "no offset at 3", "row 1");
        Rejected([0], "1 offset(s)", "at least 2");
        Assert.Throws<ArgumentNullException>(() => ParallelRetention.ForwardPacked(q, q, v, decay, null!, o));
        Assert.Throws<ArgumentException>(() => PackedSequences.Offsets(2, 0));
    }
}
