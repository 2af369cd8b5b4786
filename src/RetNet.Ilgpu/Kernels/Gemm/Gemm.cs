using System.Reflection;
using ILGPU;
using ILGPU.Runtime;
using RetNet.Ilgpu.Devices;
using RetNet.Ilgpu.Tensors;

namespace RetNet.Ilgpu.Kernels.Gemm;

/// <summary>
/// General matrix multiply on row-major tensors: C = alpha·op(A)·op(B) + beta·C, op = identity or transpose per
/// operand, over a batch. The gradients of a product are products too: for C = A·B, dA = dC·Bᵀ and dB = Aᵀ·dC.
/// </summary>
public static class Gemm
{
    // CUDA limits the grid's y and z extents to 65535; the tiled kernel strides over any larger batch.
    private const int MaxGridZ = 65535;

    /// <summary>
    /// C = alpha·op(A)·op(B) + beta·C. <paramref name="a"/> is [M, K] ([K, M] when <paramref name="transposeA"/>) or
    /// [batch, M, K]; <paramref name="b"/> is [K, N] ([N, K] when <paramref name="transposeB"/>) or [batch, K, N]; a
    /// matrix against a batched other operand is broadcast across the batch (a Linear layer's weight). <paramref name="c"/>
    /// is [M, N] when both operands are matrices, else [batch, M, N]. With <paramref name="beta"/> = 0 the old
    /// contents of <paramref name="c"/> are ignored, even NaN. <paramref name="a"/> and <paramref name="b"/> may be
    /// stored as fp32, fp16 or bf16 (widened exactly, accumulated in fp32); <paramref name="c"/> is fp32.
    /// </summary>
    /// <exception cref="ArgumentException">A shape does not fit (names the argument and the shapes involved), the
    /// tensors live on different devices, <paramref name="c"/> is not stored as fp32, or <paramref name="c"/> shares
    /// storage with an input.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="alpha"/> or <paramref name="beta"/> is not finite,
    /// or <paramref name="variant"/> is not a defined value.</exception>
    /// <exception cref="NotSupportedException">The tiled variant on a device whose groups hold fewer than 16 threads, or
    /// <see cref="GemmVariant.HostSimd"/> on a device other than ILGPU's CPU accelerator.</exception>
    public static void Run(Tensor a, Tensor b, Tensor c, bool transposeA = false, bool transposeB = false,
        float alpha = 1f, float beta = 0f, GemmVariant variant = GemmVariant.Auto)
    {
        var shape = Validate(a, b, c, transposeA, transposeB, alpha, beta);
        var launch = variant switch
        {
            GemmVariant.Auto => a.Device.Backend<GemmLaunch>(),
            GemmVariant.Tiled => GemmLaunch.Tiled,
            GemmVariant.Simple => GemmLaunch.Simple,
            GemmVariant.HostSimd => GemmLaunch.Host,
            _ => throw new ArgumentOutOfRangeException(nameof(variant), variant,
                "Expected Auto, Tiled, Simple or HostSimd."),
        };
        launch.Run(new GemmOperands(a, b, c, shape, alpha, beta));
    }

    /// <summary>
    /// <see cref="Run"/> with every row of C computed in one summation order whatever the number of rows: a row's
    /// bits depend only on that row of op(A) and on op(B), never on how many other rows share the product. A decoding
    /// step runs its Linear layers through here so that a sequence's logits are the same alone or in any batch: the
    /// automatic path picks an implementation by M (on the host, per-element dot products up to
    /// <see cref="HostGemm.SmallRows"/> rows and the packed micro-kernel above; on a GPU, the small-row kernel up to
    /// <see cref="GemmKernels.MaxSmallRows"/> rows and the tiled kernel above), and the two sum in different orders.
    /// Here the host streams dot products for any M (<see cref="HostDots"/>), and a GPU runs the small-row kernel
    /// over blocks of <see cref="GemmKernels.MaxSmallRows"/> rows; other products (B not stored [N, K]) and other
    /// backends take implementations whose order never depended on M.
    /// </summary>
    /// <exception cref="ArgumentException">As <see cref="Run"/>.</exception>
    /// <exception cref="ArgumentOutOfRangeException">As <see cref="Run"/>.</exception>
    internal static void RunBatchInvariant(Tensor a, Tensor b, Tensor c, bool transposeA = false,
        bool transposeB = false, float alpha = 1f, float beta = 0f)
    {
        var shape = Validate(a, b, c, transposeA, transposeB, alpha, beta);
        a.Device.Backend<GemmLaunch>().RunBatchInvariant(new GemmOperands(a, b, c, shape, alpha, beta));
    }

