using RetNet.Ilgpu.Retention;
using RetNet.Ilgpu.Tests.Support;
using RetNet.Ilgpu.Verification.Cases;
using static RetNet.Ilgpu.Tests.Support.NegativeControls;

namespace RetNet.Ilgpu.Tests.Retention;

/// <summary>
/// A retention problem whose rows hold packed documents (<see cref="PackedSequences"/>), with what packing must equal:
/// every document run alone through the double reference (its own sequence of B = 1; the row's S_0 for a row's first
/// document, the row's dS_T for its last), outputs, final states and gradients placed back where the document sits.
/// Shared by the tests and the property suite, so both compare alike, by the project's one tolerance rule.
/// </summary>
public sealed class PackedRetentionCase : IDisposable
{
    private readonly Lazy<(RetentionReferenceOutput Forward, RetentionReferenceGradients Backward)> alone;

    /// <summary>Draws the inputs as <see cref="RetentionTestCase"/> does; <paramref name="lengths"/>[b] are the
    /// lengths of row b's documents, in order, summing to T.</summary>
    public PackedRetentionCase(RetNetDevice device, RetentionShape shape, DecaySchedule decay, int[][] lengths,
        int seed, float scale = 1f, bool withInitialState = true, bool withOutputGradient = true,
        bool withFinalStateGradient = true)
    {
        ArgumentNullException.ThrowIfNull(lengths);
        Test = new RetentionTestCase(device, shape, decay, seed, scale, withInitialState, withOutputGradient,
            withFinalStateGradient);
        Lengths = lengths;
        CuSeqlens = PackedSequences.Offsets(lengths.SelectMany(row => row).ToArray());
        Bounds = PackedSequences.Upload(device, CuSeqlens, shape.Batch, shape.SeqLen, "lengths");
        alone = new(RunAlone);
    }

    /// <summary>The inputs, on the host and the device.</summary>
    public RetentionTestCase Test { get; }

    /// <summary>Each row's document lengths.</summary>
    public int[][] Lengths { get; }

    /// <summary>The documents' offsets into the flattened B·T tokens.</summary>
    public int[] CuSeqlens { get; }

    /// <summary>The token bounds on the device, for the forms' internal overloads.</summary>
    public IndexTensor Bounds { get; }

    /// <summary>The sizes.</summary>
    public RetentionShape Shape => Test.Shape;

    /// <summary>Every document run alone: the outputs and final states.</summary>
    public RetentionReferenceOutput Alone => alone.Value.Forward;

    /// <summary>Every document run alone: the gradients.</summary>
    public RetentionReferenceGradients AloneGradients => alone.Value.Backward;

    /// <summary>
    /// Some document starts after a row's first token and some head keeps γ ≥ 1/2: then a token after that start
    /// carries weight from the document before it unless the reset happens, so ignoring the boundaries must be rejected
    /// (the negative controls' condition).
    /// </summary>
    public bool BoundariesMatter =>
        Lengths.Any(row => row.Length > 1) && Test.Decay.Gammas.Any(gamma => gamma >= 0.5);

    /// <summary>The output against the documents run alone.</summary>
    public Closeness CheckOutput(string what, IReadOnlyList<float> output) =>
        Numerics.Check($"{what}: output", output, Alone.Output);

    /// <summary>The final state against the rows' last documents run alone.</summary>
    public Closeness CheckFinalState(string what, IReadOnlyList<float> state) =>
        Numerics.Check($"{what}: final state", state, Alone.FinalState);

    /// <summary>dq, dk, dv, dS_0 against the documents run alone.</summary>
    public IReadOnlyList<Closeness> CheckBackward(string what, IReadOnlyList<float> dq, IReadOnlyList<float> dk,
        IReadOnlyList<float> dv, IReadOnlyList<float> dInitialState) =>
    [
        Numerics.Check($"{what}: dq", dq, AloneGradients.QueryGradient),
        Numerics.Check($"{what}: dk", dk, AloneGradients.KeyGradient),
        Numerics.Check($"{what}: dv", dv, AloneGradients.ValueGradient),
        Numerics.Check($"{what}: dS0", dInitialState, AloneGradients.InitialStateGradient),
    ];

    /// <summary>Asserts output and (when given) final state equal the documents run alone.</summary>
    public void AssertForward(string what, Tensor output, Tensor? finalState)
    {
        var check = CheckOutput(what, output.ToHost());
        Assert.True(check.Passed, check.Message);
        if (finalState is null)
            return;
        check = CheckFinalState(what, finalState.ToHost());
        Assert.True(check.Passed, check.Message);
    }

