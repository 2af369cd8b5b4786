using System.Runtime.CompilerServices;

namespace RetNet.Ilgpu.Kernels.Gemm;

/// <summary>
/// A decoding step's product on the host: a few rows of A against a weight stored [N, K] (a Linear layer's), each
/// element of C one dot product of a row of A with a row of B, both read front to back. Every weight row is streamed
/// once, contiguously, four rows side by side (eight independent accumulator chains keep the FMA units busy), and
/// 16-bit weights are widened as they load. This is bound by memory bandwidth, as a step should be; the transposing
/// small-row path it replaced interleaved 32 rows in 512-byte pieces and reached a fraction of it.
/// </summary>
/// <remarks>
/// The order of the sums is fixed: per element, two vector accumulators (k in even and odd vector-width slices, fused
/// multiply-adds in k order), added and reduced across lanes in a fixed tree, then the last K mod width products in
/// k order. Threads split the columns only, so the thread count never changes a bit. It is not the packed path's
/// single k-ordered chain: a product through here and the same product through the packing agree to rounding
/// (tests hold both to the reference), not bit for bit.
/// </remarks>
internal static unsafe class HostDots
{
    /// <summary>Rows of B streamed side by side.</summary>
    private const int RowsAtOnce = 4;

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
        var j = j0;
        for (; j + RowsAtOnce <= j1; j += RowsAtOnce)
        {
            var b0 = b + (nint)j * ldb * TB.Size;
            var b1 = b0 + (nint)ldb * TB.Size;
            var b2 = b1 + (nint)ldb * TB.Size;
            var b3 = b2 + (nint)ldb * TB.Size;
            var i = 0;
            for (; i + 2 <= m; i += 2)
            {
                var row = a + (nint)i * lda;
                var (first, second) = FourTwice<TV, TOps, TB>(row, row + lda, b0, b1, b2, b3, k);
                var cell = c + (nint)i * ldc + j;
                Store(cell, first.Item1, alpha, beta);
                Store(cell + 1, first.Item2, alpha, beta);
                Store(cell + 2, first.Item3, alpha, beta);
                Store(cell + 3, first.Item4, alpha, beta);
                cell += ldc;
                Store(cell, second.Item1, alpha, beta);
                Store(cell + 1, second.Item2, alpha, beta);
                Store(cell + 2, second.Item3, alpha, beta);
                Store(cell + 3, second.Item4, alpha, beta);
            }
            if (i < m)
            {
                var (s0, s1, s2, s3) = Four<TV, TOps, TB>(a + (nint)i * lda, b0, b1, b2, b3, k);
                var cell = c + (nint)i * ldc + j;
                Store(cell, s0, alpha, beta);
                Store(cell + 1, s1, alpha, beta);
                Store(cell + 2, s2, alpha, beta);
                Store(cell + 3, s3, alpha, beta);
            }
        }
        for (; j < j1; j++)
        {
            var bj = b + (nint)j * ldb * TB.Size;
            for (var i = 0; i < m; i++)
                Store(c + (nint)i * ldc + j, One<TV, TOps, TB>(a + (nint)i * lda, bj, k), alpha, beta);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Store(float* cell, float sum, float alpha, float beta) =>
        *cell = beta != 0f ? alpha * sum + beta * *cell : alpha * sum;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static (float, float, float, float) Four<TV, TOps, TB>(float* a, nint b0, nint b1, nint b2, nint b3, int k)
        where TV : struct
        where TOps : struct, IVectorOps<TV>
        where TB : struct, IElements
    {
        var w = TOps.Count;
        TV x0 = TOps.Zero, y0 = TOps.Zero, x1 = TOps.Zero, y1 = TOps.Zero;
        TV x2 = TOps.Zero, y2 = TOps.Zero, x3 = TOps.Zero, y3 = TOps.Zero;
        var kk = 0;
        for (; kk + 2 * w <= k; kk += 2 * w)
        {
            var a0 = TOps.Load(a + kk);
            var a1 = TOps.Load(a + kk + w);
            x0 = TOps.Fma(a0, TOps.Load<TB>(b0, kk), x0);
            y0 = TOps.Fma(a1, TOps.Load<TB>(b0, kk + w), y0);
            x1 = TOps.Fma(a0, TOps.Load<TB>(b1, kk), x1);
            y1 = TOps.Fma(a1, TOps.Load<TB>(b1, kk + w), y1);
            x2 = TOps.Fma(a0, TOps.Load<TB>(b2, kk), x2);
            y2 = TOps.Fma(a1, TOps.Load<TB>(b2, kk + w), y2);
            x3 = TOps.Fma(a0, TOps.Load<TB>(b3, kk), x3);
            y3 = TOps.Fma(a1, TOps.Load<TB>(b3, kk + w), y3);
        }
        if (kk + w <= k)
        {
            var a0 = TOps.Load(a + kk);
            x0 = TOps.Fma(a0, TOps.Load<TB>(b0, kk), x0);
            x1 = TOps.Fma(a0, TOps.Load<TB>(b1, kk), x1);
            x2 = TOps.Fma(a0, TOps.Load<TB>(b2, kk), x2);
            x3 = TOps.Fma(a0, TOps.Load<TB>(b3, kk), x3);
            kk += w;
        }
        return (Tail<TB>(a, b0, kk, k, TOps.Sum(TOps.Add(x0, y0))), Tail<TB>(a, b1, kk, k, TOps.Sum(TOps.Add(x1, y1))),
            Tail<TB>(a, b2, kk, k, TOps.Sum(TOps.Add(x2, y2))), Tail<TB>(a, b3, kk, k, TOps.Sum(TOps.Add(x3, y3))));
    }

    /// <summary>
    /// <see cref="Four"/> for two rows of A at once (a batch of decoding rows): each weight vector loaded once feeds
    /// both rows, so a step of many sequences is bound by the FMA units rather than by loads. Every element takes
    /// exactly <see cref="Four"/>'s operations, so a row's bits do not depend on whether it was paired.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static ((float, float, float, float), (float, float, float, float)) FourTwice<TV, TOps, TB>(float* a,
        float* e, nint b0, nint b1, nint b2, nint b3, int k)
        where TV : struct
        where TOps : struct, IVectorOps<TV>
        where TB : struct, IElements
    {
        var w = TOps.Count;
        TV x0 = TOps.Zero, y0 = TOps.Zero, x1 = TOps.Zero, y1 = TOps.Zero;
        TV x2 = TOps.Zero, y2 = TOps.Zero, x3 = TOps.Zero, y3 = TOps.Zero;
        TV u0 = TOps.Zero, v0 = TOps.Zero, u1 = TOps.Zero, v1 = TOps.Zero;
        TV u2 = TOps.Zero, v2 = TOps.Zero, u3 = TOps.Zero, v3 = TOps.Zero;
        var kk = 0;
        for (; kk + 2 * w <= k; kk += 2 * w)
        {
            var a0 = TOps.Load(a + kk);
            var a1 = TOps.Load(a + kk + w);
            var e0 = TOps.Load(e + kk);
            var e1 = TOps.Load(e + kk + w);
            var w0 = TOps.Load<TB>(b0, kk);
            var w1 = TOps.Load<TB>(b0, kk + w);
            x0 = TOps.Fma(a0, w0, x0);
            y0 = TOps.Fma(a1, w1, y0);
            u0 = TOps.Fma(e0, w0, u0);
            v0 = TOps.Fma(e1, w1, v0);
            w0 = TOps.Load<TB>(b1, kk);
            w1 = TOps.Load<TB>(b1, kk + w);
            x1 = TOps.Fma(a0, w0, x1);
            y1 = TOps.Fma(a1, w1, y1);
            u1 = TOps.Fma(e0, w0, u1);
            v1 = TOps.Fma(e1, w1, v1);
            w0 = TOps.Load<TB>(b2, kk);
            w1 = TOps.Load<TB>(b2, kk + w);
            x2 = TOps.Fma(a0, w0, x2);
            y2 = TOps.Fma(a1, w1, y2);
            u2 = TOps.Fma(e0, w0, u2);
            v2 = TOps.Fma(e1, w1, v2);
            w0 = TOps.Load<TB>(b3, kk);
            w1 = TOps.Load<TB>(b3, kk + w);
            x3 = TOps.Fma(a0, w0, x3);
            y3 = TOps.Fma(a1, w1, y3);
            u3 = TOps.Fma(e0, w0, u3);
            v3 = TOps.Fma(e1, w1, v3);
        }
        if (kk + w <= k)
        {
            var a0 = TOps.Load(a + kk);
            var e0 = TOps.Load(e + kk);
            var w0 = TOps.Load<TB>(b0, kk);
            x0 = TOps.Fma(a0, w0, x0);
            u0 = TOps.Fma(e0, w0, u0);
            w0 = TOps.Load<TB>(b1, kk);
            x1 = TOps.Fma(a0, w0, x1);
            u1 = TOps.Fma(e0, w0, u1);
            w0 = TOps.Load<TB>(b2, kk);
            x2 = TOps.Fma(a0, w0, x2);
            u2 = TOps.Fma(e0, w0, u2);
            w0 = TOps.Load<TB>(b3, kk);
            x3 = TOps.Fma(a0, w0, x3);
            u3 = TOps.Fma(e0, w0, u3);
            kk += w;
        }
        return ((Tail<TB>(a, b0, kk, k, TOps.Sum(TOps.Add(x0, y0))), Tail<TB>(a, b1, kk, k, TOps.Sum(TOps.Add(x1, y1))),
                Tail<TB>(a, b2, kk, k, TOps.Sum(TOps.Add(x2, y2))), Tail<TB>(a, b3, kk, k, TOps.Sum(TOps.Add(x3, y3)))),
            (Tail<TB>(e, b0, kk, k, TOps.Sum(TOps.Add(u0, v0))), Tail<TB>(e, b1, kk, k, TOps.Sum(TOps.Add(u1, v1))),
                Tail<TB>(e, b2, kk, k, TOps.Sum(TOps.Add(u2, v2))), Tail<TB>(e, b3, kk, k, TOps.Sum(TOps.Add(u3, v3)))));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float One<TV, TOps, TB>(float* a, nint b, int k)
        where TV : struct
        where TOps : struct, IVectorOps<TV>
        where TB : struct, IElements
    {
        var w = TOps.Count;
        TV x = TOps.Zero, y = TOps.Zero;
        var kk = 0;
        for (; kk + 2 * w <= k; kk += 2 * w)
        {
            x = TOps.Fma(TOps.Load(a + kk), TOps.Load<TB>(b, kk), x);
            y = TOps.Fma(TOps.Load(a + kk + w), TOps.Load<TB>(b, kk + w), y);
        }
        if (kk + w <= k)
        {
            x = TOps.Fma(TOps.Load(a + kk), TOps.Load<TB>(b, kk), x);
            kk += w;
        }
        return Tail<TB>(a, b, kk, k, TOps.Sum(TOps.Add(x, y)));
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
