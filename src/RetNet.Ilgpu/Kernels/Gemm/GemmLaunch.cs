using ILGPU;
using ILGPU.Runtime;
using RetNet.Ilgpu.Devices;
using RetNet.Ilgpu.Tensors;

namespace RetNet.Ilgpu.Kernels.Gemm;

/// <summary>One checked product C = alpha·op(A)·op(B) + beta·C: the tensors and the shape <see cref="Gemm"/>
/// validated.</summary>
internal readonly record struct GemmOperands(Tensor A, Tensor B, Tensor C, GemmShape Shape, float Alpha, float Beta);

/// <summary>
/// The GEMM operator's seam: its implementation on each <see cref="OperatorBackend"/> (host SIMD code on the CPU
/// accelerator in host execution, the barrier-free kernel on its simulator, tiled kernels and the small-row kernel
/// elsewhere) and every configuration tests and benchmarks force.
/// </summary>
internal abstract class GemmLaunch : IOperatorBackends<GemmLaunch>
{
    /// <summary><see cref="GemmVariant.Simple"/>: one thread per element of C, no barriers.</summary>
    public static GemmLaunch Simple { get; } = new SimpleLaunch();

    /// <summary><see cref="GemmVariant.Tiled"/>: the tile the device policy's group size allows, for every shape.</summary>
    public static GemmLaunch Tiled { get; } = new TiledLaunch(smallRows: false);

    /// <summary>What tiled devices with the small-row kernel get: the small-row kernel for a few rows against B stored
    /// [N, K], the tiled kernel otherwise.</summary>
    public static GemmLaunch TiledSmallRows { get; } = new TiledLaunch(smallRows: true);

    /// <summary><see cref="GemmVariant.HostSimd"/>: host SIMD code on the widest instruction set, every core.</summary>
    public static GemmLaunch Host { get; } = new HostSimdLaunch(HostSimd.Auto, HostGemm.SmallRows);

    /// <summary>The tiled kernel at tile <typeparamref name="TTile"/>, so tests reach every tile.</summary>
    public static GemmLaunch TiledWith<TTile>() where TTile : struct, IGemmTile => TiledLaunch<TTile>.Instance;

    /// <summary>The small-row kernel at <paramref name="launch"/>, so tests reach every reduction and group size.</summary>
    public static GemmLaunch SmallRowsWith(SmallRowsLaunch launch) => new SmallRowsKernelLaunch(launch);

    /// <summary>Host SIMD code on a forced path and thread count; products of at most <paramref name="smallRows"/> rows
    /// run unpacked (0: every product packed).</summary>
    public static GemmLaunch HostWith(HostSimd simd, int smallRows) => new HostSimdLaunch(simd, smallRows);

    /// <summary>The implementation of each backend. On tiled devices a product of a few rows against a B stored
    /// [N, K] goes to the small-row kernel when the policy says so.</summary>
    static GemmLaunch IOperatorBackends<GemmLaunch>.For(DevicePolicy policy) => policy.Backend switch
    {
        OperatorBackend.Host => Host,
        OperatorBackend.BarrierFree => Simple,
        _ => policy.UsesSmallRowGemm ? TiledSmallRows : Tiled,
    };

    /// <summary>The public variant this implementation is.</summary>
    public abstract GemmVariant Variant { get; }

    /// <summary>Queues the product on the device's stream (host code runs it at once).</summary>
    /// <exception cref="NotSupportedException">This implementation cannot run on the tensors' device.</exception>
    public abstract void Run(in GemmOperands o);

    /// <summary>
    /// Queues the product with every row of C summed in one order whatever M is (<see cref="Gemm.RunBatchInvariant"/>).
    /// The one-thread-per-element kernel and the tiled kernel sum each element along k in the same order for any M,
    /// so by default this is <see cref="Run"/>; implementations that switch by M override it.
    /// </summary>
    public virtual void RunBatchInvariant(in GemmOperands o) => Run(o);

    private static GemmArguments Arguments(in GemmOperands o) => new(o.Shape, o.Alpha, o.Beta);

    private sealed class SimpleLaunch : GemmLaunch
    {
        public override GemmVariant Variant => GemmVariant.Simple;

