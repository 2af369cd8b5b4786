using RetNet.Ilgpu.Kernels;
using static RetNet.Ilgpu.Kernels.ReferenceHeads;

namespace RetNet.Ilgpu.Attention;

/// <summary>Output [B, T, H, Dv] and log-sum-exp [B, H, T] of a reference forward pass, in double precision.</summary>
/// <param name="Output">o, row-major [B, T, H, Dv].</param>
/// <param name="LogSumExp">L, row-major [B, H, T].</param>
public sealed record AttentionReferenceOutput(double[] Output, double[] LogSumExp);

/// <summary>Gradients of a reference backward pass, in double precision, each in the layout of its input.</summary>
/// <param name="QueryGradient">dq [B, T, H, Dk].</param>
/// <param name="KeyGradient">dk [B, T, H, Dk].</param>
/// <param name="ValueGradient">dv [B, T, H, Dv].</param>
public sealed record AttentionReferenceGradients(double[] QueryGradient, double[] KeyGradient, double[] ValueGradient);

/// <summary>
/// Plain C# reference of masked softmax attention in double precision (docs/ATTENTION.md §1): for each query row the
/// whole row of logits, a softmax over the visible keys, and the weighted sum of values; the backward pass from the
/// stored probabilities. The tests and properties hold <see cref="CausalAttention"/> against it. The mask is a
/// parameter so the tests can state what a wrong mask would give (their negative controls); every query must see at
/// least one key.
/// </summary>
public static class AttentionReference
{
    /// <summary>The causal mask: query i sees key j when j ≤ i.</summary>
    public static Func<int, int, bool> Causal { get; } = (i, j) => j <= i;

    /// <summary>o_i = Σ_j P_ij v_j with P_ij = exp(s·q_i·k_j − L_i) over the keys j that query i sees.</summary>
    /// <param name="shape">The sizes.</param>
    /// <param name="scale">s.</param>
    /// <param name="q">Queries [B, T, H, Dk].</param>
    /// <param name="k">Keys [B, T, H, Dk].</param>
    /// <param name="v">Values [B, T, H, Dv].</param>
    /// <param name="visible">Whether query i sees key j; <see cref="Causal"/> when null.</param>
    public static AttentionReferenceOutput Forward(AttentionShape shape, double scale, IReadOnlyList<float> q,
        IReadOnlyList<float> k, IReadOnlyList<float> v, Func<int, int, bool>? visible = null)
    {
        var p = new Problem(shape, scale, q, k, v, visible);
        var output = new double[shape.ValueLength];
        var logSumExp = new double[shape.RowCount];
        for (var b = 0; b < shape.Batch; b++)
        for (var h = 0; h < shape.Heads; h++)
        for (var i = 0; i < shape.SeqLen; i++)
        {
            var probabilities = p.Probabilities(b, h, i, out var rowLogSumExp);
            logSumExp[(b * shape.Heads + h) * shape.SeqLen + i] = rowLogSumExp;
            var oi = p.ValueIndex(b, i, h);
            for (var j = 0; j < shape.SeqLen; j++)
            {
                var vj = p.ValueIndex(b, j, h);
                for (var e = 0; e < shape.ValueDim; e++)
                    output[oi + e] += probabilities[j] * p.V[vj + e];
            }
        }
        return new AttentionReferenceOutput(output, logSumExp);
    }