    /// <summary><see cref="RunBatchInvariant"/> with an explicit implementation, so tests reach every backend.</summary>
    internal static void RunBatchInvariantWith(Tensor a, Tensor b, Tensor c, bool transposeA, bool transposeB,
        GemmLaunch launch) =>
        launch.RunBatchInvariant(new GemmOperands(a, b, c, Validate(a, b, c, transposeA, transposeB, 1f, 0f), 1f, 0f));

    /// <summary><see cref="Run"/> with the tiled kernel at a given tile, so tests reach every tile.</summary>
    /// <exception cref="NotSupportedException">The tile's group is larger than the device allows.</exception>
    internal static void RunTiled<TTile>(Tensor a, Tensor b, Tensor c, bool transposeA = false,
        bool transposeB = false, float alpha = 1f, float beta = 0f) where TTile : struct, IGemmTile =>
        RunWith(a, b, c, transposeA, transposeB, alpha, beta, GemmLaunch.TiledWith<TTile>());

    /// <summary>
    /// <see cref="Run"/> with the small-row kernel at a given launch, so tests reach every reduction and group size.
    /// </summary>
    /// <exception cref="NotSupportedException">The product has more than <see cref="GemmKernels.MaxSmallRows"/> rows
    /// per batch entry or more than <see cref="SmallRowsLaunch.MaxBatch"/> entries.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="launch"/> cannot run on the device.</exception>
    internal static void RunSmallRows(Tensor a, Tensor b, Tensor c, SmallRowsLaunch launch, bool transposeA = false,
        bool transposeB = false, float alpha = 1f, float beta = 0f) =>
        RunWith(a, b, c, transposeA, transposeB, alpha, beta, GemmLaunch.SmallRowsWith(launch));

    /// <summary>
    /// <see cref="Run"/> with <see cref="GemmVariant.HostSimd"/> on a forced instruction-set path and thread count, so
    /// tests reach the AVX2 and scalar micro-kernels (and the single-threaded schedule) on any machine; products of at
    /// most <paramref name="smallRows"/> rows run unpacked (0: every product packed).
    /// </summary>
    /// <exception cref="NotSupportedException">The device is not ILGPU's CPU accelerator.</exception>
    internal static void RunHostSimd(Tensor a, Tensor b, Tensor c, HostGemmPath path, int threads,
        bool transposeA = false, bool transposeB = false, float alpha = 1f, float beta = 0f,
        int smallRows = HostGemm.SmallRows) =>
        RunWith(a, b, c, transposeA, transposeB, alpha, beta, GemmLaunch.HostWith(new HostSimd(path, threads), smallRows));

    /// <summary><see cref="Run"/> with an explicit implementation: checks the arguments, then runs it.</summary>
    internal static void RunWith(Tensor a, Tensor b, Tensor c, bool transposeA, bool transposeB, float alpha, float beta,
        GemmLaunch launch) =>
        launch.Run(new GemmOperands(a, b, c, Validate(a, b, c, transposeA, transposeB, alpha, beta), alpha, beta));

    /// <summary>
    /// The shape the small-row kernel computes <paramref name="shape"/> as when <see cref="Run"/> picks it
    /// automatically: B stored [N, K] (each column of C reads a contiguous row), at most
    /// <see cref="GemmKernels.MaxSmallRows"/> rows per batch entry after <see cref="Fold"/> and at most
    /// <see cref="SmallRowsLaunch.MaxBatch"/> entries; null otherwise.
    /// </summary>
    internal static GemmShape? SmallRows(GemmShape shape)
    {
        var rows = Fold(shape);
        return shape.TransposeB && rows.M <= GemmKernels.MaxSmallRows && rows.Batch <= SmallRowsLaunch.MaxBatch
            ? rows
            : null;
    }

