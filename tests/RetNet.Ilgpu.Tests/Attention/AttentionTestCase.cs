using RetNet.Ilgpu.Attention;
using RetNet.Ilgpu.Tests.Support;
using RetNet.Ilgpu.Verification.Cases;

namespace RetNet.Ilgpu.Tests.Attention;

/// <summary>
/// One random attention problem (<see cref="AttentionCase"/>: host inputs, the double references of the forward and
/// backward pass, the floors of the gradients' tolerance) with the same inputs on the device. Shared by the tests and
/// the property suite so both compare the same way, with the project's one tolerance rule
/// (<see cref="Numerics.Check(string, IReadOnlyList{float}, IReadOnlyList{double}, double, double)"/>).
/// </summary>
public sealed class AttentionTestCase : IDisposable
{
    /// <summary>Draws q, k, v and dO as <see cref="AttentionCase"/> does, and uploads them; <paramref name="scale"/>
    /// null means 1/√Dk.</summary>
    public AttentionTestCase(RetNetDevice device, AttentionShape shape, int seed, float? scale = null)
    {
        Device = device;
        Case = new AttentionCase(shape, seed, scale);
        Tensors = Case.Upload(device);
    }

    /// <summary>The device the tensors live on.</summary>
    public RetNetDevice Device { get; }

    /// <summary>The host problem, its references and gradient floors, shared with <c>retnet verify</c>.</summary>
    public AttentionCase Case { get; }

    /// <summary>The inputs on the device.</summary>
    public AttentionTensors Tensors { get; }

    /// <summary>The sizes.</summary>
    public AttentionShape Shape => Case.Shape;

    /// <summary>The logit scale s.</summary>
    public float Scale => Case.Scale;

    /// <summary>Host queries.</summary>
    public float[] Q => Case.Q;

    /// <summary>Host keys.</summary>
    public float[] K => Case.K;

    /// <summary>Host values.</summary>
    public float[] V => Case.V;

    /// <summary>Host dO.</summary>
    public float[] OutputGradient => Case.OutputGradient;

    /// <summary>q on the device.</summary>
    public Tensor QueryTensor => Tensors.Q;

    /// <summary>k on the device.</summary>
    public Tensor KeyTensor => Tensors.K;

    /// <summary>v on the device.</summary>
    public Tensor ValueTensor => Tensors.V;

    /// <summary>dO on the device.</summary>
    public Tensor OutputGradientTensor => Tensors.OutputGradient;

    /// <summary>The double-precision forward pass.</summary>
    public AttentionReferenceOutput Reference => Case.Reference;

    /// <summary>The double-precision backward pass.</summary>
    public AttentionReferenceGradients ReferenceGradients => Case.ReferenceGradients;

    /// <summary>A new output tensor [B, T, H, Dv].</summary>
    public Tensor NewOutput() => Tensor.Zeros(Device, Shape.ValueShape);

    /// <summary>A new log-sum-exp tensor [B, H, T].</summary>
    public Tensor NewLogSumExp() => Tensor.Zeros(Device, Shape.RowShape);

    /// <summary>New gradient tensors dq, dk, dv.</summary>
    public AttentionGradientTensors NewGradients() => Case.NewGradients(Device);

    /// <summary>The output against the reference (or against <paramref name="expected"/>), by the project's rule.</summary>
    public Closeness CheckOutput(string what, IReadOnlyList<float> output, IReadOnlyList<double>? expected = null) =>
        Numerics.Check($"{what}: output", output, expected ?? Reference.Output);

    /// <summary>The log-sum-exp against the reference, by the project's rule.</summary>
    public Closeness CheckLogSumExp(string what, IReadOnlyList<float> logSumExp) =>
        Numerics.Check($"{what}: log-sum-exp", logSumExp, Reference.LogSumExp);