        public override void Run(in GemmOperands o)
        {
            if (o.C.Length == 0)
                return;
            var device = o.C.Device;
            var kernel = device.Kernel(GemmKernels.Simple, accelerator =>
                accelerator.LoadAutoGroupedKernel<Index1D, FloatSource, FloatSource, ArrayView<float>, GemmArguments>(
                    GemmKernels.Simple));
            kernel(device.Stream, o.C.Length, FloatSource.Of(o.A), FloatSource.Of(o.B), o.C.View, Arguments(o));
        }
    }

    /// <summary>The tiled kernel at the largest tile the policy's group size allows; with
    /// <paramref name="smallRows"/>, the small-row kernel for the products <see cref="Gemm.SmallRows"/> accepts.</summary>
    private sealed class TiledLaunch(bool smallRows) : GemmLaunch
    {
        public override GemmVariant Variant => GemmVariant.Tiled;

        public override void Run(in GemmOperands o)
        {
            if (o.C.Length == 0)
                return;
            var device = o.C.Device;
            if (smallRows && Gemm.SmallRows(o.Shape) is { } rows)
            {
                SmallRowsKernelLaunch.Launch(o with { Shape = rows }, SmallRowsLaunch.For(device, o.Shape.K));
                return;
            }
            var tile = GemmTiles.Largest(device.Policy.GemmGroupSize);
            GemmLaunch launch = tile switch
            {
                GemmTile128x128 => TiledLaunch<GemmTile128x128>.Instance,
                GemmTile128x64 => TiledLaunch<GemmTile128x64>.Instance,
                GemmTile64x64 => TiledLaunch<GemmTile64x64>.Instance,
                GemmTile32x32 => TiledLaunch<GemmTile32x32>.Instance,
                _ => throw new InvalidOperationException($"No launcher for GEMM tile {tile.GetType().Name}."),
            };
            launch.Run(o);
        }

        /// <summary>
        /// With the small-row kernel, a product against B stored [N, K] runs through it for any M: the rows in blocks
        /// of <see cref="GemmKernels.MaxSmallRows"/> as batch entries of one launch (B broadcast), the remainder in a
        /// second. Each element's sum (the group's threads striding over k, then the group sum) depends on K and the
        /// device only, so a row gets the same bits in a block of 1 or of 8 rows.
        /// </summary>
        public override void RunBatchInvariant(in GemmOperands o)
        {
            var rows = Gemm.Fold(o.Shape);
            if (!smallRows || !rows.TransposeB || rows.TransposeA || rows.Batch != 1 || o.C.Length == 0)
            {
                Run(o);
                return;
            }
            var device = o.C.Device;
            var launch = SmallRowsLaunch.For(device, rows.K);
            const int block = GemmKernels.MaxSmallRows;
            var whole = rows.M / block;
            var (a, c) = (o.A.Reshape(rows.M, rows.K), o.C.Reshape(rows.M, rows.N));
            for (var first = 0; first < whole; first += SmallRowsLaunch.MaxBatch)
            {
                var entries = Math.Min(SmallRowsLaunch.MaxBatch, whole - first);
                SmallRowsKernelLaunch.Launch(o with
                {
                    A = a.Slice(first * block, entries * block),
                    C = c.Slice(first * block, entries * block),
                    Shape = new GemmShape(entries, block, rows.N, rows.K, TransposeB: true, BroadcastB: true),
                }, launch);
            }
            var left = rows.M - whole * block;
            if (left > 0)
                SmallRowsKernelLaunch.Launch(o with
                {
                    A = a.Slice(whole * block, left),
                    C = c.Slice(whole * block, left),
                    Shape = new GemmShape(1, left, rows.N, rows.K, TransposeB: true),
                }, launch);
        }
    }

    private sealed class TiledLaunch<TTile> : GemmLaunch where TTile : struct, IGemmTile
    {
        public static TiledLaunch<TTile> Instance { get; } = new();

        public override GemmVariant Variant => GemmVariant.Tiled;

        /// <exception cref="NotSupportedException">The tile's group is larger than the device allows.</exception>
        public override void Run(in GemmOperands o)
        {
            var device = o.C.Device;
            var threads = GemmTiles.Threads(default(TTile));
            if (threads > device.MaxGroupSize)
                throw new NotSupportedException(
                    $"GEMM tile {GemmTiles.Describe(default(TTile))} needs {threads} threads per group; {device} " +
                    $"allows {device.MaxGroupSize}.");
            if (o.C.Length == 0)
                return;
            var kernel = device.Kernel(GemmKernels.Tiled<TTile>, accelerator =>
                accelerator.LoadKernel<FloatSource, FloatSource, ArrayView<float>, GemmArguments>(
                    GemmKernels.Tiled<TTile>, LaunchBounds.Of<TTile>()));
            kernel(device.Stream, Gemm.TiledConfig(default(TTile), o.Shape), FloatSource.Of(o.A), FloatSource.Of(o.B),
                o.C.View, Arguments(o));
        }
    }

