using RetNet.Ilgpu.Kernels;
using RetNet.Ilgpu.Kernels.Gemm;

namespace RetNet.Ilgpu.Retention;

internal abstract partial class RetentionLaunch
{
    /// <summary>
    /// The <see cref="Devices.OperatorBackend.Host"/> implementation: host SIMD code (<see cref="HostRetention"/>) on
    /// ILGPU's CPU accelerator, on the widest instruction set the processor has and every core.
    /// </summary>
    public static RetentionLaunch Host { get; } = new HostSimdLaunch(HostSimd.Auto);

    /// <summary>
    /// <see cref="Host"/> on a forced instruction-set path and thread count, so tests reach the AVX2 and scalar paths
    /// and the single-threaded schedule on any machine.
    /// </summary>
    public static RetentionLaunch HostWith(HostGemmPath path, int threads) => new HostSimdLaunch(new(path, threads));

    private sealed unsafe class HostSimdLaunch(HostSimd simd) : RetentionLaunch
    {
        private const string What = "Host SIMD retention";

        public override string Name => simd.ToString();

        public override void Causal(in CausalOperands o)
        {
            HostSimd.Enter(o.Rows.Device, What);
            HostRetention.Causal(HostSimd.Pointer(o.Rows), HostSimd.Pointer(o.Keys), HostSimd.Pointer(o.Values),
                HostSimd.Pointer(o.State), HostSimd.Pointer(o.Decay), HostSimd.Pointer(o.Output), o.Rows.Dim(0),
                Problem(o, out _), simd.Path, simd.Threads);
        }

        public override void States(in StateOperands o)
        {
            HostSimd.Enter(o.X.Device, What);
            HostRetention.States(HostSimd.Pointer(o.X), HostSimd.Pointer(o.Y), HostSimd.Pointer(o.Initial),
                HostSimd.Pointer(o.Decay), HostSimd.Pointer(o.ChunkStates), HostSimd.Pointer(o.Final), o.X.Dim(0),
                Problem(o), simd.Path, simd.Threads);
        }

        public override void Recurrent(in RecurrentOperands o)
        {
            HostSimd.Enter(o.Q.Device, What);
            HostRetention.Recurrent(HostSimd.Pointer(o.Q), HostSimd.Pointer(o.K), HostSimd.Pointer(o.V),
                HostSimd.Pointer(o.Decay), HostSimd.Pointer(o.State), HostSimd.Pointer(o.Output), o.Q.Dim(0),
                Problem(o), simd.Path, simd.Threads);
        }
    }
}
