using RetNet.Ilgpu.Kernels;
using RetNet.Ilgpu.Kernels.Gemm;

namespace RetNet.Ilgpu.Attention;

internal abstract partial class AttentionLaunch
{
    /// <summary>
    /// The <see cref="Devices.OperatorBackend.Host"/> implementation: host SIMD code (<see cref="HostAttention"/>) on
    /// ILGPU's CPU accelerator in host execution, on the widest instruction set the processor has and every core.
    /// </summary>
    public static AttentionLaunch Host { get; } = new HostSimdLaunch(HostSimd.Auto);

    /// <summary>
    /// <see cref="Host"/> on a forced instruction-set path and thread count, so tests reach the AVX2 and scalar paths
    /// and the single-threaded schedule on any machine.
    /// </summary>
    public static AttentionLaunch HostWith(HostGemmPath path, int threads) => new HostSimdLaunch(new(path, threads));

    /// <summary>
    /// Refuses a device that does not run on the host: off the CPU accelerator the buffers are device memory, and its
    /// simulator execution is asked to run the kernels themselves.
    /// </summary>
    private sealed unsafe class HostSimdLaunch(HostSimd simd) : AttentionLaunch
    {
        private const string What = "Host SIMD attention";

        public override string Name => simd.ToString();

        public override void Forward(in AttentionOperands o)
        {
            HostSimd.Enter(o.Q.Device, What, requireHostExecution: true);
            HostAttention.Forward(HostSimd.Pointer(o.Q), HostSimd.Pointer(o.K), HostSimd.Pointer(o.V),
                HostSimd.Pointer(o.Output), HostSimd.Pointer(o.LogSumExp), o.Q.Dim(0),
                Problem(o.Q, o.V, o.Scale, o.LogSumExp), simd.Path, simd.Threads);
        }

        public override void Gradients(in AttentionGradientOperands o)
        {
            HostSimd.Enter(o.Q.Device, What, requireHostExecution: true);
            HostAttention.Gradients(HostSimd.Pointer(o.Q), HostSimd.Pointer(o.K), HostSimd.Pointer(o.V),
                HostSimd.Pointer(o.DOutput), HostSimd.Pointer(o.LogSumExp), HostSimd.Pointer(o.Deltas),
                HostSimd.Pointer(o.Dq), HostSimd.Pointer(o.Dk), HostSimd.Pointer(o.Dv), o.Q.Dim(0),
                Problem(o.Q, o.V, o.Scale, o.LogSumExp), simd.Path, simd.Threads);
        }
    }
}
