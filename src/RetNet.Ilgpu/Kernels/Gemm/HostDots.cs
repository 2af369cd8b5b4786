using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace RetNet.Ilgpu.Kernels.Gemm;

/// <summary>
/// A few rows of A against a weight stored [N, K] (a Linear layer's) on the host: a short prompt's prefill, and the
/// decoding step of a model without k-major copies of its weights (<see cref="Model.DecodeWeights"/>). Each element
/// of C is one dot product of a row of A with a row of B, both read front to back. Every weight row is streamed
/// contiguously, four rows side by side, and 16-bit weights are widened as they load. Rows of A go through the same
/// four weight rows at once, four rows with AVX-512 (sixteen accumulators in its 32 registers) and two with AVX2
/// (eight accumulators: sixteen spilled out of its 16 registers), each weight vector loaded once for all of them, so a
/// step of many sequences is bound by the FMA units rather than by loads; a single row takes eight weight rows at
/// once, so batch 1 keeps eight independent chains and stays bound by memory bandwidth.
/// </summary>
/// <remarks>
/// The order of the sums is fixed per element, whatever block it is computed in: one vector accumulator (fused
/// multiply-adds over the vector-width slices of k, in k order, from 0), reduced across lanes by
/// <see cref="IVectorOps{TV}.Sum"/>'s tree (four accumulators side by side through
/// <see cref="IVectorOps{TV}.Sum4"/>, the same additions), then the last K mod width products in k order. So a row's
/// bits depend neither on M nor on its place in a block of rows, and threads split the columns only. It is not the
/// packed path's single k-ordered chain: a product through here and the same product through the packing agree to
/// rounding (tests hold both to the reference), not bit for bit.
/// </remarks>
internal static unsafe class HostDots
{
    /// <summary>Rows of A, and rows of B, in one block of the batched kernel.</summary>
    private const int Block = 4;

