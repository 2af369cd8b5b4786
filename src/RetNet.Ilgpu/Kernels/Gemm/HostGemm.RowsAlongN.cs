using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace RetNet.Ilgpu.Kernels.Gemm;

/// <summary>
/// The unpacked product against a B whose rows run along N (stored [K, N]: a weight kept k-major for decoding), read in
/// place: rows of C in register blocks of eight (AVX-512, sixteen accumulators) or six (AVX2, twelve), then one of
/// four (eight accumulators), each B vector loaded once for the block's rows, and a row alone across four panels at
/// once (eight chains). Every element is one fused multiply-add chain over k = 0 … K−1 from 0, then alpha·sum
/// (+ beta·C): the packed path's sequence of operations, so the result is its bits whatever block or M a row falls
/// in. A decoding step's product against a k-major weight is therefore batch-invariant with no per-element horizontal
/// sum, which at k = 64 cost as much as the products in the dot-product form (<see cref="HostDots"/>).
/// </summary>
internal static unsafe partial class HostGemm
{
    private readonly partial record struct Problem
    {
        /// <summary>Whole column panels jr0 … jr1 of C for every row, B read in place.</summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private void RowsAlongN<TV, TOps, TB>(int jr0, int jr1)
            where TV : struct
            where TOps : struct, IVectorOps<TV>
            where TB : struct, IElements
        {
            var a = (float*)A;
            var c = (float*)C;
            var panel = (nint)NR * TB.Size;
            // Blocks of eight rows on AVX-512 (sixteen accumulators, two B vectors and a broadcast in its 32
            // registers), six on AVX2 (twelve: 15 of its 16); then one of four, then rows alone.
            var block = typeof(TV) == typeof(Vector512<float>) ? 8 : 6;
            var i = 0;
            for (; i + block <= M; i += block)
                for (var jr = jr0; jr < jr1; jr++)
                {
                    if (block == 8)
                        EightRows<TV, TOps, TB>(a + (nint)i * Sam, Sam, Sak, B + jr * panel, Sbk, K,
                            c + (nint)i * Ldc + jr * NR, Ldc, Alpha, Beta);
                    else
                        SixRows<TV, TOps, TB>(a + (nint)i * Sam, Sam, Sak, B + jr * panel, Sbk, K,
                            c + (nint)i * Ldc + jr * NR, Ldc, Alpha, Beta);
                }
            if (i + 4 <= M)
            {
                for (var jr = jr0; jr < jr1; jr++)
                    FourRows<TV, TOps, TB>(a + (nint)i * Sam, Sam, Sak, B + jr * panel, Sbk, K,
                        c + (nint)i * Ldc + jr * NR, Ldc, Alpha, Beta);
                i += 4;
            }
            for (; i < M; i++)
            {
                var row = a + (nint)i * Sam;
                var jr = jr0;
                for (; jr + 4 <= jr1; jr += 4)
                    OneRowFourPanels<TV, TOps, TB>(row, Sak, B + jr * panel, Sbk, K, c + (nint)i * Ldc + jr * NR,
                        Alpha, Beta);
                for (; jr < jr1; jr++)
                    Small<TV, TOps, TB>(K, row, Sak, B + jr * panel, Sbk, null, true, true,
                        c + (nint)i * Ldc + jr * NR, Alpha, Beta);
            }
        }
    }

