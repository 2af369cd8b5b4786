using RetNet.Ilgpu.Retention;
using RetNet.Ilgpu.Tensors;
using RetNet.Ilgpu.Verification.Cases;

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
                    problem.Forward(device, (t, o, sT) =>
                        ParallelRetention.Forward(t.Q, t.K, t.V, problem.Decay, o, t.InitialState, sT, launch)));
                context.Check($"ParallelRetention.Backward {launch.Name}", name, Tolerance, () =>
                    problem.Backward(device, (t, g) => ParallelRetention.Backward(t.Q, t.K, t.V, problem.Decay,
                        t.InitialState, t.OutputGradient, t.FinalStateGradient, g.Dq, g.Dk, g.Dv, g.DInitialState,
                        launch)));
                context.Check($"ChunkwiseRetention.Forward {launch.Name}", $"{name} C={chunkSize}", Tolerance, () =>
                    problem.Forward(device, (t, o, sT) => ChunkwiseRetention.Forward(t.Q, t.K, t.V, problem.Decay,
                        chunkSize, o, t.InitialState, sT, launch)));
                context.Check($"ChunkwiseRetention.Backward {launch.Name}", $"{name} C={chunkSize}", Tolerance, () =>
                    problem.Backward(device, (t, g) => ChunkwiseRetention.Backward(t.Q, t.K, t.V, problem.Decay,
                        chunkSize, t.InitialState, t.OutputGradient, t.FinalStateGradient, g.Dq, g.Dk, g.Dv,
                        g.DInitialState, launch)));
            }
            foreach (var launch in recurrentLaunches)
            {
                context.Check($"RecurrentRetention.Forward {launch.Name}", name, Tolerance,
                    () => problem.Recurrent(device, launch));
            }
        }
    }

    /// <summary>The device side of a <see cref="RetentionCase"/>: its inputs uploaded, its outputs compared.</summary>
    private sealed class Problem(RetentionShape shape, int seed)
    {
        private readonly RetentionCase problem = new(shape, DecaySchedule.Torchscale(shape.Heads), seed);

        public DecaySchedule Decay => problem.Decay;

        public IReadOnlyList<CheckedOutput> Forward(Devices.RetNetDevice device,
            Action<RetentionTensors, Tensor, Tensor> run)
        {
            using var t = problem.Upload(device);
            using var output = Tensor.Zeros(device, shape.ValueShape);
            using var final = Tensor.Zeros(device, shape.StateShape);
            run(t, output, final);
            var expected = problem.Reference;
            return [new("output", output.ToHost(), expected.Output), new("final state", final.ToHost(), expected.FinalState)];
        }

        public IReadOnlyList<CheckedOutput> Backward(Devices.RetNetDevice device,
            Action<RetentionTensors, RetentionGradientTensors> run)
        {
            using var t = problem.Upload(device);
            using var g = problem.NewGradients(device);
            run(t, g);
            var expected = problem.ReferenceGradients;
            return
            [
                new("dq", g.Dq.ToHost(), expected.QueryGradient), new("dk", g.Dk.ToHost(), expected.KeyGradient),
                new("dv", g.Dv.ToHost(), expected.ValueGradient),
                new("dS0", g.DInitialState.ToHost(), expected.InitialStateGradient),
            ];
        }

        public IReadOnlyList<CheckedOutput> Recurrent(Devices.RetNetDevice device, RetentionLaunch launch)
        {
            using var t = problem.Upload(device);
            using var output = Tensor.Zeros(device, shape.ValueShape);
            var state = t.InitialState!;
            RecurrentRetention.Forward(t.Q, t.K, t.V, problem.Decay, output, state, launch);
            var expected = RetentionReference.Recurrent(shape, problem.Decay, problem.Q, problem.K, problem.V,
                problem.InitialState);
            return [new("output", output.ToHost(), expected.Output), new("state", state.ToHost(), expected.FinalState)];
        }
    }
}
