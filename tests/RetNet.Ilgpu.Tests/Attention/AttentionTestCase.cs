using RetNet.Ilgpu.Attention;
using RetNet.Ilgpu.Tests.Support;

namespace RetNet.Ilgpu.Tests.Attention;

/// <summary>
/// One random attention problem: host inputs, the same inputs on the device, and the double references of the forward
/// and backward pass. Shared by the tests and the property suite so both compare the same way, with the project's one
/// tolerance rule (<see cref="Numerics.Check(string, IReadOnlyList{float}, IReadOnlyList{double}, double, double)"/>).
/// </summary>
public sealed class AttentionTestCase : IDisposable
{
    private readonly Lazy<AttentionReferenceOutput> forward;
    private readonly Lazy<AttentionReferenceGradients> backward;
    private readonly Lazy<(double Dq, double Dk, double Dv)> floors;

    /// <summary>Draws q, k, v and dO uniformly in [−1, 1) from the seed; <paramref name="scale"/> null means 1/√Dk.</summary>
    public AttentionTestCase(RetNetDevice device, AttentionShape shape, int seed, float? scale = null)
    {
        Device = device;
        Shape = shape;
        Scale = scale ?? CausalAttention.DefaultScale(shape.KeyDim);
        Q = Numerics.Uniform(seed, shape.QueryLength);
        K = Numerics.Uniform(seed + 1, shape.QueryLength);
        V = Numerics.Uniform(seed + 2, shape.ValueLength);
        OutputGradient = Numerics.Uniform(seed + 3, shape.ValueLength);
        QueryTensor = Tensor.FromHost(device, Q, shape.QueryShape);
        KeyTensor = Tensor.FromHost(device, K, shape.QueryShape);
        ValueTensor = Tensor.FromHost(device, V, shape.ValueShape);
        OutputGradientTensor = Tensor.FromHost(device, OutputGradient, shape.ValueShape);
        forward = new(() => AttentionReference.Forward(shape, Scale, Q, K, V));
        backward = new(() => AttentionReference.Backward(shape, Scale, Q, K, V, OutputGradient));
        floors = new(GradientFloors);
    }

    /// <summary>The device the tensors live on.</summary>
    public RetNetDevice Device { get; }

    /// <summary>The sizes.</summary>
    public AttentionShape Shape { get; }

    /// <summary>The logit scale s.</summary>
    public float Scale { get; }

    /// <summary>Host queries.</summary>
    public float[] Q { get; }

    /// <summary>Host keys.</summary>
    public float[] K { get; }

    /// <summary>Host values.</summary>
    public float[] V { get; }

    /// <summary>Host dO.</summary>
    public float[] OutputGradient { get; }

    /// <summary>q on the device.</summary>
    public Tensor QueryTensor { get; }

    /// <summary>k on the device.</summary>
    public Tensor KeyTensor { get; }

    /// <summary>v on the device.</summary>
    public Tensor ValueTensor { get; }

    /// <summary>dO on the device.</summary>
    public Tensor OutputGradientTensor { get; }

    /// <summary>The double-precision forward pass.</summary>
    public AttentionReferenceOutput Reference => forward.Value;

    /// <summary>The double-precision backward pass.</summary>
    public AttentionReferenceGradients ReferenceGradients => backward.Value;

    /// <summary>A new output tensor [B, T, H, Dv].</summary>
    public Tensor NewOutput() => Tensor.Zeros(Device, Shape.ValueShape);

    /// <summary>A new log-sum-exp tensor [B, H, T].</summary>
    public Tensor NewLogSumExp() => Tensor.Zeros(Device, Shape.RowShape);

