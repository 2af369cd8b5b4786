using RetNet.Ilgpu.Retention;
using RetNet.Ilgpu.Tensors;

namespace RetNet.Ilgpu.Verification;

/// <summary>
/// Retention's three forms against <see cref="RetentionReference"/>: the parallel and chunkwise forms forward and
/// backward in every configuration of <see cref="Kernels.TiledOperatorLaunch{TSelf}.Configurations"/> (barrier-free, each tile at the
/// full group and at 7 threads, host SIMD), with initial and final states; the recurrent scan
/// by the kernel and, in host execution, by the host code.
/// </summary>
internal static class RetentionVerification
{
    private const double Tolerance = 1e-4;

    // Size 1; odd sizes with a chunk that does not divide T; several tiles of either tile shape.
    private static readonly (RetentionShape Shape, int ChunkSize)[] Cases =
    [
        (new RetentionShape(1, 1, 1, 1, 1), 1),
        (new RetentionShape(2, 13, 2, 5, 7), 5),
        (new RetentionShape(1, 40, 1, 20, 40), 16),
    ];

    public static void Run(VerificationContext context)
    {
        var device = context.Device;
        List<RetentionLaunch> launches = [.. RetentionLaunch.Configurations(device)];
        // The recurrent scan has no tiles: the kernel, and the host code where it runs.
        List<RetentionLaunch> recurrentLaunches = [RetentionLaunch.BarrierFree];
        if (device.RunsOnHost)
        {
            List<RetentionLaunch> forced = [RetentionLaunch.HostWith(Kernels.Gemm.HostGemmPath.Vector256, 2),
                RetentionLaunch.HostWith(Kernels.Gemm.HostGemmPath.Scalar, 1)];
            launches.AddRange(forced);
            recurrentLaunches.AddRange([RetentionLaunch.Host, .. forced]);
        }
        else if (device.IsCpuSimulator)
            context.Skip("Retention host SIMD", "-", "host SIMD retention runs in host execution only");
        else
            context.Skip("Retention host SIMD", "-", "host SIMD retention runs on ILGPU's CPU accelerator only");

        foreach (var (shape, chunkSize) in Cases)
        {
            var problem = new Problem(shape, seed: 81);
            var name = shape.ToString();
            foreach (var launch in launches)
            {
                context.Check($"ParallelRetention.Forward {launch.Name}", name, Tolerance, () =>
                    problem.Forward(device, (q, k, v, o, s0, sT) =>
                        ParallelRetention.Forward(q, k, v, problem.Decay, o, s0, sT, launch)));
                context.Check($"ParallelRetention.Backward {launch.Name}", name, Tolerance, () =>
                    problem.Backward(device, (t, g) => ParallelRetention.Backward(t.Q, t.K, t.V, problem.Decay, t.S0,
                        t.DOutput, t.DFinal, g.Dq, g.Dk, g.Dv, g.DS0, launch)));
                context.Check($"ChunkwiseRetention.Forward {launch.Name}", $"{name} C={chunkSize}", Tolerance, () =>
                    problem.Forward(device, (q, k, v, o, s0, sT) =>
                        ChunkwiseRetention.Forward(q, k, v, problem.Decay, chunkSize, o, s0, sT, launch)));
                context.Check($"ChunkwiseRetention.Backward {launch.Name}", $"{name} C={chunkSize}", Tolerance, () =>
                    problem.Backward(device, (t, g) => ChunkwiseRetention.Backward(t.Q, t.K, t.V, problem.Decay,
                        chunkSize, t.S0, t.DOutput, t.DFinal, g.Dq, g.Dk, g.Dv, g.DS0, launch)));
            }
            foreach (var launch in recurrentLaunches)
            {
                context.Check($"RecurrentRetention.Forward {launch.Name}", name, Tolerance, () =>
                {
                    using var t = problem.Upload(device);
                    using var output = Tensor.Zeros(device, shape.ValueShape);
                    RecurrentRetention.Forward(t.Q, t.K, t.V, problem.Decay, output, t.S0, launch);
                    var expected = RetentionReference.Recurrent(shape, problem.Decay, problem.Q, problem.K, problem.V,
                        problem.S0);
                    return [new("output", output.ToHost(), expected.Output),
                        new("state", t.S0.ToHost(), expected.FinalState)];
                });
            }
        }
    }

