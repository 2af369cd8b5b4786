using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using RetNet.Ilgpu.Kernels;
using RetNet.Ilgpu.Kernels.Gemm;

namespace RetNet.Ilgpu.Attention;

internal static unsafe partial class HostAttention
{
    // Below this many multiply-adds (Σ_b n_b · H · (Dk + Dv)) a step stays on the calling thread: a few hundred
    // microseconds at most, where the serving loop keeps one core and leaves the other to HTTP. A batch-16 step of
    // the tiny preset at 128 cached positions does 262144.
    private const long StepParallelProducts = 1 << 19;

    [ThreadStatic] private static float[]? weights;

    /// <summary>
    /// The decode step (<see cref="AttentionKernels.StepRows"/>) over host buffers: q [B, 1, H, Dk], caches
    /// [B, H, capacity, ·], lengths [B], o [B, 1, H, Dv]; at most <paramref name="threads"/> threads, and only one
    /// below <see cref="StepParallelProducts"/>.
    /// </summary>
    /// <remarks>
    /// The kernel's semantics: n_b = lengths[b] clamped to [0, capacity], a zero output when n_b = 0, else
    /// o = Σ_{j&lt;n_b} exp(s_j − m) v_j / Σ_j exp(s_j − m) with s_j = scale·q·k_j and m = max(float.MinValue, max_j s_j).
    /// Unlike the kernel's online softmax, a (b, h) is done in two passes over its cache, all scores first (one dot
    /// product each, <see cref="HostDots"/>), then their maximum, the weights and their sum, then the weighted sum of
    /// the values, vectors across Dv; it agrees with the kernel to rounding, not bit for bit. Each (b, h) is one item
    /// whose sums run in an order fixed by n_b, Dk, Dv and the path alone, so neither the rest of the batch nor the
    /// thread count changes a bit of its output.
    /// </remarks>
    internal static void Step(float* q, float* keyCache, float* valueCache, int* lengths, float* output, int batch,
        in CacheProblem p, HostGemmPath path, int threads)
    {
        path = path == HostGemmPath.Auto ? HostGemm.Best : path;
        long positions = 0;
        for (var b = 0; b < batch; b++)
            positions += Math.Clamp(lengths[b], 0, p.Capacity);
        var items = batch * p.Heads;
        if (threads <= 1 || positions * p.Heads * (p.KeyDim + p.ValueDim) < StepParallelProducts)
        {
            // Inline, without the item delegate: a small step allocates nothing.
            for (var bh = 0; bh < items; bh++)
                StepItem(q, keyCache, valueCache, lengths, output, p, path, bh);
            return;
        }
        var (pq, pk, pv, pl, po, problem) = ((nint)q, (nint)keyCache, (nint)valueCache, (nint)lengths, (nint)output, p);
        HostSimd.For(items, threads,
            bh => StepItem((float*)pq, (float*)pk, (float*)pv, (int*)pl, (float*)po, problem, path, bh));
    }

    /// <summary>
    /// <see cref="AttentionKernels.AppendRows"/> over host buffers: x [B, T, H, D] into the cache [B, H, capacity, D]
    /// at positions lengths[b] + t, a row of D floats at a time; rows outside [0, capacity) are dropped. A copy, on
    /// the calling thread.
    /// </summary>
    internal static void Append(float* x, int* lengths, float* cache, int batch, in AppendProblem p)
    {
        var rowBytes = (long)p.Dim * sizeof(float);
        for (var b = 0; b < batch; b++)
        {
            var start = lengths[b];
            for (var t = 0; t < p.SeqLen; t++)
            {
                var position = start + t;
                if (position < 0 || position >= p.Capacity)
                    continue;
                for (var h = 0; h < p.Heads; h++)
                {
                    var source = x + ((nint)(b * p.SeqLen + t) * p.Heads + h) * p.Dim;
                    var target = cache + ((nint)(b * p.Heads + h) * p.Capacity + position) * p.Dim;
                    Buffer.MemoryCopy(source, target, rowBytes, rowBytes);
                }
            }
        }
    }

