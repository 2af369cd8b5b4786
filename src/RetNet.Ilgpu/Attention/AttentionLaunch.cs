using System.Reflection;
using ILGPU;
using ILGPU.Runtime;
using RetNet.Ilgpu.Devices;
using RetNet.Ilgpu.Kernels;
using RetNet.Ilgpu.Tensors;

namespace RetNet.Ilgpu.Attention;

/// <summary>Operands of the forward pass: q, k [B, T, H, Dk], v and o [B, T, H, Dv], the optional L [B, H, T].</summary>
internal readonly record struct AttentionOperands(Tensor Q, Tensor K, Tensor V, Tensor Output, Tensor? LogSumExp,
    float Scale);

/// <summary>
/// Operands of the gradient kernels: the forward inputs, dO [B, T, H, Dv], L and the row terms D [B, H, T], and the
/// gradients dq, dk [B, T, H, Dk] and dv [B, T, H, Dv] they overwrite.
/// </summary>
internal readonly record struct AttentionGradientOperands(Tensor Q, Tensor K, Tensor V, Tensor DOutput,
    Tensor LogSumExp, Tensor Deltas, Tensor Dq, Tensor Dk, Tensor Dv, float Scale);

/// <summary>
/// Operands of a decode step: the new queries [B, 1, H, Dk], the caches [B, H, capacity, ·], the lengths n_b [B] on
/// the device, and the output [B, 1, H, Dv] it overwrites.
/// </summary>
internal readonly record struct StepOperands(Tensor Q, Tensor KeyCache, Tensor ValueCache, IndexTensor Lengths,
    float Scale, Tensor Output);

/// <summary>
/// The attention operator's seam: its implementation on each <see cref="OperatorBackend"/> (host SIMD code on the CPU
/// accelerator in host execution, barrier-free kernels on its simulator, tiled kernels elsewhere) and every
/// configuration the kernels can be launched with. Tests pass every configuration
/// explicitly through <see cref="CausalAttention"/>'s internal overloads.
/// </summary>
internal abstract class AttentionLaunch : TiledOperatorLaunch<AttentionLaunch>, ITiledOperator<AttentionLaunch>
{
    /// <summary>Barrier-free kernels (one thread per query row, or per key row for dk and dv).</summary>
    public static AttentionLaunch BarrierFree { get; } = new BarrierFreeLaunch();

    /// <summary>Tiled kernels with tile <typeparamref name="TTile"/> and <paramref name="groupSize"/> threads per group.</summary>
    public static AttentionLaunch Tiled<TTile>(int groupSize) where TTile : struct, IAttentionTile =>
        new TiledLaunch<TTile>(groupSize);

    static AttentionLaunch ITiledOperator<AttentionLaunch>.Tiled(bool narrow, int groupSize) =>
        narrow ? Tiled<AttentionTile16>(groupSize) : Tiled<AttentionTile32x64>(groupSize);

    static AttentionLaunch ITiledOperator<AttentionLaunch>.AutoTiled(int groupSize) => new AutoTiledLaunch(groupSize);

    static AttentionLaunch ITiledOperator<AttentionLaunch>.OnHost(HostSimd simd) => new HostAttentionLaunch(simd);

    /// <summary>Queues the forward pass (T ≥ 1) on the device's stream.</summary>
    public abstract void Forward(in AttentionOperands operands);

    /// <summary>Queues dq, dk and dv (T ≥ 1, D already computed) on the device's stream.</summary>
    public abstract void Gradients(in AttentionGradientOperands operands);

    /// <summary>
    /// A decode step (arguments checked). The step kernel, <see cref="AttentionKernels.StepRows"/>, is barrier-free
    /// on every device, so every kernel configuration launches it; the host implementation overrides it.
    /// </summary>
    public virtual void Step(in StepOperands o)
    {
        var device = o.Q.Device;
        var problem = new CacheProblem(o.Q.Dim(2), o.KeyCache.Dim(2), o.Q.Dim(3), o.ValueCache.Dim(3), o.Scale);
        var kernel = device.Kernel(AttentionKernels.StepRows, accelerator =>
            accelerator.LoadAutoGroupedKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>,
                ArrayView<int>, ArrayView<float>, CacheProblem, Spread>(AttentionKernels.StepRows));
        var spread = Kernels.Launch.Spread(device, o.Q.Dim(0) * problem.Heads);
        kernel(device.Stream, spread.Threads, o.Q.View, o.KeyCache.View, o.ValueCache.View, o.Lengths.View,
            o.Output.View, problem, spread);
    }

