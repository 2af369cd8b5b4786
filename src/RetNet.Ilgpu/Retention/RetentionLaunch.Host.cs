using ILGPU;
using ILGPU.Runtime;
using RetNet.Ilgpu.Kernels.Gemm;
using RetNet.Ilgpu.Tensors;

namespace RetNet.Ilgpu.Retention;

internal abstract partial class RetentionLaunch
{
    /// <summary>
    /// Host SIMD code (<see cref="HostRetention"/>) on ILGPU's CPU accelerator, on the widest instruction set the
    /// processor has and every core.
    /// </summary>
    public static RetentionLaunch Host { get; } = new HostSimdLaunch(HostGemmPath.Auto, threads: null);

    /// <summary>
    /// <see cref="Host"/> on a forced instruction-set path and thread count, so tests reach the AVX2 and scalar paths
    /// and the single-threaded schedule on any machine.
    /// </summary>
    public static RetentionLaunch HostWith(HostGemmPath path, int threads) => new HostSimdLaunch(path, threads);

    private sealed unsafe class HostSimdLaunch(HostGemmPath path, int? threads) : RetentionLaunch
    {
        public override string Name => threads is null ? $"host SIMD ({path})" : $"host SIMD ({path}, {threads} threads)";

        public override void Causal(in CausalOperands o)
        {
            Prepare(o.Rows);
            var problem = Problem(o, out _);
            HostRetention.Causal(Pointer(o.Rows), Pointer(o.Keys), Pointer(o.Values), Pointer(o.State),
                Pointer(o.Decay), Pointer(o.Output), o.Rows.Dim(0), problem, path, Threads);
        }

        public override void States(in StateOperands o)
        {
            Prepare(o.X);
            var problem = Problem(o);
            HostRetention.States(Pointer(o.X), Pointer(o.Y), Pointer(o.Initial), Pointer(o.Decay),
                Pointer(o.ChunkStates), Pointer(o.Final), o.X.Dim(0), problem, path, Threads);
        }

        public override void Recurrent(in RecurrentOperands o)
        {
            Prepare(o.Q);
            var problem = Problem(o);
            HostRetention.Recurrent(Pointer(o.Q), Pointer(o.K), Pointer(o.V), Pointer(o.Decay), Pointer(o.State),
                Pointer(o.Output), o.Q.Dim(0), problem, path, Threads);
        }

        private int Threads => threads ?? Environment.ProcessorCount;

        /// <summary>
        /// The CPU accelerator's buffers are pinned host memory, but kernels queued before this call may still be
        /// writing them: wait, then work on the memory directly. Nothing is queued behind, so no fence is needed after.
        /// </summary>
        private static void Prepare(Tensor any)
        {
            var device = any.Device;
            if (!device.IsCpuSimulator)
                throw new NotSupportedException(
                    $"Host SIMD retention runs on the host over host memory and needs ILGPU's CPU accelerator; {device} " +
                    "keeps its buffers in device memory.");
            device.Stream.Synchronize();
        }

        private static float* Pointer(Tensor? tensor) =>
            tensor is null ? null : (float*)tensor.View.LoadEffectiveAddressAsPtr();
    }
}