    /// <summary>Asserts the gradients equal the documents run alone.</summary>
    public void AssertBackward(string what, RetentionGradientTensors gradients)
    {
        foreach (var check in CheckBackward(what, gradients.Dq.ToHost(), gradients.Dk.ToHost(), gradients.Dv.ToHost(),
                     gradients.DInitialState.ToHost()))
            Assert.True(check.Passed, check.Message);
    }

    /// <summary>Asserts the comparison rejects <paramref name="output"/>: a pass that ignored the boundaries.</summary>
    public void AssertOutputRejected(string what, Tensor output) =>
        Numerics.AssertRejected(CheckOutput($"{what}, boundaries ignored", output.ToHost()));

    /// <summary>Asserts the comparison rejects <paramref name="gradients"/> (some of dq, dk, dv, dS_0): a backward pass
    /// that ignored the boundaries.</summary>
    public void AssertGradientsRejected(string what, RetentionGradientTensors gradients) =>
        AssertAnyRejected(CheckBackward($"{what}, boundaries ignored", gradients.Dq.ToHost(), gradients.Dk.ToHost(),
            gradients.Dv.ToHost(), gradients.DInitialState.ToHost()));

    private (RetentionReferenceOutput, RetentionReferenceGradients) RunAlone()
    {
        var (shape, t) = (Shape, Test);
        var (heads, dk, dv) = (shape.Heads, shape.KeyDim, shape.ValueDim);
        var state = dk * dv * heads;
        var output = new double[shape.ValueLength];
        var final = new double[shape.StateLength];
        var (dq, dkAll, dvAll, dS0) = (new double[shape.QueryLength], new double[shape.QueryLength],
            new double[shape.ValueLength], new double[shape.StateLength]);
        for (var b = 0; b < shape.Batch; b++)
        {
            var start = 0;
            foreach (var length in Lengths[b])
            {
                var one = new RetentionShape(1, length, heads, dk, dv);
                var first = start == 0;
                var last = start + length == shape.SeqLen;
                var s0 = first ? Row(t.InitialState, b, state) : null;
                var dST = last ? Row(t.FinalStateGradient, b, state) : null;
                var (q, k, v) = (Tokens(t.Q, b, start, length, dk)!, Tokens(t.K, b, start, length, dk)!,
                    Tokens(t.V, b, start, length, dv)!);
                var forward = RetentionReference.Parallel(one, t.Decay, q, k, v, s0);
                var backward = RetentionReference.ParallelBackward(one, t.Decay, q, k, v, s0,
                    Tokens(t.OutputGradient, b, start, length, dv), dST);
                Place(forward.Output, output, b, start, dv);
                Place(backward.QueryGradient, dq, b, start, dk);
                Place(backward.KeyGradient, dkAll, b, start, dk);
                Place(backward.ValueGradient, dvAll, b, start, dv);
                if (last)
                    forward.FinalState.CopyTo(final, b * state);
                if (first)
                    backward.InitialStateGradient.CopyTo(dS0, b * state);
                start += length;
            }
        }
        return (new RetentionReferenceOutput(output, final), new RetentionReferenceGradients(dq, dkAll, dvAll, dS0));

        float[]? Tokens(float[]? x, int b, int start, int count, int dim) =>
            x?.AsSpan((b * shape.SeqLen + start) * heads * dim, count * heads * dim).ToArray();

        void Place(double[] source, double[] target, int b, int start, int dim) =>
            source.CopyTo(target, (b * shape.SeqLen + start) * heads * dim);
    }

    private static float[]? Row(float[]? x, int b, int length) => x?.AsSpan(b * length, length).ToArray();

    /// <summary>The packed references of the parallel and recurrent forms, forward and backward, for the reference's
    /// own checks.</summary>
    public (RetentionReferenceOutput Parallel, RetentionReferenceOutput Recurrent, RetentionReferenceGradients
        ParallelGradients, RetentionReferenceGradients RecurrentGradients) PackedReferences()
    {
        var t = Test;
        return (RetentionReference.Parallel(Shape, t.Decay, t.Q, t.K, t.V, t.InitialState, CuSeqlens),
            RetentionReference.Recurrent(Shape, t.Decay, t.Q, t.K, t.V, t.InitialState, CuSeqlens),
            RetentionReference.ParallelBackward(Shape, t.Decay, t.Q, t.K, t.V, t.InitialState, t.OutputGradient,
                t.FinalStateGradient, CuSeqlens),
            RetentionReference.RecurrentBackward(Shape, t.Decay, t.Q, t.K, t.V, t.InitialState, t.OutputGradient,
                t.FinalStateGradient, CuSeqlens));
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        Bounds.Dispose();
        Test.Dispose();
    }

    /// <inheritdoc/>
    public override string ToString() =>
        $"{Test} documents=[{string.Join(" | ", Lengths.Select(row => string.Join(", ", row)))}]";
}
