using RetNet.Ilgpu.Attention;
using RetNet.Ilgpu.Devices;
using RetNet.Ilgpu.Tensors;

namespace RetNet.Ilgpu.Verification.Cases;

/// <summary>The floors of the attention gradients' tolerance (<see cref="AttentionCase.GradientFloors"/>).</summary>
/// <param name="Dq">The floor of dq.</param>
/// <param name="Dk">The floor of dk.</param>
/// <param name="Dv">The floor of dv.</param>
public readonly record struct AttentionGradientFloors(double Dq, double Dk, double Dv);

/// <summary>
/// One random causal-attention problem on the host: q, k, v and dO drawn from one seed, and the double-precision
/// references of the forward and backward pass with the floors of the gradients' tolerance, computed once on first
/// use. The one generator behind <c>retnet verify</c>'s attention checks and the attention tests and properties.
/// </summary>
public sealed class AttentionCase
{
    private readonly Lazy<AttentionReferenceOutput> forward;
    private readonly Lazy<AttentionReferenceGradients> backward;
    private readonly Lazy<AttentionGradientFloors> floors;

    /// <summary>Draws q (seed), k (seed + 1), v (seed + 2) and dO (seed + 3) uniformly in [−1, 1).</summary>
    /// <param name="shape">B, T, H, Dk, Dv.</param>
    /// <param name="seed">The first seed.</param>
    /// <param name="scale">The logit scale; null means 1/√Dk.</param>
    public AttentionCase(AttentionShape shape, int seed, float? scale = null)
    {
        Shape = shape;
        Scale = scale ?? CausalAttention.DefaultScale(shape.KeyDim);
        Q = CaseInputs.Uniform(seed, shape.QueryLength);
        K = CaseInputs.Uniform(seed + 1, shape.QueryLength);
        V = CaseInputs.Uniform(seed + 2, shape.ValueLength);
        OutputGradient = CaseInputs.Uniform(seed + 3, shape.ValueLength);
        forward = new(() => AttentionReference.Forward(shape, Scale, Q, K, V));
        backward = new(() => AttentionReference.Backward(shape, Scale, Q, K, V, OutputGradient));
        floors = new(ComputeGradientFloors);
    }

    /// <summary>The sizes.</summary>
    public AttentionShape Shape { get; }

    /// <summary>The logit scale s.</summary>
    public float Scale { get; }

    /// <summary>Queries [B, T, H, Dk].</summary>
    public float[] Q { get; }

    /// <summary>Keys [B, T, H, Dk].</summary>
    public float[] K { get; }

    /// <summary>Values [B, T, H, Dv].</summary>
    public float[] V { get; }

    /// <summary>dO [B, T, H, Dv].</summary>
    public float[] OutputGradient { get; }

    /// <summary>The double-precision forward pass.</summary>
    public AttentionReferenceOutput Reference => forward.Value;

    /// <summary>The double-precision backward pass.</summary>
    public AttentionReferenceGradients ReferenceGradients => backward.Value;

    /// <summary>
    /// The floors of the gradients' tolerance (<see cref="ToleranceRule"/>): each gradient evaluated on the magnitudes
    /// of its terms, |dS_ij| ≤ P_ij (Σ_e |dO_ie v_je| + Σ_e |dO_ie o_ie|), dq_i ≤ s Σ_j |dS_ij| |k_j|,
    /// dk_j ≤ s Σ_i |dS_ij| |q_i|, dv_j ≤ Σ_i P_ij |dO_i|, at their largest. A row of dS sums to zero (the rows of P sum
    /// to one), so dq cancels by construction — to exactly 0 at T = 1 — and carries the rounding of its terms, not of
    /// its own size.
    /// </summary>
    public AttentionGradientFloors GradientFloors => floors.Value;

    /// <summary>The inputs on <paramref name="device"/>; the caller disposes them.</summary>
    public AttentionTensors Upload(RetNetDevice device) => new(
        Tensor.FromHost(device, Q, Shape.QueryShape), Tensor.FromHost(device, K, Shape.QueryShape),
        Tensor.FromHost(device, V, Shape.ValueShape), Tensor.FromHost(device, OutputGradient, Shape.ValueShape));

    /// <summary>Zeroed gradient outputs dq, dk, dv on <paramref name="device"/>; the caller disposes them.</summary>
    public AttentionGradientTensors NewGradients(RetNetDevice device) => new(
        Tensor.Zeros(device, Shape.QueryShape), Tensor.Zeros(device, Shape.QueryShape),
        Tensor.Zeros(device, Shape.ValueShape));

    /// <inheritdoc/>
    public override string ToString() => $"{Shape} s={Scale:G4}";

    private AttentionGradientFloors ComputeGradientFloors()
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
        return new(Max(dq), Max(dk), Max(dv));

        int Row(int b, int t, int h) => (b * s.SeqLen + t) * s.Heads + h;
        static double Max(double[] x) => x.Length == 0 ? 0 : x.Max();
    }
}

/// <summary>The inputs of an <see cref="AttentionCase"/> on a device.</summary>
/// <param name="Q">q [B, T, H, Dk].</param>
/// <param name="K">k [B, T, H, Dk].</param>
/// <param name="V">v [B, T, H, Dv].</param>
/// <param name="OutputGradient">dO [B, T, H, Dv].</param>
public sealed record AttentionTensors(Tensor Q, Tensor K, Tensor V, Tensor OutputGradient) : IDisposable
{
    /// <inheritdoc/>
    public void Dispose()
    {
        foreach (var tensor in new[] { Q, K, V, OutputGradient })
            tensor.Dispose();
    }
}

/// <summary>Gradient outputs of one attention backward pass.</summary>
/// <param name="Dq">dq [B, T, H, Dk].</param>
/// <param name="Dk">dk [B, T, H, Dk].</param>
/// <param name="Dv">dv [B, T, H, Dv].</param>
public sealed record AttentionGradientTensors(Tensor Dq, Tensor Dk, Tensor Dv) : IDisposable
{
    /// <inheritdoc/>
    public void Dispose()
    {
        foreach (var tensor in new[] { Dq, Dk, Dv })
            tensor.Dispose();
    }
}