    /// <summary>dq, dk and dv against the reference (or <paramref name="expected"/>), in that order.</summary>
    public IReadOnlyList<Closeness> CheckBackward(string what, IReadOnlyList<float> dq, IReadOnlyList<float> dk,
        IReadOnlyList<float> dv, AttentionReferenceGradients? expected = null)
    {
        expected ??= ReferenceGradients;
        var floor = Case.GradientFloors;
        return
        [
            Numerics.Check($"{what}: dq", dq, expected.QueryGradient, floor: floor.Dq),
            Numerics.Check($"{what}: dk", dk, expected.KeyGradient, floor: floor.Dk),
            Numerics.Check($"{what}: dv", dv, expected.ValueGradient, floor: floor.Dv),
        ];
    }

    /// <summary>Asserts the output and, when given, the log-sum-exp against the reference.</summary>
    public void AssertForward(string what, Tensor output, Tensor? logSumExp)
    {
        AssertPassed(CheckOutput(what, output.ToHost()));
        if (logSumExp is not null)
            AssertPassed(CheckLogSumExp(what, logSumExp.ToHost()));
    }

    /// <summary>Asserts dq, dk, dv against the reference.</summary>
    public void AssertBackward(string what, AttentionGradientTensors gradients)
    {
        foreach (var check in CheckBackward(what, gradients.Dq.ToHost(), gradients.Dk.ToHost(), gradients.Dv.ToHost()))
            AssertPassed(check);
    }

    /// <summary>
    /// Asserts the check rejects zeros for the output, dv, and dq and dk wherever they are larger than the check's
    /// resolution: the comparisons are not vacuous. At T = 1 dq and dk are exactly zero (one key, P = 1, dS = 0), and
    /// zeros are right. Where the softmax saturates (one key takes all but ~1e-5 of a row's weight), dS nearly
    /// cancels, dq and dk shrink below tolerance · floor — the rounding their terms allow an fp32 kernel — and zeros
    /// are within the bound as any result of that size would be; that is asserted as such, naming the sizes.
    /// </summary>
    public void AssertZerosAreRejected(string what)
    {
        Numerics.AssertRejected(CheckOutput($"{what}, zeros", new float[Shape.ValueLength]));
        var checks = CheckBackward($"{what}, zeros", new float[Shape.QueryLength], new float[Shape.QueryLength],
            new float[Shape.ValueLength]);
        var expected = ReferenceGradients;
        double[][] references = [expected.QueryGradient, expected.KeyGradient, expected.ValueGradient];
        for (var i = 0; i < checks.Count; i++)
        {
            if (Shape.SeqLen == 1 && i < 2)
                Assert.All(references[i], x => Assert.Equal(0.0, x));
            else if (i == 2 || !IsBelowResolution(references[i], checks[i]))
                Numerics.AssertRejected(checks[i]);
        }
    }

    /// <summary>
    /// Whether a gradient's reference is no larger than the bound of its check, so that zeros differ from it by less
    /// than the bound. With the tolerance below 1 that can only happen where the floor sets the bound: the gradient is
    /// at most tolerance × the magnitude of its terms.
    /// </summary>
    private static bool IsBelowResolution(double[] reference, Closeness check) =>
        reference.Length > 0 && reference.Max(Math.Abs) <= check.Bound;

    private static void AssertPassed(Closeness check) => Assert.True(check.Passed, check.Message);

    /// <inheritdoc/>
    public void Dispose() => Tensors.Dispose();

    /// <inheritdoc/>
    public override string ToString() => Case.ToString();
}

/// <summary>Host-side slicing of [B, T, H, D] arrays along T (<see cref="TokenSlices"/>), to cut a sequence into a
/// prefill and decode steps.</summary>
public static class AttentionTokens
{
    /// <summary>Tokens [start, start + count) of a [B, T, H, dim] array, as a [B, count, H, dim] array.</summary>
    public static float[] Slice(float[] x, AttentionShape shape, int dim, int start, int count) =>
        TokenSlices.Slice(x, shape.Batch, shape.SeqLen, shape.Heads, dim, start, count);

    /// <summary>Writes a [B, count, H, dim] array into tokens [start, start + count) of a [B, T, H, dim] array.</summary>
    public static void Place(float[] segment, float[] x, AttentionShape shape, int dim, int start, int count) =>
        TokenSlices.Place(segment, x, shape.Batch, shape.SeqLen, shape.Heads, dim, start, count);
}
