using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using ILGPU;
using ILGPU.Runtime;
using RetNet.Ilgpu.Devices;
using RetNet.Ilgpu.Kernels.Gemm;
using RetNet.Ilgpu.Tensors;

namespace RetNet.Ilgpu.Kernels.Elementwise;

/// <summary>
/// The elementwise operators' seam: the <see cref="ElementwiseKernels"/> on tiled and barrier-free backends, and on
/// the host backend the operation's vector form in a loop over the buffers' host addresses. The kernels read and
/// write through <see cref="ArrayView{T}"/>s, a few nanoseconds an access when called as host code; a decoding step of
/// a batch runs several such passes over B rows per block, which the vector loop makes a fraction of that. The vector
/// form agrees with the kernels' scalar form to rounding (exactly for add, multiply and scale), not bit for bit.
/// </summary>
internal abstract class ElementwiseLaunch : IOperatorBackends<ElementwiseLaunch>
{
    /// <summary>The implementation of each backend.</summary>
    static ElementwiseLaunch IOperatorBackends<ElementwiseLaunch>.For(DevicePolicy policy) =>
        policy.Backend == OperatorBackend.Host ? HostLoops.Instance : Kernels.Instance;

    /// <summary>The kernels, whatever the device's backend: lets checks launch them on the host backend too.</summary>
    public static ElementwiseLaunch KernelLaunch => Kernels.Instance;

    /// <summary>The host loops on a given path and thread limit, so tests reach the AVX2 and scalar loops on any
    /// machine.</summary>
    public static ElementwiseLaunch HostWith(HostSimd simd) => new HostLoops(simd);

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

    /// <summary>
    /// Vector loops over contiguous ranges of elements: a vector of elements costs a few nanoseconds here, so a step's
    /// few thousand stay on the calling thread, where a fork-join would cost more than it saves. Every element goes
    /// through the op's vector form (<see cref="IUnaryOp.ApplyLanes"/>), the last partial vector too, padded with
    /// zeros, so an element's bits depend on its value alone, never on its index, the tensor's length or the split over
    /// threads. The scalar path applies the scalar form to every element.
    /// </summary>
    private sealed unsafe class HostLoops(HostSimd simd) : ElementwiseLaunch
    {
        // Below this many elements one thread does them all (a decoding step's passes are a few thousand).
        private const int ParallelElements = 1 << 16;

        public static HostLoops Instance { get; } = new(HostSimd.Auto);

        private readonly HostGemmPath path = simd.Path == HostGemmPath.Auto ? HostGemm.Best : simd.Path;

        public override void Map<TOp>(Tensor x, Tensor y, float parameter)
        {
            HostSimd.Enter(x.Device, "the host elementwise loop");
            var (px, py) = ((nint)HostSimd.Pointer(x), (nint)HostSimd.Pointer(y));
            var loop = path;
            Split(x.Length, simd.Threads, (start, end) =>
            {
                float* src = (float*)px + start, dst = (float*)py + start;
                switch (loop)
                {
                    case HostGemmPath.Vector512:
                        MapLanes<Vector512<float>, Vector512Ops, TOp>(src, dst, end - start, parameter);
                        break;
                    case HostGemmPath.Vector256:
                        MapLanes<Vector256<float>, Vector256Ops, TOp>(src, dst, end - start, parameter);
                        break;
                    default:
                        for (var i = 0; i < end - start; i++)
                            dst[i] = default(TOp).Apply(src[i], parameter);
                        break;
                }
            });
        }

        public override void Zip<TOp>(Tensor a, Tensor b, Tensor y, float parameter)
        {
            HostSimd.Enter(a.Device, "the host elementwise loop");
            var (pa, pb, py) = ((nint)HostSimd.Pointer(a), (nint)HostSimd.Pointer(b), (nint)HostSimd.Pointer(y));
            var loop = path;
            Split(a.Length, simd.Threads, (start, end) =>
            {
                float* left = (float*)pa + start, right = (float*)pb + start, dst = (float*)py + start;
                switch (loop)
                {
                    case HostGemmPath.Vector512:
                        ZipLanes<Vector512<float>, Vector512Ops, TOp>(left, right, dst, end - start, parameter);
                        break;
                    case HostGemmPath.Vector256:
                        ZipLanes<Vector256<float>, Vector256Ops, TOp>(left, right, dst, end - start, parameter);
                        break;
                    default:
                        for (var i = 0; i < end - start; i++)
                            dst[i] = default(TOp).Apply(left[i], right[i], parameter);
                        break;
                }
            });
        }

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private static void MapLanes<TV, TOps, TOp>(float* x, float* y, int count, float parameter)
            where TV : struct
            where TOps : struct, IVectorOps<TV>
            where TOp : struct, IUnaryOp
        {
            var (w, p) = (TOps.Count, TOps.Broadcast(parameter));
            var i = 0;
            for (; i + w <= count; i += w)
                TOps.Store(TOp.ApplyLanes<TV, TOps>(TOps.Load(x + i), p), y + i);
            if (i == count)
                return;
            // The tail through a full vector: the input copied (it may be the output itself) and zero-padded.
            var tail = stackalloc float[w];
            new Span<float>(tail, w).Clear();
            new ReadOnlySpan<float>(x + i, count - i).CopyTo(new Span<float>(tail, w));
            TOps.Store(TOp.ApplyLanes<TV, TOps>(TOps.Load(tail), p), tail);
            new ReadOnlySpan<float>(tail, count - i).CopyTo(new Span<float>(y + i, count - i));
        }

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private static void ZipLanes<TV, TOps, TOp>(float* a, float* b, float* y, int count, float parameter)
            where TV : struct
            where TOps : struct, IVectorOps<TV>
            where TOp : struct, IBinaryOp
        {
            var (w, p) = (TOps.Count, TOps.Broadcast(parameter));
            var i = 0;
            for (; i + w <= count; i += w)
                TOps.Store(TOp.ApplyLanes<TV, TOps>(TOps.Load(a + i), TOps.Load(b + i), p), y + i);
            if (i == count)
                return;
            var left = stackalloc float[w];
            var right = stackalloc float[w];
            new Span<float>(left, w).Clear();
            new Span<float>(right, w).Clear();
            new ReadOnlySpan<float>(a + i, count - i).CopyTo(new Span<float>(left, w));
            new ReadOnlySpan<float>(b + i, count - i).CopyTo(new Span<float>(right, w));
            TOps.Store(TOp.ApplyLanes<TV, TOps>(TOps.Load(left), TOps.Load(right), p), left);
            new ReadOnlySpan<float>(left, count - i).CopyTo(new Span<float>(y + i, count - i));
        }

        /// <summary>Elements [0, <paramref name="count"/>) in contiguous ranges: one on the calling thread below
        /// <see cref="ParallelElements"/>, else one per thread.</summary>
        private static void Split(int count, int threads, Action<int, int> range)
        {
            var parts = count < ParallelElements ? 1 : Math.Max(1, threads);
            if (parts == 1)
            {
                range(0, count);
                return;
            }
            HostSimd.For(parts, parts, p => range((int)((long)count * p / parts), (int)((long)count * (p + 1) / parts)));
        }
    }
}
