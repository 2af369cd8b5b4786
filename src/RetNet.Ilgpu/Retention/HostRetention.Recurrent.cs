using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using ILGPU.Algorithms;
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
    internal static void Recurrent(float* q, float* k, float* v, float* decay, float* state, float* output, int batch,
        in RecurrentProblem p, HostGemmPath path, int threads)
    {
        var blocks = (p.ValueDim + Columns - 1) / Columns;
        var work = new RecurrentWork((nint)q, (nint)k, (nint)v, (nint)decay, (nint)state, (nint)output, p, blocks,
            path == HostGemmPath.Auto ? HostGemm.Best : path);
        var cells = (long)batch * p.Heads * p.SeqLen * p.KeyDim * p.ValueDim;
        For(batch * p.Heads * blocks, cells >= RecurrentParallelCells ? threads : 1, work.Item);
    }

    /// <summary>One call of the recurrent scan: pointers (as nint so the item delegate can carry them) and sizes.</summary>
    private sealed record RecurrentWork(nint Q, nint K, nint V, nint Decay, nint State, nint Output,
        RecurrentProblem P, int Blocks, HostGemmPath Path)
    {
        /// <summary>Columns e0 … e0+cols−1 of the state of one (b, h), through all T tokens.</summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void Item(int index)
        {
            var p = P;
            var block = index % Blocks;
            var bh = index / Blocks;
            var h = bh % p.Heads;
            var b = bh / p.Heads;
            var e0 = block * Columns;
            var cols = Math.Min(Columns, p.ValueDim - e0);
            var gamma = XMath.Exp(((float*)Decay)[h]);
            var s = (float*)State + (nint)bh * p.KeyDim * p.ValueDim + e0;
            for (var t = 0; t < p.SeqLen; t++)
            {
                var row = (nint)(b * p.SeqLen + t) * p.Heads + h;
                var q = (float*)Q + row * p.KeyDim;
                var k = (float*)K + row * p.KeyDim;
                var v = (float*)V + row * p.ValueDim + e0;
                var o = (float*)Output + row * p.ValueDim + e0;
                var e = 0;
                if (Path == HostGemmPath.Vector512)
                {
                    for (; e + 64 <= cols; e += 64)
                        Scan512x4(s + e, p.ValueDim, p.KeyDim, q, k, v + e, o + e, gamma);
                    for (; e + 16 <= cols; e += 16)
                        Scan512(s + e, p.ValueDim, p.KeyDim, q, k, v + e, o + e, gamma);
                }
                else if (Path == HostGemmPath.Vector256)
                {
                    for (; e + 32 <= cols; e += 32)
                        Scan256x4(s + e, p.ValueDim, p.KeyDim, q, k, v + e, o + e, gamma);
                    for (; e + 8 <= cols; e += 8)
                        Scan256(s + e, p.ValueDim, p.KeyDim, q, k, v + e, o + e, gamma);
                }
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

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Scan512x4(float* s, int ld, int dk, float* q, float* k, float* v, float* o, float gamma)
    {
        var g = Vector512.Create(gamma);
        var (v0, v1, v2, v3) = (Vector512.Load(v), Vector512.Load(v + 16), Vector512.Load(v + 32),
            Vector512.Load(v + 48));
        Vector512<float> o0 = default, o1 = default, o2 = default, o3 = default;
        for (var i = 0; i < dk; i++)
        {
            var cell = s + (nint)i * ld;
            var ki = Vector512.Create(k[i]);
            var qi = Vector512.Create(q[i]);
            var x0 = g * Vector512.Load(cell) + ki * v0;
            var x1 = g * Vector512.Load(cell + 16) + ki * v1;
            var x2 = g * Vector512.Load(cell + 32) + ki * v2;
            var x3 = g * Vector512.Load(cell + 48) + ki * v3;
            Vector512.Store(x0, cell);
            Vector512.Store(x1, cell + 16);
            Vector512.Store(x2, cell + 32);
            Vector512.Store(x3, cell + 48);
            o0 += qi * x0;
            o1 += qi * x1;
            o2 += qi * x2;
            o3 += qi * x3;
        }
        Vector512.Store(o0, o);
        Vector512.Store(o1, o + 16);
        Vector512.Store(o2, o + 32);
        Vector512.Store(o3, o + 48);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Scan512(float* s, int ld, int dk, float* q, float* k, float* v, float* o, float gamma)
    {
        var g = Vector512.Create(gamma);
        var v0 = Vector512.Load(v);
        var o0 = Vector512<float>.Zero;
        for (var i = 0; i < dk; i++)
        {
            var cell = s + (nint)i * ld;
            var x0 = g * Vector512.Load(cell) + Vector512.Create(k[i]) * v0;
            Vector512.Store(x0, cell);
            o0 += Vector512.Create(q[i]) * x0;
        }
        Vector512.Store(o0, o);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Scan256x4(float* s, int ld, int dk, float* q, float* k, float* v, float* o, float gamma)
    {
        var g = Vector256.Create(gamma);
        var (v0, v1, v2, v3) = (Vector256.Load(v), Vector256.Load(v + 8), Vector256.Load(v + 16),
            Vector256.Load(v + 24));
        Vector256<float> o0 = default, o1 = default, o2 = default, o3 = default;
        for (var i = 0; i < dk; i++)
        {
            var cell = s + (nint)i * ld;
            var ki = Vector256.Create(k[i]);
            var qi = Vector256.Create(q[i]);
            var x0 = g * Vector256.Load(cell) + ki * v0;
            var x1 = g * Vector256.Load(cell + 8) + ki * v1;
            var x2 = g * Vector256.Load(cell + 16) + ki * v2;
            var x3 = g * Vector256.Load(cell + 24) + ki * v3;
            Vector256.Store(x0, cell);
            Vector256.Store(x1, cell + 8);
            Vector256.Store(x2, cell + 16);
            Vector256.Store(x3, cell + 24);
            o0 += qi * x0;
            o1 += qi * x1;
            o2 += qi * x2;
            o3 += qi * x3;
        }
        Vector256.Store(o0, o);
        Vector256.Store(o1, o + 8);
        Vector256.Store(o2, o + 16);
        Vector256.Store(o3, o + 24);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Scan256(float* s, int ld, int dk, float* q, float* k, float* v, float* o, float gamma)
    {
        var g = Vector256.Create(gamma);
        var v0 = Vector256.Load(v);
        var o0 = Vector256<float>.Zero;
        for (var i = 0; i < dk; i++)
        {
            var cell = s + (nint)i * ld;
            var x0 = g * Vector256.Load(cell) + Vector256.Create(k[i]) * v0;
            Vector256.Store(x0, cell);
            o0 += Vector256.Create(q[i]) * x0;
        }
        Vector256.Store(o0, o);
    }
}