    private sealed class SmallRowsKernelLaunch(SmallRowsLaunch launch) : GemmLaunch
    {
        public override GemmVariant Variant => GemmVariant.Tiled;

        /// <exception cref="NotSupportedException">The product has more than <see cref="GemmKernels.MaxSmallRows"/>
        /// rows per batch entry or more than <see cref="SmallRowsLaunch.MaxBatch"/> entries.</exception>
        /// <exception cref="ArgumentOutOfRangeException">The launch cannot run on the device.</exception>
        public override void Run(in GemmOperands o)
        {
            launch.Validate(o.C.Device);
            var rows = Gemm.Fold(o.Shape);
            if (rows.M > GemmKernels.MaxSmallRows || rows.Batch > SmallRowsLaunch.MaxBatch)
                throw new NotSupportedException(
                    $"The small-row GEMM computes at most {GemmKernels.MaxSmallRows} rows per batch entry and " +
                    $"{SmallRowsLaunch.MaxBatch} entries; the product has {o.Shape.M} rows and {o.Shape.Batch} entries.");
            if (o.C.Length > 0)
                Launch(o with { Shape = rows }, launch);
        }

        public static void Launch(in GemmOperands o, SmallRowsLaunch launch)
        {
            var device = o.C.Device;
            var config = launch.Config(o.Shape.N, o.Shape.Batch);
            if (launch.Reduction == GroupReduction.SubGroups)
            {
                var kernel = device.Kernel(GemmKernels.SmallRows<SubGroupSum>, accelerator =>
                    accelerator.LoadKernel<FloatSource, FloatSource, ArrayView<float>, GemmArguments>(
                        GemmKernels.SmallRows<SubGroupSum>));
                kernel(device.Stream, config, FloatSource.Of(o.A), FloatSource.Of(o.B), o.C.View, Arguments(o));
            }
            else
            {
                var kernel = device.Kernel(GemmKernels.SmallRows<TreeGroupSum>, accelerator =>
                    accelerator.LoadKernel<FloatSource, FloatSource, ArrayView<float>, GemmArguments>(
                        GemmKernels.SmallRows<TreeGroupSum>));
                kernel(device.Stream, config, FloatSource.Of(o.A), FloatSource.Of(o.B), o.C.View, Arguments(o));
            }
        }
    }

    /// <summary><see cref="HostGemm"/> on the accelerator's host buffers.</summary>
    private sealed unsafe class HostSimdLaunch(HostSimd simd, int smallRows) : GemmLaunch
    {
        public override GemmVariant Variant => GemmVariant.HostSimd;

        /// <exception cref="NotSupportedException">The device is not ILGPU's CPU accelerator.</exception>
        public override void Run(in GemmOperands o)
        {
            HostSimd.Enter(o.C.Device, "GemmVariant.HostSimd", advice: "Use Auto, Tiled or Simple.");
            if (o.C.Length == 0)
                return;
            HostGemm.Run(HostOperand.Of(o.A), HostOperand.Of(o.B), HostSimd.Pointer(o.C), o.Shape, o.Alpha, o.Beta,
                simd.Path, simd.Threads, smallRows);
        }

        /// <summary>Every product unpacked: against B stored [N, K] one streamed dot product per element
        /// (<see cref="HostDots"/>) for any M, else the unpacked panels, whose order is the packed path's.</summary>
        public override void RunBatchInvariant(in GemmOperands o)
        {
            HostSimd.Enter(o.C.Device, "GemmVariant.HostSimd", advice: "Use Auto, Tiled or Simple.");
            if (o.C.Length == 0)
                return;
            HostGemm.Run(HostOperand.Of(o.A), HostOperand.Of(o.B), HostSimd.Pointer(o.C), o.Shape, o.Alpha, o.Beta,
                simd.Path, simd.Threads, smallRows: int.MaxValue);
        }
    }
}