    /// <summary>One (b, h) = <paramref name="bh"/> of the step.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void StepItem(float* q, float* keyCache, float* valueCache, int* lengths, float* output,
        in CacheProblem p, HostGemmPath path, int bh)
    {
        var count = Math.Clamp(lengths[bh / p.Heads], 0, p.Capacity);
        var o = output + (nint)bh * p.ValueDim;
        if (count == 0)
        {
            new Span<float>(o, p.ValueDim).Clear();
            return;
        }
        var qRow = q + (nint)bh * p.KeyDim;
        var keys = keyCache + (nint)bh * p.Capacity * p.KeyDim;
        var values = valueCache + (nint)bh * p.Capacity * p.ValueDim;
        // Room for whole vectors past the last score, so the weights need no scalar tail.
        var w = HostGemm.Buffer(ref weights, (count + 15) / 16 * 16);
        switch (path)
        {
            case HostGemmPath.Vector512:
                Attend<Vector512<float>, Vector512Ops>(qRow, keys, values, count, p, w, o);
                break;
            case HostGemmPath.Vector256:
                Attend<Vector256<float>, Vector256Ops>(qRow, keys, values, count, p, w, o);
                break;
            default:
                AttendScalar(qRow, keys, values, count, p, w, o);
                break;
        }
    }

    /// <summary>
    /// One query against <paramref name="count"/> ≥ 1 cached keys and values: scores, then weights and their sum in
    /// vector lanes (lanes past the count zeroed), then o = Σ_j w_j v_j / Σ_j w_j across Dv, whole vectors with four
    /// accumulators over j mod 4, the last Dv mod width columns one at a time.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Attend<TV, TOps>(float* q, float* keys, float* values, int count, in CacheProblem p, float* w,
        float* o)
        where TV : struct
        where TOps : struct, IVectorOps<TV>
    {
        var width = TOps.Count;
        HostDots.Columns<TV, TOps, Float32Elements>(q, p.KeyDim, 1, (nint)keys, p.KeyDim, w, count, p.KeyDim, 0,
            count, p.Scale, 0f);
        var max = float.MinValue;
        for (var j = 0; j < count; j++)
            max = MathF.Max(max, w[j]);

        var shift = TOps.Broadcast(max);
        var sums = TOps.Zero;
        var full = count / width * width;
        for (var j = 0; j < full; j += width)
        {
            var e = TOps.Exp(TOps.Subtract(TOps.Load(w + j), shift));
            TOps.Store(e, w + j);
            sums = TOps.Add(sums, e);
        }
        if (full < count)
        {
            // The lanes past the count hold stale floats, possibly infinite: their exponentials are overwritten.
            TOps.Store(TOps.Exp(TOps.Subtract(TOps.Load(w + full), shift)), w + full);
            new Span<float>(w + count, full + width - count).Clear();
            sums = TOps.Add(sums, TOps.Load(w + full));
        }
        var inverse = 1f / TOps.Sum(sums);

        var dv = p.ValueDim;
        var e0 = 0;
        for (; e0 + width <= dv; e0 += width)
        {
            TV a0 = TOps.Zero, a1 = TOps.Zero, a2 = TOps.Zero, a3 = TOps.Zero;
            var v = values + e0;
            var j = 0;
            for (; j + 4 <= count; j += 4)
            {
                var row = v + (nint)j * dv;
                a0 = TOps.Fma(TOps.Broadcast(w[j]), TOps.Load(row), a0);
                a1 = TOps.Fma(TOps.Broadcast(w[j + 1]), TOps.Load(row + dv), a1);
                a2 = TOps.Fma(TOps.Broadcast(w[j + 2]), TOps.Load(row + 2 * dv), a2);
                a3 = TOps.Fma(TOps.Broadcast(w[j + 3]), TOps.Load(row + 3 * dv), a3);
            }
            for (; j < count; j++)
                a0 = TOps.Fma(TOps.Broadcast(w[j]), TOps.Load(v + (nint)j * dv), a0);
            var sum = TOps.Add(TOps.Add(a0, a1), TOps.Add(a2, a3));
            TOps.Store(TOps.Multiply(sum, TOps.Broadcast(inverse)), o + e0);
        }
        for (var e = e0; e < dv; e++)
            o[e] = WeightedColumn(values + e, dv, w, count) * inverse;
    }

    /// <summary><see cref="Attend{TV, TOps}"/> one float at a time, for processors without AVX2.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void AttendScalar(float* q, float* keys, float* values, int count, in CacheProblem p, float* w,
        float* o)
    {
        var max = float.MinValue;
        for (var j = 0; j < count; j++)
        {
            var key = keys + (nint)j * p.KeyDim;
            var dot = 0f;
            for (var d = 0; d < p.KeyDim; d++)
                dot = MathF.FusedMultiplyAdd(q[d], key[d], dot);
            w[j] = p.Scale * dot;
            max = MathF.Max(max, w[j]);
        }
        var sum = 0f;
        for (var j = 0; j < count; j++)
        {
            w[j] = MathF.Exp(w[j] - max);
            sum += w[j];
        }
        var inverse = 1f / sum;
        for (var e = 0; e < p.ValueDim; e++)
            o[e] = WeightedColumn(values + e, p.ValueDim, w, count) * inverse;
    }

    /// <summary>Σ_j w_j·column[j·stride], in j order.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float WeightedColumn(float* column, int stride, float* w, int count)
    {
        var sum = 0f;
        for (var j = 0; j < count; j++)
            sum = MathF.FusedMultiplyAdd(w[j], column[(nint)j * stride], sum);
        return sum;
    }
}
