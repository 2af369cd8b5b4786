using RetNet.Ilgpu.Tensors;

namespace RetNet.Ilgpu.Kernels.Gemm;

/// <summary>Which GEMM kernel <see cref="Gemm.Run"/> launches.</summary>
public enum GemmVariant
{
    /// <summary><see cref="HostSimd"/> on ILGPU's CPU accelerator in host execution (its simulated threads cannot use
    /// SIMD), <see cref="Simple"/> on its simulator, <see cref="Tiled"/> elsewhere, except that a product of at most 8 rows against B stored [N, K] (a decoding
    /// step's Linear layer) runs a kernel with one group per column of C that reads each weight once.</summary>
    Auto,

    /// <summary>Shared-memory tiles with 8×8 register blocks per thread; the tile is chosen per device class.</summary>
    Tiled,

    /// <summary>One thread per element of C with a K loop: no shared memory, no barriers.</summary>
    Simple,

    /// <summary>
    /// Not a kernel: packed panels and an AVX-512/AVX2/scalar fused multiply-add micro-kernel run as host code on the
    /// CPU accelerator's host memory, over all processor cores. Only on ILGPU's CPU accelerator.
    /// </summary>
    HostSimd,
}

/// <summary>
/// One batched GEMM, C[p] = alpha·op(A[p])·op(B[p]) + beta·C[p] for p &lt; <paramref name="Batch"/>, all operands
/// row-major: A is [M, K] ([K, M] when <paramref name="TransposeA"/>), B is [K, N] ([N, K] when
/// <paramref name="TransposeB"/>), C is [M, N]. A broadcast operand is one matrix shared by every batch entry
/// (batch stride 0), the way a Linear layer applies its weight.
/// </summary>
/// <param name="Batch">Number of independent products (1 when nothing is batched).</param>
/// <param name="M">Rows of op(A) and C.</param>
/// <param name="N">Columns of op(B) and C.</param>
/// <param name="K">The inner dimension.</param>
/// <param name="TransposeA">A is stored [K, M].</param>
/// <param name="TransposeB">B is stored [N, K].</param>
/// <param name="BroadcastA">A is one matrix used for every batch entry.</param>
/// <param name="BroadcastB">B is one matrix used for every batch entry.</param>
public readonly record struct GemmShape(
    int Batch, int M, int N, int K,
    bool TransposeA = false, bool TransposeB = false,
    bool BroadcastA = false, bool BroadcastB = false)
{
    /// <summary>Elements between consecutive matrices of A (0 when broadcast).</summary>
    public int BatchStrideA => BroadcastA ? 0 : M * K;

    /// <summary>Elements between consecutive matrices of B (0 when broadcast).</summary>
    public int BatchStrideB => BroadcastB ? 0 : K * N;

    /// <summary>Elements between consecutive matrices of C.</summary>
    public int BatchStrideC => M * N;

    /// <summary>Elements A holds.</summary>
    public int ElementsA => (BroadcastA ? 1 : Batch) * M * K;

    /// <summary>Elements B holds.</summary>
    public int ElementsB => (BroadcastB ? 1 : Batch) * K * N;

    /// <summary>Elements C holds.</summary>
    public int ElementsC => Batch * M * N;

    /// <summary>Floating-point operations of the products (a multiply and an add per term), 2·batch·M·N·K.</summary>
    public double Flops => 2.0 * Batch * M * N * K;

    /// <summary>
    /// The shape of the product of <paramref name="a"/> and <paramref name="b"/>: each is a matrix or a batch of
    /// matrices ([batch, rows, columns]); a matrix against a batch is broadcast across it.
    /// </summary>
    /// <exception cref="ArgumentException">A rank is not 2 or 3, the inner dimensions differ, or the batch sizes
    /// differ; names the argument and both shapes.</exception>
    public static GemmShape Of(Tensor a, Tensor b, bool transposeA = false, bool transposeB = false) =>
        Of(a.Shape, b.Shape, transposeA, transposeB);

    /// <summary>
    /// <see cref="Of(Tensor, Tensor, bool, bool)"/> on bare shapes (for host arrays and the reference).
    /// </summary>
    /// <exception cref="ArgumentException">A rank is not 2 or 3, the inner dimensions differ, or the batch sizes
    /// differ; names the argument and both shapes.</exception>
    public static GemmShape Of(ReadOnlySpan<int> a, ReadOnlySpan<int> b, bool transposeA = false, bool transposeB = false)
    {
        RequireMatrixOrBatch(a, "a", transposeA ? "[K, M]" : "[M, K]");
        RequireMatrixOrBatch(b, "b", transposeB ? "[N, K]" : "[K, N]");
        var rowsA = a[^2];
        var colsA = a[^1];
        var rowsB = b[^2];
        var colsB = b[^1];
        var (m, kA) = transposeA ? (colsA, rowsA) : (rowsA, colsA);
        var (kB, n) = transposeB ? (colsB, rowsB) : (rowsB, colsB);
        if (kA != kB)
            throw new ArgumentException(
                $"Argument 'b' has shape {ShapeCheck.Format(b)}; inner dimensions differ: a has K={kA}, b has K={kB} " +
                $"(a {ShapeCheck.Format(a)}{(transposeA ? " transposed" : "")}, " +
                $"b {ShapeCheck.Format(b)}{(transposeB ? " transposed" : "")}).", "b");
        if (a.Length == 3 && b.Length == 3 && a[0] != b[0])
            throw new ArgumentException(
                $"Argument 'b' has shape {ShapeCheck.Format(b)}; batch sizes differ: a has batch={a[0]}, b has " +
                $"batch={b[0]} (a {ShapeCheck.Format(a)}, b {ShapeCheck.Format(b)}).", "b");
        var batch = a.Length == 3 ? a[0] : b.Length == 3 ? b[0] : 1;
        return new GemmShape(batch, m, n, kA, transposeA, transposeB,
            BroadcastA: a.Length == 2 && b.Length == 3, BroadcastB: b.Length == 2 && a.Length == 3);
    }

    private static void RequireMatrixOrBatch(ReadOnlySpan<int> shape, string argument, string matrix)
    {
        if (shape.Length is not (2 or 3))
            throw new ArgumentException(
                $"Argument '{argument}' has shape {ShapeCheck.Format(shape)} of rank {shape.Length}; expected rank 2 " +
                $"{matrix} or rank 3 [batch, {matrix[1..^1]}].", argument);
    }
}
