using RetNet.Ilgpu.Retention;
using RetNet.Ilgpu.Tests.Support;
using RetNet.Ilgpu.Verification.Cases;

namespace RetNet.Ilgpu.Tests.Retention;

/// <summary>
/// One random retention problem (<see cref="RetentionCase"/>: host inputs and the double references of the forward and
/// backward pass) with the same inputs on the device. Shared by the tests and the property suite so both compare the
/// same way, with <see cref="Numerics.AssertClose(string, IReadOnlyList{float}, IReadOnlyList{double}, double, double)"/>
/// (the project's one tolerance rule).
/// </summary>
public sealed class RetentionTestCase : IDisposable
{
    /// <summary>Draws q, k, v (and S_0, dO, dS_T when asked) as <see cref="RetentionCase"/> does; uploads them.</summary>
    public RetentionTestCase(RetNetDevice device, RetentionShape shape, DecaySchedule decay, int seed, float scale = 1f,
        bool withInitialState = true, bool withOutputGradient = true, bool withFinalStateGradient = true)
    {
        Device = device;
        Case = new RetentionCase(shape, decay, seed, scale, withInitialState, withOutputGradient,
            withFinalStateGradient);
        Tensors = Case.Upload(device);
    }

    /// <summary>The device the tensors live on.</summary>
    public RetNetDevice Device { get; }

    /// <summary>The host problem and its references, shared with <c>retnet verify</c>.</summary>
    public RetentionCase Case { get; }

    /// <summary>The inputs on the device.</summary>
    public RetentionTensors Tensors { get; }

    /// <summary>The sizes.</summary>
    public RetentionShape Shape => Case.Shape;

    /// <summary>γ per head.</summary>
    public DecaySchedule Decay => Case.Decay;

    /// <summary>Host inputs.</summary>
    public float[] Q => Case.Q;

    /// <summary>Host keys.</summary>
    public float[] K => Case.K;

    /// <summary>Host values.</summary>
    public float[] V => Case.V;

    /// <summary>Host S_0, or null.</summary>
    public float[]? InitialState => Case.InitialState;

    /// <summary>Host dO, or null.</summary>
    public float[]? OutputGradient => Case.OutputGradient;

    /// <summary>Host dS_T, or null.</summary>
    public float[]? FinalStateGradient => Case.FinalStateGradient;

    /// <summary>q on the device.</summary>
    public Tensor QueryTensor => Tensors.Q;

    /// <summary>k on the device.</summary>
    public Tensor KeyTensor => Tensors.K;

    /// <summary>v on the device.</summary>
    public Tensor ValueTensor => Tensors.V;

    /// <summary>S_0 on the device, or null.</summary>
    public Tensor? InitialStateTensor => Tensors.InitialState;

    /// <summary>dO on the device, or null.</summary>
    public Tensor? OutputGradientTensor => Tensors.OutputGradient;

    /// <summary>dS_T on the device, or null.</summary>
    public Tensor? FinalStateGradientTensor => Tensors.FinalStateGradient;

    /// <summary>The double-precision quadratic-form forward pass.</summary>
    public RetentionReferenceOutput Reference => Case.Reference;

    /// <summary>The double-precision quadratic-form backward pass.</summary>
    public RetentionReferenceGradients ReferenceGradients => Case.ReferenceGradients;

    /// <summary>A new output tensor [B, T, H, Dv].</summary>
    public Tensor NewOutput() => Tensor.Zeros(Device, Shape.ValueShape);

    /// <summary>A new state tensor [B, H, Dk, Dv].</summary>
    public Tensor NewState() => Tensor.Zeros(Device, Shape.StateShape);

    /// <summary>New gradient tensors dq, dk, dv, dS_0.</summary>
    public RetentionGradientTensors NewGradients() => Case.NewGradients(Device);

    /// <summary>The output against the reference, by the project's rule; negative controls assert it rejects.</summary>
    public Closeness CheckOutput(string what, IReadOnlyList<float> output) =>
        Numerics.Check($"{what}: output", output, Reference.Output);

    /// <summary>The final state against the reference, by the project's rule.</summary>
    public Closeness CheckFinalState(string what, IReadOnlyList<float> finalState) =>
        Numerics.Check($"{what}: final state", finalState, Reference.FinalState);

    /// <summary>dq, dk, dv and dS_0 against the reference, by the project's rule, in that order.</summary>
    public IReadOnlyList<Closeness> CheckBackward(string what, IReadOnlyList<float> dq, IReadOnlyList<float> dk,
        IReadOnlyList<float> dv, IReadOnlyList<float> dInitialState)
    {
        var expected = ReferenceGradients;
        return
        [
            Numerics.Check($"{what}: dq", dq, expected.QueryGradient),
            Numerics.Check($"{what}: dk", dk, expected.KeyGradient),
            Numerics.Check($"{what}: dv", dv, expected.ValueGradient),
            Numerics.Check($"{what}: dS0", dInitialState, expected.InitialStateGradient),
        ];
    }

    /// <summary>Asserts output and final state against the reference.</summary>
    public void AssertForward(string what, Tensor output, Tensor? finalState)
    {
        AssertPassed(CheckOutput(what, output.ToHost()));
        if (finalState is not null)
            AssertPassed(CheckFinalState(what, finalState.ToHost()));
    }

    /// <summary>Asserts dq, dk, dv, dS_0 against the reference.</summary>
    public void AssertBackward(string what, RetentionGradientTensors gradients)
    {
        foreach (var check in CheckBackward(what, gradients.Dq.ToHost(), gradients.Dk.ToHost(), gradients.Dv.ToHost(),
                     gradients.DInitialState.ToHost()))
            AssertPassed(check);
    }

    /// <summary>
    /// Asserts the check rejects zeros for the output and the final state: the negative control that the comparison
    /// of this problem is not vacuous, whatever the scale of its inputs.
    /// </summary>
    public void AssertZerosAreRejected(string what)
    {
        Numerics.AssertRejected(CheckOutput($"{what}, zeros", new float[Shape.ValueLength]));
        Numerics.AssertRejected(CheckFinalState($"{what}, zeros", new float[Shape.StateLength]));
    }

    private static void AssertPassed(Closeness check) => Assert.True(check.Passed, check.Message);

    /// <inheritdoc/>
    public void Dispose() => Tensors.Dispose();

    /// <inheritdoc/>
    public override string ToString() => Case.ToString();
}

/// <summary>Host-side slicing of [B, T, H, D] arrays along T (<see cref="TokenSlices"/>), to cut a sequence into
/// segments.</summary>
public static class RetentionTokens
{
    /// <summary>Tokens [start, start + count) of a [B, T, H, dim] array, as a [B, count, H, dim] array.</summary>
    public static float[] Slice(float[] x, RetentionShape shape, int dim, int start, int count) =>
        TokenSlices.Slice(x, shape.Batch, shape.SeqLen, shape.Heads, dim, start, count);

    /// <summary>Writes a [B, count, H, dim] array into tokens [start, start + count) of a [B, T, H, dim] array.</summary>
    public static void Place(float[] segment, float[] x, RetentionShape shape, int dim, int start, int count) =>
        TokenSlices.Place(segment, x, shape.Batch, shape.SeqLen, shape.Heads, dim, start, count);
}
