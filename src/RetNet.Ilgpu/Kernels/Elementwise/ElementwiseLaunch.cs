using ILGPU;
using ILGPU.Runtime;
using RetNet.Ilgpu.Devices;
using RetNet.Ilgpu.Tensors;

namespace RetNet.Ilgpu.Kernels.Elementwise;

/// <summary>
/// The elementwise operators' seam: the <see cref="ElementwiseKernels"/> on tiled and barrier-free backends, and on
/// the host backend the same per-element operation in a loop over the buffers' host addresses. The kernels read and
/// write through <see cref="ArrayView{T}"/>s, a few nanoseconds an access when called as host code; a decoding step of
/// a batch runs several such passes over B rows per block, which the pointer loop makes a fraction of that. Each
/// element takes the operation's own arithmetic (the op struct's Apply), so both give the same bits.
/// </summary>
internal abstract class ElementwiseLaunch : IOperatorBackends<ElementwiseLaunch>
{
    /// <summary>The implementation of each backend.</summary>
    static ElementwiseLaunch IOperatorBackends<ElementwiseLaunch>.For(DevicePolicy policy) =>
        policy.Backend == OperatorBackend.Host ? HostLoops.Instance : Kernels.Instance;

    /// <summary>The kernels, whatever the device's backend: lets checks launch them on the host backend too.</summary>
    public static ElementwiseLaunch KernelLaunch => Kernels.Instance;

    /// <summary>y[i] = op(x[i], parameter) over all elements; arguments checked.</summary>
    public abstract void Map<TOp>(Tensor x, Tensor y, float parameter) where TOp : struct, IUnaryOp;

    /// <summary>y[i] = op(a[i], b[i], parameter) over all elements; arguments checked.</summary>
    public abstract void Zip<TOp>(Tensor a, Tensor b, Tensor y, float parameter) where TOp : struct, IBinaryOp;

    private sealed class Kernels : ElementwiseLaunch
    {
        public static Kernels Instance { get; } = new();

        public override void Map<TOp>(Tensor x, Tensor y, float parameter)
        {
            var device = x.Device;
            var kernel = device.Kernel(ElementwiseKernels.Map<TOp>, accelerator =>
                accelerator.LoadAutoGroupedKernel<Index1D, ArrayView<float>, ArrayView<float>, float, Spread>(
                    ElementwiseKernels.Map<TOp>));
            var spread = Launch.Spread(device, x.Length);
            kernel(device.Stream, spread.Threads, x.View, y.View, parameter, spread);
        }

        public override void Zip<TOp>(Tensor a, Tensor b, Tensor y, float parameter)
        {
            var device = a.Device;
            var kernel = device.Kernel(ElementwiseKernels.Zip<TOp>, accelerator =>
                accelerator.LoadAutoGroupedKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, float,
                    Spread>(ElementwiseKernels.Zip<TOp>));
            var spread = Launch.Spread(device, a.Length);
            kernel(device.Stream, spread.Threads, a.View, b.View, y.View, parameter, spread);
        }
    }

    /// <summary>Loops over contiguous ranges of elements: an element costs about a nanosecond here, so a step's
    /// few thousand stay on the calling thread, where a fork-join would cost more than it saves.</summary>
    private sealed unsafe class HostLoops : ElementwiseLaunch
    {
        // Below this many elements (~60 µs of work) one thread does them all.
        private const int ParallelElements = 1 << 16;

        public static HostLoops Instance { get; } = new();

        public override void Map<TOp>(Tensor x, Tensor y, float parameter)
        {
            HostSimd.Enter(x.Device, "the host elementwise loop");
            var (px, py) = ((nint)HostSimd.Pointer(x), (nint)HostSimd.Pointer(y));
            Split(x.Length, (start, end) =>
            {
                float* src = (float*)px, dst = (float*)py;
                for (var i = start; i < end; i++)
                    dst[i] = default(TOp).Apply(src[i], parameter);
            });
        }

        public override void Zip<TOp>(Tensor a, Tensor b, Tensor y, float parameter)
        {
            HostSimd.Enter(a.Device, "the host elementwise loop");
            var (pa, pb, py) = ((nint)HostSimd.Pointer(a), (nint)HostSimd.Pointer(b), (nint)HostSimd.Pointer(y));
            Split(a.Length, (start, end) =>
            {
                float* left = (float*)pa, right = (float*)pb, dst = (float*)py;
                for (var i = start; i < end; i++)
                    dst[i] = default(TOp).Apply(left[i], right[i], parameter);
            });
        }

        /// <summary>Elements [0, <paramref name="count"/>) in contiguous ranges: one on the calling thread below
        /// <see cref="ParallelElements"/>, else one per core.</summary>
        private static void Split(int count, Action<int, int> range)
        {
            var parts = count < ParallelElements ? 1 : Environment.ProcessorCount;
            if (parts == 1)
            {
                range(0, count);
                return;
            }
            HostSimd.For(parts, parts, p => range((int)((long)count * p / parts), (int)((long)count * (p + 1) / parts)));
        }
    }
}