    /// <summary>
    /// Writes x [B, T, H, D] into the cache [B, H, capacity, D] at positions lengths[b] + t (arguments checked, x and
    /// the cache not empty): <see cref="AttentionKernels.AppendRows"/> on every kernel configuration; the host
    /// implementation overrides it.
    /// </summary>
    public virtual void Append(Tensor x, Tensor cache, IndexTensor lengths)
    {
        var device = x.Device;
        var problem = new AppendProblem(x.Dim(1), x.Dim(2), x.Dim(3), cache.Dim(2));
        var kernel = device.Kernel(AttentionKernels.AppendRows, accelerator =>
            accelerator.LoadAutoGroupedKernel<Index1D, ArrayView<float>, ArrayView<int>, ArrayView<float>,
                AppendProblem, Spread>(AttentionKernels.AppendRows));
        var spread = Kernels.Launch.Spread(device, x.Length);
        kernel(device.Stream, spread.Threads, x.View, lengths.View, cache.View, problem, spread);
    }

    protected static AttentionProblem Problem(Tensor q, Tensor v, float scale, Tensor? logSumExp) => new()
    {
        Heads = q.Dim(2),
        SeqLen = q.Dim(1),
        KeyDim = q.Dim(3),
        ValueDim = v.Dim(3),
        Scale = scale,
        WriteLogSumExp = logSumExp is null ? 0 : 1,
    };

    private sealed class BarrierFreeLaunch : AttentionLaunch
    {
        public override string Name => "barrier-free";

        public override void Forward(in AttentionOperands o)
        {
            var device = o.Q.Device;
            var problem = Problem(o.Q, o.V, o.Scale, o.LogSumExp);
            var kernel = device.Kernel(AttentionKernels.ForwardRows, accelerator =>
                accelerator.LoadAutoGroupedKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>,
                    ArrayView<float>, ArrayView<float>, AttentionProblem, Spread>(AttentionKernels.ForwardRows));
            var spread = Kernels.Launch.Spread(device, o.Q.Dim(0) * problem.Heads * problem.SeqLen);
            // An absent L gets the output as a placeholder the kernel never writes (its flag is 0).
            kernel(device.Stream, spread.Threads, o.Q.View, o.K.View, o.V.View, o.Output.View,
                (o.LogSumExp ?? o.Output).View, problem, spread);
        }

        public override void Gradients(in AttentionGradientOperands o)
        {
            var device = o.Q.Device;
            var problem = Problem(o.Q, o.V, o.Scale, o.LogSumExp);
            var spread = Kernels.Launch.Spread(device, o.Q.Dim(0) * problem.Heads * problem.SeqLen);
            var queries = device.Kernel(AttentionKernels.QueryGradientRows, accelerator =>
                accelerator.LoadAutoGroupedKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>,
                    ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, AttentionProblem, Spread>(
                    AttentionKernels.QueryGradientRows));
            queries(device.Stream, spread.Threads, o.Q.View, o.K.View, o.V.View, o.DOutput.View, o.LogSumExp.View,
                o.Deltas.View, o.Dq.View, problem, spread);
            var keys = device.Kernel(AttentionKernels.KeyValueGradientRows, accelerator =>
                accelerator.LoadAutoGroupedKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>,
                    ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>,
                    AttentionProblem, Spread>(AttentionKernels.KeyValueGradientRows));
            keys(device.Stream, spread.Threads, o.Q.View, o.K.View, o.V.View, o.DOutput.View, o.LogSumExp.View,
                o.Deltas.View, o.Dk.View, o.Dv.View, problem, spread);
        }
    }

    private sealed class TiledLaunch<TTile>(int groupSize) : AttentionLaunch where TTile : struct, IAttentionTile
    {
        public override string Name => $"tiled {typeof(TTile).Name} × {groupSize} threads";

