using RetNet.Ilgpu.Attention;
using RetNet.Ilgpu.Tensors;

namespace RetNet.Ilgpu.Verification;

/// <summary>
/// Causal softmax attention against <see cref="AttentionReference"/>: forward and backward in every configuration of
/// <see cref="Kernels.TiledOperatorLaunch{TSelf}.Configurations"/>, and the KV-cache append and decode step.
/// </summary>
internal static class AttentionVerification
{
    private const double Tolerance = 1e-4;

    private static readonly AttentionShape[] Shapes =
    [
        new(1, 1, 1, 1, 1),
        new(2, 13, 2, 5, 7),
        new(1, 40, 1, 20, 40),
    ];

    public static void Run(VerificationContext context)
    {
        var device = context.Device;
        foreach (var shape in Shapes)
        {
            var problem = new Problem(shape, seed: 91);
            var name = shape.ToString();
            foreach (var launch in AttentionLaunch.Configurations(device))
            {
                context.Check($"CausalAttention.Forward {launch.Name}", name, Tolerance, () =>
                {
                    using var t = problem.Upload(device);
                    using var output = Tensor.Zeros(device, shape.ValueShape);
                    using var logSumExp = Tensor.Zeros(device, shape.RowShape);
                    CausalAttention.Forward(t.Q, t.K, t.V, problem.Scale, output, logSumExp, launch);
                    return
                    [
                        new("output", output.ToHost(), problem.Reference.Output),
                        new("log-sum-exp", logSumExp.ToHost(), problem.Reference.LogSumExp),
                    ];
                });
                context.Check($"CausalAttention.Backward {launch.Name}", name, Tolerance, () =>
                {
                    using var t = problem.Upload(device);
                    using var output = Tensor.Zeros(device, shape.ValueShape);
                    using var logSumExp = Tensor.Zeros(device, shape.RowShape);
                    using var dq = Tensor.Zeros(device, shape.QueryShape);
                    using var dk = Tensor.Zeros(device, shape.QueryShape);
                    using var dv = Tensor.Zeros(device, shape.ValueShape);
                    CausalAttention.Forward(t.Q, t.K, t.V, problem.Scale, output, logSumExp, launch);
                    CausalAttention.Backward(t.Q, t.K, t.V, problem.Scale, output, logSumExp, t.DOutput, dq, dk, dv,
                        launch);
                    var (expected, floors) = problem.Gradients;
                    return
                    [
                        new("dq", dq.ToHost(), expected.QueryGradient, floors.Dq),
                        new("dk", dk.ToHost(), expected.KeyGradient, floors.Dk),
                        new("dv", dv.ToHost(), expected.ValueGradient, floors.Dv),
                    ];
                });
            }
            context.Check("CausalAttention.AppendToCache+Step", $"{name} capacity {shape.SeqLen + 3}", Tolerance,
                () => problem.Step(device));
        }
    }

    private sealed record Inputs(Tensor Q, Tensor K, Tensor V, Tensor DOutput) : IDisposable
    {
        public void Dispose()
        {
            Q.Dispose();
            K.Dispose();
            V.Dispose();
            DOutput.Dispose();
        }
    }

    private sealed class Problem(AttentionShape shape, int seed)
    {
        private readonly float[] q = VerificationContext.Uniform(seed, shape.QueryLength);
        private readonly float[] k = VerificationContext.Uniform(seed + 1, shape.QueryLength);
        private readonly float[] v = VerificationContext.Uniform(seed + 2, shape.ValueLength);
        private readonly float[] dOutput = VerificationContext.Uniform(seed + 3, shape.ValueLength);
        private AttentionReferenceOutput? reference;
        private (AttentionReferenceGradients, (double Dq, double Dk, double Dv))? gradients;

        public float Scale { get; } = CausalAttention.DefaultScale(shape.KeyDim);

        public AttentionReferenceOutput Reference => reference ??= AttentionReference.Forward(shape, Scale, q, k, v);

        public (AttentionReferenceGradients Expected, (double Dq, double Dk, double Dv) Floors) Gradients =>
            gradients ??= (AttentionReference.Backward(shape, Scale, q, k, v, dOutput), GradientFloors());

        public Inputs Upload(Devices.RetNetDevice device) => new(
            Tensor.FromHost(device, q, shape.QueryShape), Tensor.FromHost(device, k, shape.QueryShape),
            Tensor.FromHost(device, v, shape.ValueShape), Tensor.FromHost(device, dOutput, shape.ValueShape));

