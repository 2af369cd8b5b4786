using System.Reflection;
using ILGPU;
using ILGPU.Runtime;
using RetNet.Ilgpu.Devices;
using RetNet.Ilgpu.Kernels;
using RetNet.Ilgpu.Tensors;

namespace RetNet.Ilgpu.Retention;

/// <summary>
/// Operands of one decayed causal product (<see cref="CausalProblem"/>): rows x and keys y [B, T, H, RowDim], values z
/// and output [B, T, H, OutDim], the window states [B, H, ⌈T/C⌉, ·] stored [RowDim, OutDim] or, when
/// <paramref name="TransposeState"/>, [OutDim, RowDim], and, for packed documents, the token bounds [B·T, 2]
/// (<see cref="PackedSequences"/>; null: each row is one sequence).
/// </summary>
internal readonly record struct CausalOperands(
    Tensor Rows, Tensor Keys, Tensor Values, Tensor? State, bool TransposeState, Tensor Decay, Tensor Output,
    int ChunkSize, bool Reverse, IndexTensor? Bounds = null);

/// <summary>
/// Operands of one chunk-state walk (<see cref="StateProblem"/>): x [B, T, H, RowDim], y [B, T, H, ColDim], the optional
/// initial matrix [B, H, RowDim, ColDim], the optional per-chunk output [B, H, ⌈T/C⌉, RowDim, ColDim] and the optional
/// final matrix (which may be the initial one itself: every element is read before it is written, by one thread),
/// and the optional token bounds of packed documents.
/// </summary>
internal readonly record struct StateOperands(
    Tensor X, Tensor Y, Tensor? Initial, Tensor Decay, Tensor? ChunkStates, Tensor? Final, int ChunkSize, bool Reverse,
    IndexTensor? Bounds = null);

/// <summary>
/// Operands of one recurrent scan (<see cref="RecurrentProblem"/>): q, k [B, T, H, Dk], v and the output
/// [B, T, H, Dv], the decay table, the state [B, H, Dk, Dv], read and advanced in place, and the optional token bounds
/// of packed documents.
/// </summary>
internal readonly record struct RecurrentOperands(Tensor Q, Tensor K, Tensor V, Tensor Decay, Tensor State,
    Tensor Output, IndexTensor? Bounds = null);

/// <summary>
/// The retention operator's seam: its implementation on each <see cref="OperatorBackend"/> (host SIMD code on the CPU
/// accelerator in host execution, barrier-free kernels on its simulator, tiled kernels elsewhere) and every
/// configuration the kernels can be launched with. Tests pass every configuration
/// explicitly through the forms' internal overloads.
/// </summary>
internal abstract class RetentionLaunch : TiledOperatorLaunch<RetentionLaunch>, ITiledOperator<RetentionLaunch>
{
    /// <summary>Barrier-free kernels (one thread per output row or state column).</summary>
    public static RetentionLaunch BarrierFree { get; } = new BarrierFreeLaunch();

    /// <summary>Tiled kernels with tile <typeparamref name="TTile"/> and <paramref name="groupSize"/> threads per group.</summary>
    public static RetentionLaunch Tiled<TTile>(int groupSize) where TTile : struct, IRetentionTile =>
        new TiledLaunch<TTile>(groupSize);

    static RetentionLaunch ITiledOperator<RetentionLaunch>.Tiled(bool narrow, int groupSize) =>
        narrow ? Tiled<RetentionTile16>(groupSize) : Tiled<RetentionTile32x64>(groupSize);

    static RetentionLaunch ITiledOperator<RetentionLaunch>.AutoTiled(int groupSize) => new AutoTiledLaunch(groupSize);

    static RetentionLaunch ITiledOperator<RetentionLaunch>.OnHost(HostSimd simd) => new HostRetentionLaunch(simd);

    /// <summary>Queues the decayed causal product on the device's stream.</summary>
    public abstract void Causal(in CausalOperands operands);

    /// <summary>Queues the chunk-state walk on the device's stream.</summary>
    public abstract void States(in StateOperands operands);

    /// <summary>
    /// Queues the recurrent scan on the device's stream: the barrier-free kernel (one thread per state column), which
    /// needs no tile, so the tiled configurations launch it too.
    /// </summary>
    public virtual void Recurrent(in RecurrentOperands o)
    {
        var problem = Problem(o);
        LaunchItems(RetentionKernels.RecurrentScan, o.Q.Device, o.Q.Dim(0) * problem.Heads * problem.ValueDim,
            o.Q.View, o.K.View, o.V.View, o.Decay.View, o.State.View, o.Output.View,
            BoundsOrPlaceholder(o.Bounds, o.Decay), problem);
    }