    /// <summary>
    /// C[i, j] = alpha·Σ_k A[i, k]·B[j, k] (+ beta·C[i, j]) for i &lt; m, j in [j0, j1): A fp32 with rows
    /// <paramref name="lda"/> apart (k contiguous), B of element type <typeparamref name="TB"/> with rows
    /// <paramref name="ldb"/> apart (k contiguous), C with rows <paramref name="ldc"/> apart.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Columns<TV, TOps, TB>(float* a, int lda, int m, nint b, int ldb, float* c, int ldc, int k,
        int j0, int j1, float alpha, float beta)
        where TV : struct
        where TOps : struct, IVectorOps<TV>
        where TB : struct, IElements
    {
        var rowBytes = (nint)ldb * TB.Size;
        // Sixteen accumulators and five operands fit AVX-512's 32 registers but not AVX2's 16, where a 4×4 block
        // spills; there two rows at a time (eight accumulators).
        var rowBlock = typeof(TV) == typeof(Vector512<float>) ? Block : 2;
        var fullRows = m / rowBlock * rowBlock;
        var j = j0;
        for (; j + Block <= j1; j += Block)
        {
            var bj = b + j * rowBytes;
            if (rowBlock == Block)
                for (var i = 0; i < fullRows; i += Block)
                    FourByFour<TV, TOps, TB>(a + (nint)i * lda, lda, bj, rowBytes, c + (nint)i * ldc + j, ldc, k,
                        alpha, beta);
            else
                for (var i = 0; i < fullRows; i += 2)
                    TwoByFour<TV, TOps, TB>(a + (nint)i * lda, lda, bj, rowBytes, c + (nint)i * ldc + j, ldc, k,
                        alpha, beta);
        }
        // Rows past the last block of four: eight columns at a time (eight chains), then four.
        for (var i = fullRows; i < m; i++)
        {
            var row = a + (nint)i * lda;
            var cell = c + (nint)i * ldc;
            var jj = j0;
            for (; jj + 2 * Block <= j1; jj += 2 * Block)
                OneByEight<TV, TOps, TB>(row, b + jj * rowBytes, rowBytes, cell + jj, k, alpha, beta);
            if (jj + Block <= j1)
                OneByFour<TV, TOps, TB>(row, b + jj * rowBytes, rowBytes, cell + jj, k, alpha, beta);
        }
        // Columns past the last group of four, for every row.
        for (; j < j1; j++)
        {
            var bj = b + j * rowBytes;
            for (var i = 0; i < m; i++)
                Store(c + (nint)i * ldc + j, One<TV, TOps, TB>(a + (nint)i * lda, bj, k), alpha, beta);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Store(float* cell, float sum, float alpha, float beta) =>
        *cell = beta != 0f ? alpha * sum + beta * *cell : alpha * sum;

    /// <summary>Four sums of one row from <see cref="IVectorOps{TV}.Sum4"/>, each finished with its tail products in
    /// k order and stored to consecutive cells.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Store4<TB>(float* a, nint b, nint rowBytes, int k0, int k, Vector128<float> sums, float* cell,
        float alpha, float beta) where TB : struct, IElements
    {
        if (k0 == k)
        {
            // No tail: the four cells at once, with Store's operations lane by lane (no fused multiply-add here either).
            var scaled = Vector128.Create(alpha) * sums;
            if (beta != 0f)
                scaled += Vector128.Create(beta) * Vector128.Load(cell);
            scaled.Store(cell);
            return;
        }
        Store(cell, Tail<TB>(a, b, k0, k, sums.GetElement(0)), alpha, beta);
        Store(cell + 1, Tail<TB>(a, b + rowBytes, k0, k, sums.GetElement(1)), alpha, beta);
        Store(cell + 2, Tail<TB>(a, b + 2 * rowBytes, k0, k, sums.GetElement(2)), alpha, beta);
        Store(cell + 3, Tail<TB>(a, b + 3 * rowBytes, k0, k, sums.GetElement(3)), alpha, beta);
    }

    /// <summary>Rows a … a+3 (<paramref name="lda"/> apart) against weight rows b … b+3: sixteen elements, one
    /// accumulator each; each weight vector loaded once feeds four rows.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void FourByFour<TV, TOps, TB>(float* a, int lda, nint b, nint rowBytes, float* c, int ldc, int k,
        float alpha, float beta)
        where TV : struct
        where TOps : struct, IVectorOps<TV>
        where TB : struct, IElements
    {
        var w = TOps.Count;
        float* a0 = a, a1 = a + lda, a2 = a1 + lda, a3 = a2 + lda;
        nint b0 = b, b1 = b + rowBytes, b2 = b1 + rowBytes, b3 = b2 + rowBytes;
        TV s00 = TOps.Zero, s01 = TOps.Zero, s02 = TOps.Zero, s03 = TOps.Zero;
        TV s10 = TOps.Zero, s11 = TOps.Zero, s12 = TOps.Zero, s13 = TOps.Zero;
        TV s20 = TOps.Zero, s21 = TOps.Zero, s22 = TOps.Zero, s23 = TOps.Zero;
        TV s30 = TOps.Zero, s31 = TOps.Zero, s32 = TOps.Zero, s33 = TOps.Zero;
        var kk = 0;
        for (; kk + w <= k; kk += w)
        {
            var x0 = TOps.Load(a0 + kk);
            var x1 = TOps.Load(a1 + kk);
            var x2 = TOps.Load(a2 + kk);
            var x3 = TOps.Load(a3 + kk);
            var v = TOps.Load<TB>(b0, kk);
            s00 = TOps.Fma(x0, v, s00);
            s10 = TOps.Fma(x1, v, s10);
            s20 = TOps.Fma(x2, v, s20);
            s30 = TOps.Fma(x3, v, s30);
            v = TOps.Load<TB>(b1, kk);
            s01 = TOps.Fma(x0, v, s01);
            s11 = TOps.Fma(x1, v, s11);
            s21 = TOps.Fma(x2, v, s21);
            s31 = TOps.Fma(x3, v, s31);
            v = TOps.Load<TB>(b2, kk);
            s02 = TOps.Fma(x0, v, s02);
            s12 = TOps.Fma(x1, v, s12);
            s22 = TOps.Fma(x2, v, s22);
            s32 = TOps.Fma(x3, v, s32);
            v = TOps.Load<TB>(b3, kk);
            s03 = TOps.Fma(x0, v, s03);
            s13 = TOps.Fma(x1, v, s13);
            s23 = TOps.Fma(x2, v, s23);
            s33 = TOps.Fma(x3, v, s33);
        }
        Store4<TB>(a0, b0, rowBytes, kk, k, TOps.Sum4(s00, s01, s02, s03), c, alpha, beta);
        Store4<TB>(a1, b0, rowBytes, kk, k, TOps.Sum4(s10, s11, s12, s13), c + ldc, alpha, beta);
        Store4<TB>(a2, b0, rowBytes, kk, k, TOps.Sum4(s20, s21, s22, s23), c + 2 * ldc, alpha, beta);
        Store4<TB>(a3, b0, rowBytes, kk, k, TOps.Sum4(s30, s31, s32, s33), c + 3 * ldc, alpha, beta);
    }

    /// <summary>Rows a and a+1 against weight rows b … b+3: eight elements, one accumulator each, in registers
    /// on AVX2.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void TwoByFour<TV, TOps, TB>(float* a, int lda, nint b, nint rowBytes, float* c, int ldc, int k,
        float alpha, float beta)
        where TV : struct
        where TOps : struct, IVectorOps<TV>
        where TB : struct, IElements
    {
        var w = TOps.Count;
        float* a0 = a, a1 = a + lda;
        nint b0 = b, b1 = b + rowBytes, b2 = b1 + rowBytes, b3 = b2 + rowBytes;
        TV s00 = TOps.Zero, s01 = TOps.Zero, s02 = TOps.Zero, s03 = TOps.Zero;
        TV s10 = TOps.Zero, s11 = TOps.Zero, s12 = TOps.Zero, s13 = TOps.Zero;
        var kk = 0;
        for (; kk + w <= k; kk += w)
        {
            var x0 = TOps.Load(a0 + kk);
            var x1 = TOps.Load(a1 + kk);
            var v = TOps.Load<TB>(b0, kk);
            s00 = TOps.Fma(x0, v, s00);
            s10 = TOps.Fma(x1, v, s10);
            v = TOps.Load<TB>(b1, kk);
            s01 = TOps.Fma(x0, v, s01);
            s11 = TOps.Fma(x1, v, s11);
            v = TOps.Load<TB>(b2, kk);
            s02 = TOps.Fma(x0, v, s02);
            s12 = TOps.Fma(x1, v, s12);
            v = TOps.Load<TB>(b3, kk);
            s03 = TOps.Fma(x0, v, s03);
            s13 = TOps.Fma(x1, v, s13);
        }
        Store4<TB>(a0, b0, rowBytes, kk, k, TOps.Sum4(s00, s01, s02, s03), c, alpha, beta);
        Store4<TB>(a1, b0, rowBytes, kk, k, TOps.Sum4(s10, s11, s12, s13), c + ldc, alpha, beta);
    }

    /// <summary>One row against weight rows b … b+7: eight independent chains cover the FMA latency when a row is
    /// alone, each weight row read once, front to back.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void OneByEight<TV, TOps, TB>(float* a, nint b, nint rowBytes, float* c, int k, float alpha,
        float beta)
        where TV : struct
        where TOps : struct, IVectorOps<TV>
        where TB : struct, IElements
    {
        var w = TOps.Count;
        nint b0 = b, b1 = b + rowBytes, b2 = b1 + rowBytes, b3 = b2 + rowBytes;
        nint b4 = b3 + rowBytes, b5 = b4 + rowBytes, b6 = b5 + rowBytes, b7 = b6 + rowBytes;
        TV s0 = TOps.Zero, s1 = TOps.Zero, s2 = TOps.Zero, s3 = TOps.Zero;
        TV s4 = TOps.Zero, s5 = TOps.Zero, s6 = TOps.Zero, s7 = TOps.Zero;
        var kk = 0;
        for (; kk + w <= k; kk += w)
        {
            var x = TOps.Load(a + kk);
            s0 = TOps.Fma(x, TOps.Load<TB>(b0, kk), s0);
            s1 = TOps.Fma(x, TOps.Load<TB>(b1, kk), s1);
            s2 = TOps.Fma(x, TOps.Load<TB>(b2, kk), s2);
            s3 = TOps.Fma(x, TOps.Load<TB>(b3, kk), s3);
            s4 = TOps.Fma(x, TOps.Load<TB>(b4, kk), s4);
            s5 = TOps.Fma(x, TOps.Load<TB>(b5, kk), s5);
            s6 = TOps.Fma(x, TOps.Load<TB>(b6, kk), s6);
            s7 = TOps.Fma(x, TOps.Load<TB>(b7, kk), s7);
        }
        Store4<TB>(a, b0, rowBytes, kk, k, TOps.Sum4(s0, s1, s2, s3), c, alpha, beta);
        Store4<TB>(a, b4, rowBytes, kk, k, TOps.Sum4(s4, s5, s6, s7), c + 4, alpha, beta);
    }

    /// <summary>One row against weight rows b … b+3.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void OneByFour<TV, TOps, TB>(float* a, nint b, nint rowBytes, float* c, int k, float alpha,
        float beta)
        where TV : struct
        where TOps : struct, IVectorOps<TV>
        where TB : struct, IElements
    {
        var w = TOps.Count;
        nint b0 = b, b1 = b + rowBytes, b2 = b1 + rowBytes, b3 = b2 + rowBytes;
        TV s0 = TOps.Zero, s1 = TOps.Zero, s2 = TOps.Zero, s3 = TOps.Zero;
        var kk = 0;
        for (; kk + w <= k; kk += w)
        {
            var x = TOps.Load(a + kk);
            s0 = TOps.Fma(x, TOps.Load<TB>(b0, kk), s0);
            s1 = TOps.Fma(x, TOps.Load<TB>(b1, kk), s1);
            s2 = TOps.Fma(x, TOps.Load<TB>(b2, kk), s2);
            s3 = TOps.Fma(x, TOps.Load<TB>(b3, kk), s3);
        }
        Store4<TB>(a, b0, rowBytes, kk, k, TOps.Sum4(s0, s1, s2, s3), c, alpha, beta);
    }

    /// <summary>One element: the same chain and tree as the blocks', for columns past the last group of four.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float One<TV, TOps, TB>(float* a, nint b, int k)
        where TV : struct
        where TOps : struct, IVectorOps<TV>
        where TB : struct, IElements
    {
        var w = TOps.Count;
        var s = TOps.Zero;
        var kk = 0;
        for (; kk + w <= k; kk += w)
            s = TOps.Fma(TOps.Load(a + kk), TOps.Load<TB>(b, kk), s);
        return Tail<TB>(a, b, kk, k, TOps.Sum(s));
    }

    /// <summary>The products k0 … k−1 added to <paramref name="sum"/> in k order.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float Tail<TB>(float* a, nint b, int k0, int k, float sum) where TB : struct, IElements
    {
        for (var kk = k0; kk < k; kk++)
            sum = MathF.FusedMultiplyAdd(a[kk], TB.Load(b, kk), sum);
        return sum;
    }
}
