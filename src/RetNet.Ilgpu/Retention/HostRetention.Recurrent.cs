using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using ILGPU.Algorithms;
using RetNet.Ilgpu.Kernels;
using RetNet.Ilgpu.Kernels.Gemm;

namespace RetNet.Ilgpu.Retention;

internal static unsafe partial class HostRetention
{
    // Below this many state cells touched (B·H·T·Dk·Dv) the scan stays on one thread: ~20 µs of work, a few
    // fork-joins. A decoding step of the small preset touches 16384.
    private const long RecurrentParallelCells = 1 << 19;

    /// <summary>
    /// The recurrent scan (<see cref="RetentionKernels.RecurrentScan"/>) over [B, T, H, ·] host buffers, advancing the
    /// state [B, H, Dk, Dv] in place; at most <paramref name="threads"/> threads.
    /// </summary>
    /// <remarks>
    /// The kernel walks one state column per thread; here one item walks a block of <see cref="Columns"/> columns of
    /// one (b, h) over the tokens, a row of the block at a time in vectors across the columns. Every element takes the
    /// kernel's own operations in the kernel's order, s ← γ·s + k_i·v_e then o_e ← o_e + q_i·s (separate multiplies
    /// and adds, no fused multiply-add; γ = exp(log γ) as the kernel forms it), so each path equals the kernel bit for
    /// bit, and so does every thread count: items own disjoint columns.
    /// </remarks>
    internal static void Recurrent(float* q, float* k, float* v, float* decay, float* state, float* output,
        int* bounds, int batch, in RecurrentProblem p, HostGemmPath path, int threads)
    {
        var blocks = (p.ValueDim + Columns - 1) / Columns;
        var work = new RecurrentWork((nint)q, (nint)k, (nint)v, (nint)decay, (nint)state, (nint)output, (nint)bounds, p,
            blocks, path == HostGemmPath.Auto ? HostGemm.Best : path);
        var cells = (long)batch * p.Heads * p.SeqLen * p.KeyDim * p.ValueDim;
        HostSimd.For(batch * p.Heads * blocks, cells >= RecurrentParallelCells ? threads : 1, work.Item);
    }

    /// <summary>One call of the recurrent scan: pointers (as nint so the item delegate can carry them) and sizes.</summary>
    private sealed record RecurrentWork(nint Q, nint K, nint V, nint Decay, nint State, nint Output, nint Bounds,
        RecurrentProblem P, int Blocks, HostGemmPath Path)
    {
        /// <summary>Columns e0 … e0+cols−1 of the state of one (b, h), through all T tokens.</summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void Item(int index)
        {
            var p = P;
            var (b, h, bh, e0, cols) = ColumnBlock.Of(index, Blocks, p.Heads, p.ValueDim);
            var gamma = XMath.Exp(((float*)Decay)[h]);
            var s = (float*)State + (nint)bh * p.KeyDim * p.ValueDim + e0;
            for (var t = 0; t < p.SeqLen; t++)
            {
                var row = (nint)(b * p.SeqLen + t) * p.Heads + h;
                var q = (float*)Q + row * p.KeyDim;
                var k = (float*)K + row * p.KeyDim;
                var v = (float*)V + row * p.ValueDim + e0;
                var o = (float*)Output + row * p.ValueDim + e0;
                // A packed document after the row's first starts from zeros (γ·0 + k·v is k·v exactly, as in the
                // kernel, which reads 0 in place of the state).
                if (p.HasBounds != 0 && t > 0 && ((int*)Bounds)[2 * (b * p.SeqLen + t)] == t)
                {
                    for (var i = 0; i < p.KeyDim; i++)
                        new Span<float>(s + (nint)i * p.ValueDim, cols).Clear();
                }
                var e = Path switch
                {
                    HostGemmPath.Vector512 => ScanVectors<Vector512<float>, Vector512Ops>(s, p.ValueDim, p.KeyDim, q, k,
                        v, o, gamma, cols),
                    HostGemmPath.Vector256 => ScanVectors<Vector256<float>, Vector256Ops>(s, p.ValueDim, p.KeyDim, q, k,
                        v, o, gamma, cols),
                    _ => 0,
                };
                for (; e < cols; e++)
                    ScanColumn(s + e, p.ValueDim, p.KeyDim, q, k, v[e], o + e, gamma);
            }
        }
    }