    /// <summary>New gradient tensors dq, dk, dv.</summary>
    public AttentionGradientTensors NewGradients() => new(
        Tensor.Zeros(Device, Shape.QueryShape), Tensor.Zeros(Device, Shape.QueryShape),
        Tensor.Zeros(Device, Shape.ValueShape));

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
        var floor = floors.Value;
        return
        [
            Numerics.Check($"{what}: dq", dq, expected.QueryGradient, floor: floor.Dq),
            Numerics.Check($"{what}: dk", dk, expected.KeyGradient, floor: floor.Dk),
            Numerics.Check($"{what}: dv", dv, expected.ValueGradient, floor: floor.Dv),
        ];
    }

    /// <summary>
    /// The floors of the gradients' tolerance (see <see cref="Numerics.Check(string, IReadOnlyList{float},
    /// IReadOnlyList{double}, double, double)"/>): each gradient evaluated on the magnitudes of its terms,
    /// |dS_ij| ≤ P_ij (Σ_e |dO_ie v_je| + Σ_e |dO_ie o_ie|), dq_i ≤ s Σ_j |dS_ij| |k_j|, dk_j ≤ s Σ_i |dS_ij| |q_i|,
    /// dv_j ≤ Σ_i P_ij |dO_i|, at their largest. A row of dS sums to zero (the rows of P sum to one), so dq cancels
    /// by construction — to exactly 0 at T = 1 — and carries the rounding of its terms, not of its own size.
    /// </summary>
    private (double Dq, double Dk, double Dv) GradientFloors()
    {
        var s = Shape;
        var o = Reference.Output;
        var dq = new double[s.QueryLength];
        var dk = new double[s.QueryLength];
        var dv = new double[s.ValueLength];
        for (var b = 0; b < s.Batch; b++)
        for (var h = 0; h < s.Heads; h++)
        for (var i = 0; i < s.SeqLen; i++)
        {
            var (qi, oi) = (Row(b, i, h) * s.KeyDim, Row(b, i, h) * s.ValueDim);
            var delta = 0.0;
            for (var e = 0; e < s.ValueDim; e++)
                delta += Math.Abs(OutputGradient[oi + e] * o[oi + e]);
            for (var j = 0; j <= i; j++)
            {
                var (kj, vj) = (Row(b, j, h) * s.KeyDim, Row(b, j, h) * s.ValueDim);
                double logit = 0, dp = 0;
                for (var d = 0; d < s.KeyDim; d++)
                    logit += (double)Q[qi + d] * K[kj + d];
                for (var e = 0; e < s.ValueDim; e++)
                    dp += Math.Abs((double)OutputGradient[oi + e] * V[vj + e]);
                var p = Math.Exp(Scale * logit - Reference.LogSumExp[(b * s.Heads + h) * s.SeqLen + i]);
                var ds = p * (dp + delta);
                for (var d = 0; d < s.KeyDim; d++)
                {
                    dq[qi + d] += Math.Abs(Scale) * ds * Math.Abs(K[kj + d]);
                    dk[kj + d] += Math.Abs(Scale) * ds * Math.Abs(Q[qi + d]);
                }
                for (var e = 0; e < s.ValueDim; e++)
                    dv[vj + e] += p * Math.Abs(OutputGradient[oi + e]);
            }
        }
        return (Max(dq), Max(dk), Max(dv));

        int Row(int b, int t, int h) => (b * s.SeqLen + t) * s.Heads + h;
        static double Max(double[] x) => x.Length == 0 ? 0 : x.Max();
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
    /// Asserts the check rejects zeros for the output and every gradient that is not identically zero: the
    /// comparisons are not vacuous. At T = 1 dq and dk are exactly zero (one key, P = 1, dS = 0), and zeros are right.
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
            if (Shape.SeqLen > 1 || i == 2)
                Numerics.AssertRejected(checks[i]);
            else
                Assert.All(references[i], x => Assert.Equal(0.0, x));
        }
    }

    private static void AssertPassed(Closeness check) => Assert.True(check.Passed, check.Message);

    /// <inheritdoc/>
    public void Dispose()
    {
        QueryTensor.Dispose();
        KeyTensor.Dispose();
        ValueTensor.Dispose();
        OutputGradientTensor.Dispose();
    }

    /// <inheritdoc/>
    public override string ToString() => $"{Shape} s={Scale:G4}";
}

/// <summary>Gradient outputs of one backward pass.</summary>
/// <param name="Dq">dq [B, T, H, Dk].</param>
/// <param name="Dk">dk [B, T, H, Dk].</param>
/// <param name="Dv">dv [B, T, H, Dv].</param>
public sealed record AttentionGradientTensors(Tensor Dq, Tensor Dk, Tensor Dv) : IDisposable
{
    /// <inheritdoc/>
    public void Dispose()
    {
        Dq.Dispose();
        Dk.Dispose();
        Dv.Dispose();
    }
}

/// <summary>Host-side slicing of [B, T, H, D] arrays along T, to cut a sequence into a prefill and decode steps.</summary>
public static class AttentionTokens
{
    /// <summary>Tokens [start, start + count) of a [B, T, H, dim] array, as a [B, count, H, dim] array.</summary>
    public static float[] Slice(float[] x, AttentionShape shape, int dim, int start, int count)
    {
        var rowLength = shape.Heads * dim;
        var result = new float[shape.Batch * count * rowLength];
        for (var b = 0; b < shape.Batch; b++)
            Array.Copy(x, (b * shape.SeqLen + start) * rowLength, result, b * count * rowLength, count * rowLength);
        return result;
    }

    /// <summary>Writes a [B, count, H, dim] array into tokens [start, start + count) of a [B, T, H, dim] array.</summary>
    public static void Place(float[] segment, float[] x, AttentionShape shape, int dim, int start, int count)
    {
        var rowLength = shape.Heads * dim;
        for (var b = 0; b < shape.Batch; b++)
            Array.Copy(segment, b * count * rowLength, x, (b * shape.SeqLen + start) * rowLength, count * rowLength);
    }
}