        public override void Forward(in AttentionOperands o)
        {
            var device = o.Q.Device;
            var tile = default(TTile);
            var problem = Problem(o.Q, o.V, o.Scale, o.LogSumExp);
            var grid = new Index3D(Kernels.Launch.CeilDiv(problem.SeqLen, tile.Rows),
                Kernels.Launch.CeilDiv(problem.ValueDim, tile.Columns), o.Q.Dim(0) * problem.Heads);
            var kernel = device.Kernel(AttentionKernels.ForwardTiled<TTile>, accelerator =>
                accelerator.LoadKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>,
                    ArrayView<float>, AttentionProblem>(AttentionKernels.ForwardTiled<TTile>));
            kernel(device.Stream, new KernelConfig(grid, new Index3D(groupSize, 1, 1)), o.Q.View, o.K.View, o.V.View,
                o.Output.View, (o.LogSumExp ?? o.Output).View, problem);
        }

        public override void Gradients(in AttentionGradientOperands o)
        {
            var device = o.Q.Device;
            var tile = default(TTile);
            var problem = Problem(o.Q, o.V, o.Scale, o.LogSumExp);
            var rowTiles = Kernels.Launch.CeilDiv(problem.SeqLen, tile.Rows);
            var keyColumns = Kernels.Launch.CeilDiv(problem.KeyDim, tile.Columns);
            var valueColumns = Kernels.Launch.CeilDiv(problem.ValueDim, tile.Columns);
            var group = new Index3D(groupSize, 1, 1);
            var heads = o.Q.Dim(0) * problem.Heads;
            var queries = device.Kernel(AttentionKernels.QueryGradientTiled<TTile>, accelerator =>
                accelerator.LoadKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>,
                    ArrayView<float>, ArrayView<float>, ArrayView<float>, AttentionProblem>(
                    AttentionKernels.QueryGradientTiled<TTile>));
            queries(device.Stream, new KernelConfig(new Index3D(rowTiles, keyColumns, heads), group), o.Q.View,
                o.K.View, o.V.View, o.DOutput.View, o.LogSumExp.View, o.Deltas.View, o.Dq.View, problem);
            var keys = device.Kernel(AttentionKernels.KeyValueGradientTiled<TTile>, accelerator =>
                accelerator.LoadKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>,
                    ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, AttentionProblem>(
                    AttentionKernels.KeyValueGradientTiled<TTile>));
            keys(device.Stream, new KernelConfig(new Index3D(rowTiles, keyColumns + valueColumns, heads), group),
                o.Q.View, o.K.View, o.V.View, o.DOutput.View, o.LogSumExp.View, o.Deltas.View, o.Dk.View, o.Dv.View,
                problem);
        }
    }

    /// <summary>Tiled, with the narrow tile when every head dimension is at most 16 and the wide one otherwise.</summary>
    private sealed class AutoTiledLaunch(int groupSize) : AttentionLaunch
    {
        private readonly AttentionLaunch narrow = new TiledLaunch<AttentionTile16>(groupSize);
        private readonly AttentionLaunch wide = new TiledLaunch<AttentionTile32x64>(groupSize);

        public override string Name => $"tiled (auto) × {groupSize} threads";

        public override void Forward(in AttentionOperands o) => Choose(o.Q, o.V).Forward(o);

        public override void Gradients(in AttentionGradientOperands o) => Choose(o.Q, o.V).Gradients(o);

        private AttentionLaunch Choose(Tensor q, Tensor v) =>
            Math.Max(q.Dim(3), v.Dim(3)) <= default(AttentionTile16).Columns ? narrow : wide;
    }
}

/// <summary>The kernel report's rule for the tiled attention kernels: <see cref="TiledOperatorLaunch{TSelf}.TiledGroupSize"/>.</summary>
internal sealed class AttentionTiledGeometry : IKernelGeometryRule
{
    /// <inheritdoc/>
    public KernelGeometry For(MethodInfo kernel, LaunchLimits limits) =>
        new(AttentionLaunch.TiledGroupSize(limits.MaxGroupSize), 0, "AttentionLaunch.TiledGroupSize");
}