    /// <summary>
    /// A batch of row-major A against one broadcast B as one product: the batch entries' rows are consecutive in A
    /// and in C, so [batch, M, K]·Bᵀ is [batch·M, K]·Bᵀ and each weight is read once rather than once per entry. Kept
    /// only while the folded rows fit the kernel; other shapes are returned as they are.
    /// </summary>
    internal static GemmShape Fold(GemmShape shape) =>
        shape is { Batch: > 1, BroadcastB: true, BroadcastA: false, TransposeA: false } &&
        (long)shape.Batch * shape.M <= GemmKernels.MaxSmallRows
            ? new GemmShape(1, shape.Batch * shape.M, shape.N, shape.K, TransposeB: shape.TransposeB)
            : shape;

    /// <summary>The variant <paramref name="variant"/> stands for on <paramref name="device"/>.</summary>
    /// <exception cref="NotSupportedException"><see cref="GemmVariant.HostSimd"/> on a device other than ILGPU's CPU
    /// accelerator.</exception>
    internal static GemmVariant Resolve(RetNetDevice device, GemmVariant variant)
    {
        if (variant == GemmVariant.HostSimd)
            HostSimd.Check(device, "GemmVariant.HostSimd", advice: "Use Auto, Tiled or Simple.");
        return variant == GemmVariant.Auto ? device.Backend<GemmLaunch>().Variant : variant;
    }

    /// <summary>Grid and group of the tiled kernel: one group per output tile, z over (at most 65535 of) the batch.</summary>
    internal static KernelConfig TiledConfig(IGemmTile tile, GemmShape shape) =>
        new(new Index3D(Launch.CeilDiv(shape.M, tile.BM), Launch.CeilDiv(shape.N, tile.BN),
                Math.Min(shape.Batch, MaxGridZ)),
            new Index3D(GemmTiles.Threads(tile), 1, 1));

    private static GemmShape Validate(Tensor a, Tensor b, Tensor c, bool transposeA, bool transposeB, float alpha,
        float beta)
    {
        ArgumentNullException.ThrowIfNull(a);
        ArgumentNullException.ThrowIfNull(b);
        ArgumentNullException.ThrowIfNull(c);
        ShapeCheck.SameDevice(a.Device, nameof(b), b);
        ShapeCheck.SameDevice(a.Device, nameof(c), c);
        if (c.DType != TensorDType.Float32)
            throw new ArgumentException(
                $"Argument 'c' is stored as {c.DType}; expected Float32 (the product accumulates and is written in " +
                "fp32; A and B may be 16-bit).", nameof(c));
        if (!float.IsFinite(alpha))
            throw new ArgumentOutOfRangeException(nameof(alpha), alpha, "Expected a finite alpha.");
        if (!float.IsFinite(beta))
            throw new ArgumentOutOfRangeException(nameof(beta), beta, "Expected a finite beta.");
        var shape = GemmShape.Of(a, b, transposeA, transposeB);
        int[] expectedC = a.Rank == 3 || b.Rank == 3 ? [shape.Batch, shape.M, shape.N] : [shape.M, shape.N];
        ShapeCheck.Expect(c, nameof(c), expectedC);
        ShapeCheck.Distinct(c, nameof(c), a, nameof(a));
        ShapeCheck.Distinct(c, nameof(c), b, nameof(b));
        return shape;
    }
}

/// <summary>The kernel report's rule for <see cref="GemmKernels.Tiled{TTile}"/>: <see cref="Gemm.TiledConfig"/>.</summary>
internal sealed class TiledGemmGeometry : IKernelGeometryRule
{
    /// <inheritdoc/>
    public KernelGeometry For(MethodInfo kernel, LaunchLimits limits) => KernelGeometry.Of(
        Gemm.TiledConfig((IGemmTile)Activator.CreateInstance(kernel.GetGenericArguments()[0])!, new GemmShape(1, 1, 1, 1)),
        "Gemm.TiledConfig: one thread per 4×4 block of the tile");
}
