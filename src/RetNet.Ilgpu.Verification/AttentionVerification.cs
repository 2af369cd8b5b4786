using RetNet.Ilgpu.Attention;
using RetNet.Ilgpu.Tensors;
using RetNet.Ilgpu.Verification.Cases;

namespace RetNet.Ilgpu.Verification;

/// <summary>
/// Causal softmax attention against <see cref="AttentionReference"/>: forward and backward in every configuration of
/// <see cref="AttentionLaunch.Configurations"/>, and the KV-cache append and decode step.
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

    /// <summary>The device side of an <see cref="AttentionCase"/>: its inputs uploaded, the cache step it implies.</summary>
    private sealed class Problem(AttentionShape shape, int seed)
    {
        private readonly AttentionCase problem = new(shape, seed);

        public float Scale => problem.Scale;

        public AttentionReferenceOutput Reference => problem.Reference;

        public (AttentionReferenceGradients Expected, AttentionGradientFloors Floors) Gradients =>
            (problem.ReferenceGradients, problem.GradientFloors);

        public Inputs Upload(Devices.RetNetDevice device) => new(
            Tensor.FromHost(device, problem.Q, shape.QueryShape), Tensor.FromHost(device, problem.K, shape.QueryShape),
            Tensor.FromHost(device, problem.V, shape.ValueShape),
            Tensor.FromHost(device, problem.OutputGradient, shape.ValueShape));

        /// <summary>Appends every key and value to an empty cache, then steps the last token's query over it: the
        /// last position of the full forward pass.</summary>
        public IReadOnlyList<CheckedOutput> Step(Devices.RetNetDevice device)
        {
            var (b, t, h, dk, dv) = (shape.Batch, shape.SeqLen, shape.Heads, shape.KeyDim, shape.ValueDim);
            var (q, k) = (problem.Q, problem.K);
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
    }
}
