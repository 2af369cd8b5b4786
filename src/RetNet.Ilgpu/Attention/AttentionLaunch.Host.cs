using ILGPU.Runtime;
using RetNet.Ilgpu.Kernels.Gemm;
using RetNet.Ilgpu.Tensors;

namespace RetNet.Ilgpu.Attention;

internal abstract partial class AttentionLaunch
{
    /// <summary>
    /// Host SIMD code (<see cref="HostAttention"/>) on ILGPU's CPU accelerator in host execution, on the widest
    /// instruction set the processor has and every core.
    /// </summary>
    public static AttentionLaunch Host { get; } = new HostSimdLaunch(HostGemmPath.Auto, threads: null);

    /// <summary>
    /// <see cref="Host"/> on a forced instruction-set path and thread count, so tests reach the AVX2 and scalar paths
    /// and the single-threaded schedule on any machine.
    /// </summary>
    public static AttentionLaunch HostWith(HostGemmPath path, int threads) => new HostSimdLaunch(path, threads);

    private sealed unsafe class HostSimdLaunch(HostGemmPath path, int? threads) : AttentionLaunch
    {
        public override string Name => threads is null ? $"host SIMD ({path})" : $"host SIMD ({path}, {threads} threads)";

        public override void Forward(in AttentionOperands o)
        {
            Prepare(o.Q);
            var problem = Problem(o.Q, o.V, o.Scale, o.LogSumExp);
            HostAttention.Forward(Pointer(o.Q), Pointer(o.K), Pointer(o.V), Pointer(o.Output), Pointer(o.LogSumExp),
                o.Q.Dim(0), problem, path, Threads);
        }

        public override void Gradients(in AttentionGradientOperands o)
        {
            Prepare(o.Q);
            var problem = Problem(o.Q, o.V, o.Scale, o.LogSumExp);
            HostAttention.Gradients(Pointer(o.Q), Pointer(o.K), Pointer(o.V), Pointer(o.DOutput),
                Pointer(o.LogSumExp), Pointer(o.Deltas), Pointer(o.Dq), Pointer(o.Dk), Pointer(o.Dv), o.Q.Dim(0),
                problem, path, Threads);
        }

        private int Threads => threads ?? Environment.ProcessorCount;

        /// <summary>
        /// Refuses a device that does not run on the host: off the CPU accelerator the buffers are device memory, and
        /// its simulator execution is asked to run the kernels themselves. Then waits for the kernels queued before
        /// (D, for one), which may still be writing the buffers; nothing is queued behind, so no fence is needed after.
        /// </summary>
        private static void Prepare(Tensor any)
        {
            var device = any.Device;
            if (!device.RunsOnHost)
                throw new NotSupportedException(
                    $"Host SIMD attention runs on the host over host memory and needs ILGPU's CPU accelerator in host " +
                    $"execution; {device} does not run on the host.");
            device.Stream.Synchronize();
        }

        private static float* Pointer(Tensor? tensor) =>
            tensor is null ? null : (float*)tensor.View.LoadEffectiveAddressAsPtr();
    }
}