    /// <summary>
    /// Gradients for ∂loss/∂o = dO: dP_ij = dO_i·v_j, dS_ij = P_ij (dP_ij − Σ_l P_il dP_il), dq_i = s Σ_j dS_ij k_j,
    /// dk_j = s Σ_i dS_ij q_i, dv_j = Σ_i P_ij dO_i.
    /// </summary>
    /// <param name="shape">The sizes.</param>
    /// <param name="scale">s.</param>
    /// <param name="q">Queries [B, T, H, Dk].</param>
    /// <param name="k">Keys [B, T, H, Dk].</param>
    /// <param name="v">Values [B, T, H, Dv].</param>
    /// <param name="dOutput">dO [B, T, H, Dv].</param>
    /// <param name="visible">Whether query i sees key j; <see cref="Causal"/> when null.</param>
    public static AttentionReferenceGradients Backward(AttentionShape shape, double scale, IReadOnlyList<float> q,
        IReadOnlyList<float> k, IReadOnlyList<float> v, IReadOnlyList<float> dOutput,
        Func<int, int, bool>? visible = null)
    {
        var p = new Problem(shape, scale, q, k, v, visible);
        var dO = Values(dOutput ?? throw new ArgumentNullException(nameof(dOutput)), shape.ValueLength,
            nameof(dOutput));
        var (T, Dk, Dv) = (shape.SeqLen, shape.KeyDim, shape.ValueDim);
        var dq = new double[shape.QueryLength];
        var dk = new double[shape.QueryLength];
        var dv = new double[shape.ValueLength];
        var dp = new double[T];
        for (var b = 0; b < shape.Batch; b++)
        for (var h = 0; h < shape.Heads; h++)
        for (var i = 0; i < T; i++)
        {
            var probabilities = p.Probabilities(b, h, i, out _);
            var (qi, oi) = (p.KeyIndex(b, i, h), p.ValueIndex(b, i, h));
            var expected = 0.0;
            for (var j = 0; j < T; j++)
            {
                dp[j] = Dot(dO, oi, p.V, p.ValueIndex(b, j, h), Dv);
                expected += probabilities[j] * dp[j];
            }
            for (var j = 0; j < T; j++)
            {
                var (kj, vj) = (p.KeyIndex(b, j, h), p.ValueIndex(b, j, h));
                var ds = probabilities[j] * (dp[j] - expected);
                for (var d = 0; d < Dk; d++)
                {
                    dq[qi + d] += scale * ds * p.K[kj + d];
                    dk[kj + d] += scale * ds * p.Q[qi + d];
                }
                for (var e = 0; e < Dv; e++)
                    dv[vj + e] += probabilities[j] * dO[oi + e];
            }
        }
        return new AttentionReferenceGradients(dq, dk, dv);
    }

    /// <summary>The inputs in double, the mask and the row-major index arithmetic of the layout.</summary>
    private sealed class Problem(AttentionShape shape, double scale, IReadOnlyList<float> q, IReadOnlyList<float> k,
        IReadOnlyList<float> v, Func<int, int, bool>? visible)
        : ReferenceHeads(Checked(shape).Batch, shape.SeqLen, shape.Heads, shape.KeyDim, shape.ValueDim, q, k, v)
    {
        private readonly AttentionShape shape = shape;
        private readonly double scale = scale;
        private readonly Func<int, int, bool> visible = visible ?? Causal;

        private static AttentionShape Checked(AttentionShape shape) =>
            shape.Batch < 1 || shape.SeqLen < 0 || shape.Heads < 1 || shape.KeyDim < 1 || shape.ValueDim < 1
                ? throw new ArgumentException(
                    $"Argument 'shape' is {shape}; expected T ≥ 0 and every other size ≥ 1.", nameof(shape))
                : shape;

        /// <summary>Row i of P over all T keys (0 where masked) and its log-sum-exp, the maximum subtracted first.</summary>
        public double[] Probabilities(int b, int h, int i, out double logSumExp)
        {
            var logits = new double[shape.SeqLen];
            var max = double.NegativeInfinity;
            var qi = KeyIndex(b, i, h);
            for (var j = 0; j < shape.SeqLen; j++)
            {
                if (!visible(i, j))
                    continue;
                logits[j] = scale * Dot(Q, qi, K, KeyIndex(b, j, h), shape.KeyDim);
                max = Math.Max(max, logits[j]);
            }
            if (double.IsNegativeInfinity(max))
                throw new ArgumentException($"The mask hides every key from query {i}.", nameof(visible));
            var sum = 0.0;
            var probabilities = new double[shape.SeqLen];
            for (var j = 0; j < shape.SeqLen; j++)
            {
                if (visible(i, j))
                {
                    probabilities[j] = Math.Exp(logits[j] - max);
                    sum += probabilities[j];
                }
            }
            for (var j = 0; j < shape.SeqLen; j++)
                probabilities[j] /= sum;
            logSumExp = max + Math.Log(sum);
            return probabilities;
        }
    }
}