        /// <summary>Appends every key and value to an empty cache, then steps the last token's query over it: the
        /// last position of the full forward pass.</summary>
        public IReadOnlyList<CheckedOutput> Step(Devices.RetNetDevice device)
        {
            var (b, t, h, dk, dv) = (shape.Batch, shape.SeqLen, shape.Heads, shape.KeyDim, shape.ValueDim);
            var capacity = t + 3;
            using var inputs = Upload(device);
            using var keyCache = Tensor.Zeros(device, b, h, capacity, dk);
            using var valueCache = Tensor.Zeros(device, b, h, capacity, dv);
            using var lengths = IndexTensor.FromHost(device, new int[b], b);
            CausalAttention.AppendToCache(inputs.K, keyCache, lengths);
            CausalAttention.AppendToCache(inputs.V, valueCache, lengths);
            var lastQuery = new float[b * h * dk];
            var expectedOutput = new double[b * h * dv];
            var expectedKeys = new double[b * h * capacity * dk];
            for (var s = 0; s < b; s++)
            for (var head = 0; head < h; head++)
            {
                Array.Copy(q, ((s * t + t - 1) * h + head) * dk, lastQuery, (s * h + head) * dk, dk);
                for (var e = 0; e < dv; e++)
                    expectedOutput[(s * h + head) * dv + e] = Reference.Output[((s * t + t - 1) * h + head) * dv + e];
                for (var j = 0; j < t; j++)
                for (var d = 0; d < dk; d++)
                    expectedKeys[((s * h + head) * capacity + j) * dk + d] = k[((s * t + j) * h + head) * dk + d];
            }
            using var query = Tensor.FromHost(device, lastQuery, b, 1, h, dk);
            using var output = Tensor.Zeros(device, b, 1, h, dv);
            CausalAttention.Step(query, keyCache, valueCache, Enumerable.Repeat(t, b).ToArray(), Scale, output);
            return [new("key cache", keyCache.ToHost(), expectedKeys), new("step output", output.ToHost(), expectedOutput)];
        }

        /// <summary>
        /// The floors of the gradients' tolerance: each gradient evaluated on the magnitudes of its terms,
        /// |dS_ij| ≤ P_ij (Σ_e |dO_ie v_je| + Σ_e |dO_ie o_ie|), dq_i ≤ s Σ_j |dS_ij| |k_j|, dk_j ≤ s Σ_i |dS_ij| |q_i|,
        /// dv_j ≤ Σ_i P_ij |dO_i|. A row of dS sums to zero, so dq cancels by construction (to exactly 0 at T = 1).
        /// </summary>
        private (double Dq, double Dk, double Dv) GradientFloors()
        {
            var s = shape;
            var o = Reference.Output;
            var fq = new double[s.QueryLength];
            var fk = new double[s.QueryLength];
            var fv = new double[s.ValueLength];
            for (var b = 0; b < s.Batch; b++)
            for (var h = 0; h < s.Heads; h++)
            for (var i = 0; i < s.SeqLen; i++)
            {
                var (qi, oi) = (Row(b, i, h) * s.KeyDim, Row(b, i, h) * s.ValueDim);
                var delta = 0.0;
                for (var e = 0; e < s.ValueDim; e++)
                    delta += Math.Abs(dOutput[oi + e] * o[oi + e]);
                for (var j = 0; j <= i; j++)
                {
                    var (kj, vj) = (Row(b, j, h) * s.KeyDim, Row(b, j, h) * s.ValueDim);
                    double logit = 0, dp = 0;
                    for (var d = 0; d < s.KeyDim; d++)
                        logit += (double)q[qi + d] * k[kj + d];
                    for (var e = 0; e < s.ValueDim; e++)
                        dp += Math.Abs((double)dOutput[oi + e] * v[vj + e]);
                    var p = Math.Exp(Scale * logit - Reference.LogSumExp[(b * s.Heads + h) * s.SeqLen + i]);
                    var ds = p * (dp + delta);
                    for (var d = 0; d < s.KeyDim; d++)
                    {
                        fq[qi + d] += Math.Abs(Scale) * ds * Math.Abs(k[kj + d]);
                        fk[kj + d] += Math.Abs(Scale) * ds * Math.Abs(q[qi + d]);
                    }
                    for (var e = 0; e < s.ValueDim; e++)
                        fv[vj + e] += p * Math.Abs(dOutput[oi + e]);
                }
            }
            return (fq.Max(), fk.Max(), fv.Max());

            int Row(int b, int t, int h) => (b * s.SeqLen + t) * s.Heads + h;
        }
    }
}
