using RetNet.Ilgpu.Attention;
using RetNet.Ilgpu.Devices;
using RetNet.Ilgpu.Tensors;
using RetNet.Ilgpu.Verification.Cases;

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
            var problem = new AttentionCase(shape, seed: 91);
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
                    using var g = problem.NewGradients(device);
                    CausalAttention.Forward(t.Q, t.K, t.V, problem.Scale, output, logSumExp, launch);
                    CausalAttention.Backward(t.Q, t.K, t.V, problem.Scale, output, logSumExp, t.OutputGradient, g.Dq,
                        g.Dk, g.Dv, launch);
                    var (expected, floors) = (problem.ReferenceGradients, problem.GradientFloors);
                    return
                    [
                        new("dq", g.Dq.ToHost(), expected.QueryGradient, floors.Dq),
                        new("dk", g.Dk.ToHost(), expected.KeyGradient, floors.Dk),
                        new("dv", g.Dv.ToHost(), expected.ValueGradient, floors.Dv),
                    ];
                });
            }
            // The cache kernels are barrier-free on every device; the host backend runs host code in their place.
            foreach (var launch in StepLaunches(device))
                context.Check($"CausalAttention.AppendToCache+Step {launch.Name}", $"{name} capacity {shape.SeqLen + 3}",
                    Tolerance, () => Step(device, problem, launch));
        }
    }

    /// <summary>The kernels, and the host code when the device's backend runs it.</summary>
    private static IReadOnlyList<AttentionLaunch> StepLaunches(RetNetDevice device) =>
        device.Policy.Backend == OperatorBackend.Host
            ? [AttentionLaunch.BarrierFree, AttentionLaunch.Host]
            : [AttentionLaunch.BarrierFree];

    /// <summary>Appends every key and value of <paramref name="problem"/> to an empty cache, then steps the last
    /// token's query over it: the last position of the full forward pass.</summary>
    private static IReadOnlyList<CheckedOutput> Step(RetNetDevice device, AttentionCase problem,
        AttentionLaunch launch)
    {
        var shape = problem.Shape;
        var (b, t, h, dk, dv) = (shape.Batch, shape.SeqLen, shape.Heads, shape.KeyDim, shape.ValueDim);
        var capacity = t + 3;
        using var inputs = problem.Upload(device);
        using var keyCache = Tensor.Zeros(device, b, h, capacity, dk);
        using var valueCache = Tensor.Zeros(device, b, h, capacity, dv);
        using var lengths = IndexTensor.FromHost(device, new int[b], b);
        CausalAttention.AppendToCache(inputs.K, keyCache, lengths, launch);
        CausalAttention.AppendToCache(inputs.V, valueCache, lengths, launch);
        // The cache holds each head's keys [T, Dk] one after another, after them room for three more.
        var expectedKeys = new double[b * h * capacity * dk];
        for (var s = 0; s < b; s++)
        for (var head = 0; head < h; head++)
        for (var j = 0; j < t; j++)
        for (var d = 0; d < dk; d++)
            expectedKeys[((s * h + head) * capacity + j) * dk + d] = problem.K[((s * t + j) * h + head) * dk + d];
        using var query = Tensor.FromHost(device, TokenSlices.Slice(problem.Q, b, t, h, dk, t - 1, 1), b, 1, h, dk);
        using var output = Tensor.Zeros(device, b, 1, h, dv);
        CausalAttention.Step(query, keyCache, valueCache, Enumerable.Repeat(t, b).ToArray(), problem.Scale, output,
            launch);
        var expectedOutput = TokenSlices.Slice(problem.Reference.Output, b, t, h, dv, t - 1, 1);
        return [new("key cache", keyCache.ToHost(), expectedKeys), new("step output", output.ToHost(), expectedOutput)];
    }
}