    /// <summary>Queues a barrier-free retention kernel (six views, the token bounds and its problem) over
    /// <paramref name="items"/> items, spread over threads by <see cref="Kernels.Launch.Spread"/>.</summary>
    private static void LaunchItems<TProblem>(
        Action<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>,
            ArrayView<float>, ArrayView<int>, TProblem, Spread> kernel, RetNetDevice device, int items,
        ArrayView<float> a, ArrayView<float> b, ArrayView<float> c, ArrayView<float> d, ArrayView<float> e,
        ArrayView<float> f, ArrayView<int> bounds, TProblem problem) where TProblem : struct
    {
        var launcher = device.Kernel(kernel, accelerator => accelerator.LoadAutoGroupedKernel(kernel));
        var spread = Kernels.Launch.Spread(device, items);
        launcher(device.Stream, spread.Threads, a, b, c, d, e, f, bounds, problem, spread);
    }

    /// <summary>Queues a tiled retention kernel (six views, the token bounds and its problem) on
    /// <paramref name="grid"/> groups of <paramref name="groupSize"/> threads.</summary>
    private static void LaunchTiles<TProblem>(
        Action<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>,
            ArrayView<float>, ArrayView<int>, TProblem> kernel, RetNetDevice device, Index3D grid, int groupSize,
        ArrayView<float> a, ArrayView<float> b, ArrayView<float> c, ArrayView<float> d, ArrayView<float> e,
        ArrayView<float> f, ArrayView<int> bounds, TProblem problem) where TProblem : struct
    {
        var launcher = device.Kernel(kernel, accelerator => accelerator.LoadKernel(kernel));
        launcher(device.Stream, new KernelConfig(grid, new Index3D(groupSize, 1, 1)), a, b, c, d, e, f, bounds,
            problem);
    }

    protected static CausalProblem Problem(in CausalOperands o, out int chunkCount)
    {
        var seqLen = o.Rows.Dim(1);
        var rowDim = o.Rows.Dim(3);
        var outDim = o.Values.Dim(3);
        var chunkSize = Math.Min(o.ChunkSize, seqLen);
        chunkCount = (seqLen + chunkSize - 1) / chunkSize;
        return new CausalProblem
        {
            Heads = o.Rows.Dim(2),
            SeqLen = seqLen,
            RowDim = rowDim,
            OutDim = outDim,
            ChunkSize = chunkSize,
            ChunkCount = chunkCount,
            StateRowStride = o.TransposeState ? 1 : outDim,
            StateColStride = o.TransposeState ? rowDim : 1,
            HasState = o.State is null ? 0 : 1,
            Reverse = o.Reverse ? 1 : 0,
            HasBounds = o.Bounds is null ? 0 : 1,
        };
    }

    protected static StateProblem Problem(in StateOperands o)
    {
        var seqLen = o.X.Dim(1);
        var chunkSize = Math.Min(o.ChunkSize, seqLen);
        return new StateProblem
        {
            Heads = o.X.Dim(2),
            SeqLen = seqLen,
            RowDim = o.X.Dim(3),
            ColDim = o.Y.Dim(3),
            ChunkSize = chunkSize,
            ChunkCount = (seqLen + chunkSize - 1) / chunkSize,
            HasInitial = o.Initial is null ? 0 : 1,
            WriteChunkStates = o.ChunkStates is null ? 0 : 1,
            WriteFinal = o.Final is null ? 0 : 1,
            Reverse = o.Reverse ? 1 : 0,
            HasBounds = o.Bounds is null ? 0 : 1,
        };
    }

    protected static RecurrentProblem Problem(in RecurrentOperands o) => new()
    {
        Heads = o.Q.Dim(2),
        SeqLen = o.Q.Dim(1),
        KeyDim = o.Q.Dim(3),
        ValueDim = o.V.Dim(3),
        HasBounds = o.Bounds is null ? 0 : 1,
    };

    /// <summary>The view of an optional tensor; absent ones get a placeholder the kernel never reads (its flag is 0).</summary>
    protected static ArrayView<float> ViewOrPlaceholder(Tensor? tensor, Tensor placeholder) =>
        (tensor ?? placeholder).View;