    /// <summary>The device tensors of a problem.</summary>
    private sealed record Inputs(Tensor Q, Tensor K, Tensor V, Tensor S0, Tensor DOutput, Tensor DFinal) : IDisposable
    {
        public void Dispose()
        {
            Q.Dispose();
            K.Dispose();
            V.Dispose();
            S0.Dispose();
            DOutput.Dispose();
            DFinal.Dispose();
        }
    }

    /// <summary>The gradient outputs.</summary>
    private sealed record Gradients(Tensor Dq, Tensor Dk, Tensor Dv, Tensor DS0) : IDisposable
    {
        public void Dispose()
        {
            Dq.Dispose();
            Dk.Dispose();
            Dv.Dispose();
            DS0.Dispose();
        }
    }

    /// <summary>Random inputs of one shape and their references, computed once for every configuration.</summary>
    private sealed class Problem(RetentionShape shape, int seed)
    {
        public DecaySchedule Decay { get; } = DecaySchedule.Torchscale(shape.Heads);
        public float[] Q { get; } = VerificationContext.Uniform(seed, shape.QueryLength);
        public float[] K { get; } = VerificationContext.Uniform(seed + 1, shape.QueryLength);
        public float[] V { get; } = VerificationContext.Uniform(seed + 2, shape.ValueLength);
        public float[] S0 { get; } = VerificationContext.Uniform(seed + 3, shape.StateLength);
        private float[] DOutput { get; } = VerificationContext.Uniform(seed + 4, shape.ValueLength);
        private float[] DFinal { get; } = VerificationContext.Uniform(seed + 5, shape.StateLength);

        private RetentionReferenceOutput? forward;
        private RetentionReferenceGradients? backward;

        public Inputs Upload(Devices.RetNetDevice device) => new(
            Tensor.FromHost(device, Q, shape.QueryShape), Tensor.FromHost(device, K, shape.QueryShape),
            Tensor.FromHost(device, V, shape.ValueShape), Tensor.FromHost(device, S0, shape.StateShape),
            Tensor.FromHost(device, DOutput, shape.ValueShape), Tensor.FromHost(device, DFinal, shape.StateShape));

        public IReadOnlyList<CheckedOutput> Forward(Devices.RetNetDevice device,
            Action<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor> run)
        {
            using var t = Upload(device);
            using var output = Tensor.Zeros(device, shape.ValueShape);
            using var final = Tensor.Zeros(device, shape.StateShape);
            run(t.Q, t.K, t.V, output, t.S0, final);
            forward ??= RetentionReference.Parallel(shape, Decay, Q, K, V, S0);
            return [new("output", output.ToHost(), forward.Output), new("final state", final.ToHost(), forward.FinalState)];
        }

        public IReadOnlyList<CheckedOutput> Backward(Devices.RetNetDevice device, Action<Inputs, Gradients> run)
        {
            using var t = Upload(device);
            using var g = new Gradients(Tensor.Zeros(device, shape.QueryShape), Tensor.Zeros(device, shape.QueryShape),
                Tensor.Zeros(device, shape.ValueShape), Tensor.Zeros(device, shape.StateShape));
            run(t, g);
            backward ??= RetentionReference.ParallelBackward(shape, Decay, Q, K, V, S0, DOutput, DFinal);
            return
            [
                new("dq", g.Dq.ToHost(), backward.QueryGradient), new("dk", g.Dk.ToHost(), backward.KeyGradient),
                new("dv", g.Dv.ToHost(), backward.ValueGradient),
                new("dS0", g.DS0.ToHost(), backward.InitialStateGradient),
            ];
        }
    }
}