    // One token through state columns: the kernel's loop body, a state row i at a time. The expressions are written
    // as the kernel writes them (γ·s + k·v, then sum + q·s), which the JIT compiles to the same separate roundings.
    private static void ScanColumn(float* s, int ld, int dk, float* q, float* k, float value, float* o, float gamma)
    {
        var sum = 0f;
        for (var i = 0; i < dk; i++)
        {
            var cell = s + (nint)i * ld;
            var x = gamma * *cell + k[i] * value;
            *cell = x;
            sum += q[i] * x;
        }
        *o = sum;
    }

    /// <summary>One token through the whole vectors of the first <paramref name="cols"/> columns: four vectors at a
    /// time, then one; returns the columns done.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int ScanVectors<TV, TOps>(float* s, int ld, int dk, float* q, float* k, float* v, float* o,
        float gamma, int cols)
        where TV : struct
        where TOps : struct, IVectorOps<TV>
    {
        var w = TOps.Count;
        var e = 0;
        for (; e + 4 * w <= cols; e += 4 * w)
            Scan4<TV, TOps>(s + e, ld, dk, q, k, v + e, o + e, gamma);
        for (; e + w <= cols; e += w)
            Scan1<TV, TOps>(s + e, ld, dk, q, k, v + e, o + e, gamma);
        return e;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Scan4<TV, TOps>(float* s, int ld, int dk, float* q, float* k, float* v, float* o, float gamma)
        where TV : struct
        where TOps : struct, IVectorOps<TV>
    {
        var w = TOps.Count;
        var g = TOps.Broadcast(gamma);
        var (v0, v1, v2, v3) = (TOps.Load(v), TOps.Load(v + w), TOps.Load(v + 2 * w), TOps.Load(v + 3 * w));
        TV o0 = TOps.Zero, o1 = TOps.Zero, o2 = TOps.Zero, o3 = TOps.Zero;
        for (var i = 0; i < dk; i++)
        {
            var cell = s + (nint)i * ld;
            var ki = TOps.Broadcast(k[i]);
            var qi = TOps.Broadcast(q[i]);
            var x0 = TOps.Add(TOps.Multiply(g, TOps.Load(cell)), TOps.Multiply(ki, v0));
            var x1 = TOps.Add(TOps.Multiply(g, TOps.Load(cell + w)), TOps.Multiply(ki, v1));
            var x2 = TOps.Add(TOps.Multiply(g, TOps.Load(cell + 2 * w)), TOps.Multiply(ki, v2));
            var x3 = TOps.Add(TOps.Multiply(g, TOps.Load(cell + 3 * w)), TOps.Multiply(ki, v3));
            TOps.Store(x0, cell);
            TOps.Store(x1, cell + w);
            TOps.Store(x2, cell + 2 * w);
            TOps.Store(x3, cell + 3 * w);
            o0 = TOps.Add(o0, TOps.Multiply(qi, x0));
            o1 = TOps.Add(o1, TOps.Multiply(qi, x1));
            o2 = TOps.Add(o2, TOps.Multiply(qi, x2));
            o3 = TOps.Add(o3, TOps.Multiply(qi, x3));
        }
        TOps.Store(o0, o);
        TOps.Store(o1, o + w);
        TOps.Store(o2, o + 2 * w);
        TOps.Store(o3, o + 3 * w);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Scan1<TV, TOps>(float* s, int ld, int dk, float* q, float* k, float* v, float* o, float gamma)
        where TV : struct
        where TOps : struct, IVectorOps<TV>
    {
        var g = TOps.Broadcast(gamma);
        var v0 = TOps.Load(v);
        var o0 = TOps.Zero;
        for (var i = 0; i < dk; i++)
        {
            var cell = s + (nint)i * ld;
            var x0 = TOps.Add(TOps.Multiply(g, TOps.Load(cell)), TOps.Multiply(TOps.Broadcast(k[i]), v0));
            TOps.Store(x0, cell);
            o0 = TOps.Add(o0, TOps.Multiply(TOps.Broadcast(q[i]), x0));
        }
        TOps.Store(o0, o);
    }
}