    /// <summary>Rows a … a+7 (<paramref name="sam"/> apart) against one panel of two vectors: sixteen chains
    /// (AVX-512).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void EightRows<TV, TOps, TB>(float* a, int sam, int sak, nint b, int ldb, int k, float* c, int ldc,
        float alpha, float beta)
        where TV : struct
        where TOps : struct, IVectorOps<TV>
        where TB : struct, IElements
    {
        var w = TOps.Count;
        TV c00 = TOps.Zero, c01 = TOps.Zero, c10 = TOps.Zero, c11 = TOps.Zero, c20 = TOps.Zero, c21 = TOps.Zero;
        TV c30 = TOps.Zero, c31 = TOps.Zero, c40 = TOps.Zero, c41 = TOps.Zero, c50 = TOps.Zero, c51 = TOps.Zero;
        TV c60 = TOps.Zero, c61 = TOps.Zero, c70 = TOps.Zero, c71 = TOps.Zero;
        var s = (nint)sam;
        nint row = 0;
        for (var kk = 0; kk < k; kk++, a += sak, row += ldb)
        {
            var b0 = TOps.Load<TB>(b, row);
            var b1 = TOps.Load<TB>(b, row + w);
            var x = TOps.Broadcast(a[0]); c00 = TOps.Fma(x, b0, c00); c01 = TOps.Fma(x, b1, c01);
            x = TOps.Broadcast(a[s]); c10 = TOps.Fma(x, b0, c10); c11 = TOps.Fma(x, b1, c11);
            x = TOps.Broadcast(a[2 * s]); c20 = TOps.Fma(x, b0, c20); c21 = TOps.Fma(x, b1, c21);
            x = TOps.Broadcast(a[3 * s]); c30 = TOps.Fma(x, b0, c30); c31 = TOps.Fma(x, b1, c31);
            x = TOps.Broadcast(a[4 * s]); c40 = TOps.Fma(x, b0, c40); c41 = TOps.Fma(x, b1, c41);
            x = TOps.Broadcast(a[5 * s]); c50 = TOps.Fma(x, b0, c50); c51 = TOps.Fma(x, b1, c51);
            x = TOps.Broadcast(a[6 * s]); c60 = TOps.Fma(x, b0, c60); c61 = TOps.Fma(x, b1, c61);
            x = TOps.Broadcast(a[7 * s]); c70 = TOps.Fma(x, b0, c70); c71 = TOps.Fma(x, b1, c71);
        }
        Store<TV, TOps>(c, c, c00, c01, true, alpha, beta);
        Store<TV, TOps>(c + ldc, c + ldc, c10, c11, true, alpha, beta);
        Store<TV, TOps>(c + 2 * ldc, c + 2 * ldc, c20, c21, true, alpha, beta);
        Store<TV, TOps>(c + 3 * ldc, c + 3 * ldc, c30, c31, true, alpha, beta);
        Store<TV, TOps>(c + 4 * ldc, c + 4 * ldc, c40, c41, true, alpha, beta);
        Store<TV, TOps>(c + 5 * ldc, c + 5 * ldc, c50, c51, true, alpha, beta);
        Store<TV, TOps>(c + 6 * ldc, c + 6 * ldc, c60, c61, true, alpha, beta);
        Store<TV, TOps>(c + 7 * ldc, c + 7 * ldc, c70, c71, true, alpha, beta);
    }

    /// <summary>Rows a … a+5 (<paramref name="sam"/> apart) against one panel of two vectors: twelve chains (AVX2).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void SixRows<TV, TOps, TB>(float* a, int sam, int sak, nint b, int ldb, int k, float* c, int ldc,
        float alpha, float beta)
        where TV : struct
        where TOps : struct, IVectorOps<TV>
        where TB : struct, IElements
    {
        var w = TOps.Count;
        TV c00 = TOps.Zero, c01 = TOps.Zero, c10 = TOps.Zero, c11 = TOps.Zero, c20 = TOps.Zero, c21 = TOps.Zero;
        TV c30 = TOps.Zero, c31 = TOps.Zero, c40 = TOps.Zero, c41 = TOps.Zero, c50 = TOps.Zero, c51 = TOps.Zero;
        var s = (nint)sam;
        nint row = 0;
        for (var kk = 0; kk < k; kk++, a += sak, row += ldb)
        {
            var b0 = TOps.Load<TB>(b, row);
            var b1 = TOps.Load<TB>(b, row + w);
            var x = TOps.Broadcast(a[0]); c00 = TOps.Fma(x, b0, c00); c01 = TOps.Fma(x, b1, c01);
            x = TOps.Broadcast(a[s]); c10 = TOps.Fma(x, b0, c10); c11 = TOps.Fma(x, b1, c11);
            x = TOps.Broadcast(a[2 * s]); c20 = TOps.Fma(x, b0, c20); c21 = TOps.Fma(x, b1, c21);
            x = TOps.Broadcast(a[3 * s]); c30 = TOps.Fma(x, b0, c30); c31 = TOps.Fma(x, b1, c31);
            x = TOps.Broadcast(a[4 * s]); c40 = TOps.Fma(x, b0, c40); c41 = TOps.Fma(x, b1, c41);
            x = TOps.Broadcast(a[5 * s]); c50 = TOps.Fma(x, b0, c50); c51 = TOps.Fma(x, b1, c51);
        }
        Store<TV, TOps>(c, c, c00, c01, true, alpha, beta);
        Store<TV, TOps>(c + ldc, c + ldc, c10, c11, true, alpha, beta);
        Store<TV, TOps>(c + 2 * ldc, c + 2 * ldc, c20, c21, true, alpha, beta);
        Store<TV, TOps>(c + 3 * ldc, c + 3 * ldc, c30, c31, true, alpha, beta);
        Store<TV, TOps>(c + 4 * ldc, c + 4 * ldc, c40, c41, true, alpha, beta);
        Store<TV, TOps>(c + 5 * ldc, c + 5 * ldc, c50, c51, true, alpha, beta);
    }

    /// <summary>Rows a … a+3 against one panel of two vectors: eight chains, as many as cover the FMA latency.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void FourRows<TV, TOps, TB>(float* a, int sam, int sak, nint b, int ldb, int k, float* c, int ldc,
        float alpha, float beta)
        where TV : struct
        where TOps : struct, IVectorOps<TV>
        where TB : struct, IElements
    {
        var w = TOps.Count;
        TV c00 = TOps.Zero, c01 = TOps.Zero, c10 = TOps.Zero, c11 = TOps.Zero;
        TV c20 = TOps.Zero, c21 = TOps.Zero, c30 = TOps.Zero, c31 = TOps.Zero;
        var s = (nint)sam;
        nint row = 0;
        for (var kk = 0; kk < k; kk++, a += sak, row += ldb)
        {
            var b0 = TOps.Load<TB>(b, row);
            var b1 = TOps.Load<TB>(b, row + w);
            var x = TOps.Broadcast(a[0]); c00 = TOps.Fma(x, b0, c00); c01 = TOps.Fma(x, b1, c01);
            x = TOps.Broadcast(a[s]); c10 = TOps.Fma(x, b0, c10); c11 = TOps.Fma(x, b1, c11);
            x = TOps.Broadcast(a[2 * s]); c20 = TOps.Fma(x, b0, c20); c21 = TOps.Fma(x, b1, c21);
            x = TOps.Broadcast(a[3 * s]); c30 = TOps.Fma(x, b0, c30); c31 = TOps.Fma(x, b1, c31);
        }
        Store<TV, TOps>(c, c, c00, c01, true, alpha, beta);
        Store<TV, TOps>(c + ldc, c + ldc, c10, c11, true, alpha, beta);
        Store<TV, TOps>(c + 2 * ldc, c + 2 * ldc, c20, c21, true, alpha, beta);
        Store<TV, TOps>(c + 3 * ldc, c + 3 * ldc, c30, c31, true, alpha, beta);
    }

    /// <summary>One row against four consecutive panels (eight vectors): eight chains for a row alone.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void OneRowFourPanels<TV, TOps, TB>(float* a, int sak, nint b, int ldb, int k, float* c,
        float alpha, float beta)
        where TV : struct
        where TOps : struct, IVectorOps<TV>
        where TB : struct, IElements
    {
        var w = TOps.Count;
        TV c0 = TOps.Zero, c1 = TOps.Zero, c2 = TOps.Zero, c3 = TOps.Zero;
        TV c4 = TOps.Zero, c5 = TOps.Zero, c6 = TOps.Zero, c7 = TOps.Zero;
        nint row = 0;
        for (var kk = 0; kk < k; kk++, a += sak, row += ldb)
        {
            var x = TOps.Broadcast(a[0]);
            c0 = TOps.Fma(x, TOps.Load<TB>(b, row), c0);
            c1 = TOps.Fma(x, TOps.Load<TB>(b, row + w), c1);
            c2 = TOps.Fma(x, TOps.Load<TB>(b, row + 2 * w), c2);
            c3 = TOps.Fma(x, TOps.Load<TB>(b, row + 3 * w), c3);
            c4 = TOps.Fma(x, TOps.Load<TB>(b, row + 4 * w), c4);
            c5 = TOps.Fma(x, TOps.Load<TB>(b, row + 5 * w), c5);
            c6 = TOps.Fma(x, TOps.Load<TB>(b, row + 6 * w), c6);
            c7 = TOps.Fma(x, TOps.Load<TB>(b, row + 7 * w), c7);
        }
        Store<TV, TOps>(c, c, c0, c1, true, alpha, beta);
        Store<TV, TOps>(c + 2 * w, c + 2 * w, c2, c3, true, alpha, beta);
        Store<TV, TOps>(c + 4 * w, c + 4 * w, c4, c5, true, alpha, beta);
        Store<TV, TOps>(c + 6 * w, c + 6 * w, c6, c7, true, alpha, beta);
    }
}