    /// <summary>The token bounds, or, without packed documents, <paramref name="placeholder"/>'s memory read as ints
    /// (never read: the problem's HasBounds is 0), so an unpacked launch allocates nothing.</summary>
    protected static ArrayView<int> BoundsOrPlaceholder(IndexTensor? bounds, Tensor placeholder) =>
        bounds?.View ?? placeholder.View.Cast<int>();

    private sealed class BarrierFreeLaunch : RetentionLaunch
    {
        public override string Name => "barrier-free";

        public override void Causal(in CausalOperands o)
        {
            var problem = Problem(o, out _);
            LaunchItems(RetentionKernels.CausalRows, o.Rows.Device, o.Rows.Dim(0) * problem.SeqLen * problem.Heads,
                o.Rows.View, o.Keys.View, o.Values.View, ViewOrPlaceholder(o.State, o.Decay), o.Decay.View,
                o.Output.View, BoundsOrPlaceholder(o.Bounds, o.Decay), problem);
        }

        public override void States(in StateOperands o)
        {
            var problem = Problem(o);
            LaunchItems(RetentionKernels.StatesColumns, o.X.Device, o.X.Dim(0) * problem.Heads * problem.ColDim,
                o.X.View, o.Y.View, ViewOrPlaceholder(o.Initial, o.Decay), o.Decay.View,
                ViewOrPlaceholder(o.ChunkStates, o.Decay), ViewOrPlaceholder(o.Final, o.Decay),
                BoundsOrPlaceholder(o.Bounds, o.Decay), problem);
        }
    }

    private sealed class TiledLaunch<TTile>(int groupSize) : RetentionLaunch where TTile : struct, IRetentionTile
    {
        public override string Name => $"tiled {typeof(TTile).Name} × {groupSize} threads";

        public override void Causal(in CausalOperands o)
        {
            var device = o.Rows.Device;
            var tile = default(TTile);
            var problem = Problem(o, out var chunkCount);
            var tilesPerChunk = (problem.ChunkSize + tile.Rows - 1) / tile.Rows;
            var grid = new Index3D(chunkCount * tilesPerChunk, (problem.OutDim + tile.Columns - 1) / tile.Columns,
                o.Rows.Dim(0) * problem.Heads);
            LaunchTiles(RetentionKernels.CausalTiled<TTile>, device, grid, groupSize, o.Rows.View, o.Keys.View,
                o.Values.View, ViewOrPlaceholder(o.State, o.Decay), o.Decay.View, o.Output.View,
                BoundsOrPlaceholder(o.Bounds, o.Decay), problem);
        }

        public override void States(in StateOperands o)
        {
            var device = o.X.Device;
            var tile = default(TTile);
            var problem = Problem(o);
            var grid = new Index3D((problem.RowDim + tile.Depth - 1) / tile.Depth,
                (problem.ColDim + tile.Columns - 1) / tile.Columns, o.X.Dim(0) * problem.Heads);
            LaunchTiles(RetentionKernels.StatesTiled<TTile>, device, grid, groupSize, o.X.View, o.Y.View,
                ViewOrPlaceholder(o.Initial, o.Decay), o.Decay.View, ViewOrPlaceholder(o.ChunkStates, o.Decay),
                ViewOrPlaceholder(o.Final, o.Decay), BoundsOrPlaceholder(o.Bounds, o.Decay), problem);
        }
    }

    /// <summary>Tiled, with the narrow tile when the output has at most 16 columns and the wide one otherwise.</summary>
    private sealed class AutoTiledLaunch(int groupSize) : RetentionLaunch
    {
        private readonly RetentionLaunch narrow = new TiledLaunch<RetentionTile16>(groupSize);
        private readonly RetentionLaunch wide = new TiledLaunch<RetentionTile32x64>(groupSize);

        public override string Name => $"tiled (auto) × {groupSize} threads";

        public override void Causal(in CausalOperands o) =>
            (o.Values.Dim(3) <= default(RetentionTile16).Columns ? narrow : wide).Causal(o);

        public override void States(in StateOperands o) =>
            (o.Y.Dim(3) <= default(RetentionTile16).Columns ? narrow : wide).States(o);
    }
}

/// <summary>The kernel report's rule for the tiled retention kernels: <see cref="TiledOperatorLaunch{TSelf}.TiledGroupSize"/>.</summary>
internal sealed class RetentionTiledGeometry : IKernelGeometryRule
{
    /// <inheritdoc/>
    public KernelGeometry For(MethodInfo kernel, LaunchLimits limits) =>
        new(RetentionLaunch.TiledGroupSize(limits.MaxGroupSize), 0, "RetentionLaunch.TiledGroupSize");
}
