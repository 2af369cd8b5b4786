using RetNet.Ilgpu.Retention;
using RetNet.Ilgpu.Tests.Support;
using RetNet.Ilgpu.Verification.Cases;
using static RetNet.Ilgpu.Tests.Support.NegativeControls;

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

    /// <summary>γ = 1 − 1e-13 for every head: its powers up to any T here round to exactly 1 in fp32, so it stands
    /// for a kernel that lost the decay by rounding γ to 1 (which <see cref="DecaySchedule"/> refuses).</summary>
    public DecaySchedule DecayRoundedToOne =>
        DecaySchedule.FromValues(Enumerable.Repeat(1 - 1e-13, Shape.Heads).ToArray());

    /// <summary>
    /// Long enough that the decay matters: T ≥ 16 and, in some head, γ^(T−1) ≤ 1/2, so that rounding γ to 1 moves the
    /// weight of the oldest token by at least half of it, in a sum of at least 15 random terms.
    /// </summary>
    public bool DecayMatters =>
        Shape.SeqLen >= 16 && Decay.Gammas.Any(gamma => Math.Pow(gamma, Shape.SeqLen - 1) <= 0.5);

    /// <summary>
    /// The terms off the diagonal carry weight: T ≥ 8 and some head with γ ≥ 1/2. On the diagonal (q_t·k_t) is
    /// symmetric, so swapping q and k changes only the terms j &lt; t (and q_t·S_0), and with a tiny γ there are
    /// none that count.
    /// </summary>
    public bool PastTermsMatter => Shape.SeqLen >= 8 && Decay.Gammas.Any(gamma => gamma >= 0.5);

    /// <summary>
    /// Negative controls of the forward comparison on this problem's own inputs: wrong computations, each held to the
    /// reference by the same rule as the forms (<see cref="CheckOutput"/>, <see cref="CheckFinalState"/>) and asserted
    /// rejected wherever its stated condition makes the difference exceed the tolerance:
    /// <list type="bullet">
    /// <item><description>zeros, always;</description></item>
    /// <item><description>γ rounded to 1 (the reference at <see cref="DecayRoundedToOne"/>), output and final state,
    /// where <see cref="DecayMatters"/>;</description></item>
    /// <item><description>q and k swapped (the reference of q_t·k_j read as k_t·q_j), output, where
    /// <see cref="PastTermsMatter"/>;</description></item>
    /// <item><description><paramref name="output"/> (the kernel's) read one position late, o_(t−1) in place of o_t,
    /// where T ≥ 8.</description></item>
    /// </list>
    /// </summary>
    public void AssertWrongComputationsAreRejected(string what, IReadOnlyList<float> output)
    {
        ArgumentNullException.ThrowIfNull(output);
        AssertZerosAreRejected(what);
        if (DecayMatters)
        {
            var undecayed = RetentionReference.Parallel(Shape, DecayRoundedToOne, Q, K, V, InitialState);
            Numerics.AssertRejected(CheckOutput($"{what}, γ rounded to 1", ToFloat(undecayed.Output)));
            Numerics.AssertRejected(CheckFinalState($"{what}, γ rounded to 1", ToFloat(undecayed.FinalState)));
        }
        if (PastTermsMatter)
        {
            var swapped = RetentionReference.Parallel(Shape, Decay, K, Q, V, InitialState);
            Numerics.AssertRejected(CheckOutput($"{what}, q and k swapped", ToFloat(swapped.Output)));
        }
        if (Shape.SeqLen >= 8)
            Numerics.AssertRejected(CheckOutput($"{what}, one position late",
                OnePositionLate(output, Shape.Batch, Shape.SeqLen, Shape.Heads * Shape.ValueDim)));
    }

    /// <summary>
    /// Negative controls of the backward comparison (<see cref="CheckBackward"/>), each asserted rejected where a
    /// gradient flows (dO or dS_T given; without either every gradient is exactly zero): zeros; dq and dk of
    /// <paramref name="gradients"/> (the kernel's) swapped, which differ in every term (dq_t sums k_j, dk_j sums
    /// q_t); and, where <see cref="DecayMatters"/>, the reference backward with γ rounded to 1.
    /// </summary>
    public void AssertWrongGradientsAreRejected(string what, RetentionGradientTensors gradients)
    {
        ArgumentNullException.ThrowIfNull(gradients);
        if (OutputGradient is null && FinalStateGradient is null)
            return;
        var (dq, dk, dv, dS0) = (gradients.Dq.ToHost(), gradients.Dk.ToHost(), gradients.Dv.ToHost(),
            gradients.DInitialState.ToHost());
        AssertAnyRejected(CheckBackward($"{what}, zeros", new float[dq.Length], new float[dk.Length],
            new float[dv.Length], new float[dS0.Length]));
        AssertAnyRejected(CheckBackward($"{what}, dq and dk swapped", dk, dq, dv, dS0));
        if (DecayMatters)
        {
            var undecayed = RetentionReference.ParallelBackward(Shape, DecayRoundedToOne, Q, K, V, InitialState,
                OutputGradient, FinalStateGradient);
            AssertAnyRejected(CheckBackward($"{what}, γ rounded to 1", ToFloat(undecayed.QueryGradient),
                ToFloat(undecayed.KeyGradient), ToFloat(undecayed.ValueGradient),
                ToFloat(undecayed.InitialStateGradient)));
        }
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
