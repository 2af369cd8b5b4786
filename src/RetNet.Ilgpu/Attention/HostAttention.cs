using System.Numerics;
using System.Runtime.CompilerServices;
using RetNet.Ilgpu.Kernels;
using RetNet.Ilgpu.Kernels.Gemm;
using RetNet.Ilgpu.Tensors;

namespace RetNet.Ilgpu.Attention;

/// <summary>
/// The attention operator's <see cref="Devices.OperatorBackend.Host"/> implementation: <see cref="HostAttention"/> on
/// the accelerator's host buffers, as <paramref name="simd"/> says. Refuses a device that does not run on the host:
/// off the CPU accelerator the buffers are device memory, and its simulator execution is asked to run the kernels
/// themselves.
/// </summary>
internal sealed unsafe class HostAttentionLaunch(HostSimd simd) : AttentionLaunch
{
    private const string What = "Host SIMD attention";

    public override string Name => simd.ToString();

    public override void Forward(in AttentionOperands o)
    {
        HostSimd.Enter(o.Q.Device, What, requireHostExecution: true);
        HostAttention.Forward(HostSimd.Pointer(o.Q), HostSimd.Pointer(o.K), HostSimd.Pointer(o.V),
            HostSimd.Pointer(o.Output), HostSimd.Pointer(o.LogSumExp), o.Q.Dim(0),
            Problem(o.Q, o.V, o.Scale, o.LogSumExp), simd.Path, simd.Threads);
    }

    public override void Gradients(in AttentionGradientOperands o)
    {
        HostSimd.Enter(o.Q.Device, What, requireHostExecution: true);
        HostAttention.Gradients(HostSimd.Pointer(o.Q), HostSimd.Pointer(o.K), HostSimd.Pointer(o.V),
            HostSimd.Pointer(o.DOutput), HostSimd.Pointer(o.LogSumExp), HostSimd.Pointer(o.Deltas),
            HostSimd.Pointer(o.Dq), HostSimd.Pointer(o.Dk), HostSimd.Pointer(o.Dv), o.Q.Dim(0),
            Problem(o.Q, o.V, o.Scale, o.LogSumExp), simd.Path, simd.Threads);
    }

    public override void Step(in StepOperands o)
    {
        HostSimd.Enter(o.Q.Device, What, requireHostExecution: true);
        HostAttention.Step(HostSimd.Pointer(o.Q), HostSimd.Pointer(o.KeyCache), HostSimd.Pointer(o.ValueCache),
            HostSimd.Pointer(o.Lengths), HostSimd.Pointer(o.Output), o.Q.Dim(0),
            new CacheProblem(o.Q.Dim(2), o.KeyCache.Dim(2), o.Q.Dim(3), o.ValueCache.Dim(3), o.Scale), simd.Path,
            simd.Threads);
    }

    public override void Append(Tensor x, Tensor cache, IndexTensor lengths)
    {
        HostSimd.Enter(x.Device, What, requireHostExecution: true);
        HostAttention.Append(HostSimd.Pointer(x), HostSimd.Pointer(lengths), HostSimd.Pointer(cache), x.Dim(0),
            new AppendProblem(x.Dim(1), x.Dim(2), x.Dim(3), cache.Dim(2)));
    }
}

/// <summary>
/// Causal attention's forward pass and gradients (<see cref="AttentionProblem"/>) as host code over host memory, for
/// ILGPU's CPU accelerator in host execution: the blocked algorithm of the tiled kernels (docs/ATTENTION.md §2, §3),
/// with every block product (Q·Kᵀ, P·V, dO·Vᵀ, dS·K, Pᵀ·dO, dSᵀ·Q) formed by <see cref="HostGemm.MultiplyStrided"/> so
/// it runs on the processor's vector units (AVX-512, AVX2 or scalar fused multiply-adds); and the KV cache's append
/// and decode step (HostAttention.Step.cs).
/// </summary>
/// <remarks>
/// Determinism: work is split into fixed items, (b, h, block of 96 query rows) for the forward pass and dq and
/// (b, h, block of 96 key rows) for dk and dv; each output element is summed inside one item, over the key (or query)
/// blocks in ascending order, so neither the thread count nor the scheduling changes a bit. Exponentials go through
/// one vector function whatever the GEMM path, and every GEMM path takes the same fused multiply-adds, so the forced
/// instruction set does not change a bit either.
/// </remarks>
internal static unsafe partial class HostAttention
{
    /// <summary>
    /// Rows per item and per block. A multiple of the micro-kernel's 6 rows and of its 8, 16 and 32 columns, so the
    /// products of whole blocks have no edge tiles; large enough that packing the operands of a product costs little
    /// beside it when heads are narrow (Dk = 32 leaves each logit a K loop of 32), small enough that a 96 × 96 logit
    /// block (36 KiB) stays in L2 beside them.
    /// </summary>
    internal const int Rows = 96;

    [ThreadStatic] private static float[]? scores;
    [ThreadStatic] private static float[]? products;
    [ThreadStatic] private static float[]? maxima;
    [ThreadStatic] private static float[]? sums;

    /// <summary>
    /// o and, when <c>p.WriteLogSumExp</c> is 1, L over [B, T, H, ·] and [B, H, T] host buffers; at most
    /// <paramref name="threads"/> threads.
    /// </summary>
    internal static void Forward(float* q, float* k, float* v, float* output, float* logSumExp, int batch,
        in AttentionProblem p, HostGemmPath path, int threads)
    {
        var blocks = (p.SeqLen + Rows - 1) / Rows;
        var work = new Work((nint)q, (nint)k, (nint)v, (nint)output, (nint)logSumExp, 0, 0, 0, 0, 0, p, blocks, path);
        HostSimd.For(batch * p.Heads * blocks, threads, work.Forward);
    }

    /// <summary>
    /// dq, dk and dv over [B, T, H, ·] host buffers from the forward inputs, dO, L and D (overwritten, not
    /// accumulated); at most <paramref name="threads"/> threads.
    /// </summary>
    internal static void Gradients(float* q, float* k, float* v, float* dOutput, float* logSumExp, float* deltas,
        float* dq, float* dk, float* dv, int batch, in AttentionProblem p, HostGemmPath path, int threads)
    {
        var blocks = (p.SeqLen + Rows - 1) / Rows;
        var items = batch * p.Heads * blocks;
        var work = new Work((nint)q, (nint)k, (nint)v, (nint)dOutput, (nint)logSumExp, (nint)deltas, (nint)dq,
            (nint)dk, (nint)dv, items, p, blocks, path);
        // dk, dv items first: they are the longer ones (a key block meets every later query block).
        HostSimd.For(2 * items, threads, work.Gradient);
    }

    /// <summary>
    /// One call: pointers (as nint so the item delegates can carry them) and sizes. In the forward pass
    /// <see cref="Out"/> is o; in the gradients it is dO, and the gradients follow.
    /// </summary>
    private sealed record Work(nint Q, nint K, nint V, nint Out, nint LogSumExp, nint Deltas, nint Dq, nint Dk,
        nint Dv, int KeyItems, AttentionProblem P, int Blocks, HostGemmPath Path)
    {
        /// <summary>
        /// Query rows r0 … r0+rows−1 of one (b, h): for each key block up to the diagonal, S = Q·Kᵀ, the online
        /// softmax of s·S per row (running maximum and sum, the accumulated output rescaled when the maximum grows),
        /// O += P·V; then o = O / ℓ and L = m + log ℓ. The longest rows come first.
        /// </summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void Forward(int index)
        {
            var p = P;
            var (bh, r0, rows) = QueryBlock(index);
            var (qRows, vRows) = (p.Heads * p.KeyDim, p.Heads * p.ValueDim);
            var q = Row(Q, bh, r0, p.KeyDim);
            var output = Row(Out, bh, r0, p.ValueDim);
            var s = HostGemm.Buffer(ref scores, Rows * Rows);
            var max = HostGemm.Buffer(ref maxima, Rows);
            var sum = HostGemm.Buffer(ref sums, Rows);
            for (var i = 0; i < rows; i++)
            {
                // The lowest finite value, not −∞: the first rescale is then exp(−huge) = 0 without an ∞ − ∞.
                max[i] = float.MinValue;
                sum[i] = 0f;
            }

            for (var k0 = 0; k0 <= r0; k0 += Rows)
            {
                // Blocks are aligned, so only the diagonal one (k0 = r0) is cut short or masked.
                var keys = Math.Min(Rows, r0 + rows - k0);
                HostGemm.MultiplyStrided(q, qRows, false, Row(K, bh, k0, p.KeyDim), qRows, true, s, Rows, rows, keys,
                    p.KeyDim, accumulate: false, Path);
                for (var i = 0; i < rows; i++)
                {
                    var scoreRow = s + i * Rows;
                    var visible = Math.Min(keys, r0 + i - k0 + 1);
                    var oldMax = max[i];
                    var newMax = MathF.Max(oldMax, MaxLogit(scoreRow, visible, p.Scale));
                    var rowSum = Exponentials(scoreRow, visible, keys, p.Scale, newMax);
                    var alpha = MathF.Exp(oldMax - newMax);
                    sum[i] = sum[i] * alpha + rowSum;
                    max[i] = newMax;
                    if (k0 > 0 && alpha != 1f)
                    {
                        var outRow = output + (nint)i * vRows;
                        for (var e = 0; e < p.ValueDim; e++)
                            outRow[e] *= alpha;
                    }
                }
                HostGemm.MultiplyStrided(s, Rows, false, Row(V, bh, k0, p.ValueDim), vRows, false, output, vRows, rows,
                    p.ValueDim, keys, accumulate: k0 > 0, Path);
            }

            for (var i = 0; i < rows; i++)
            {
                var outRow = output + (nint)i * vRows;
                for (var e = 0; e < p.ValueDim; e++)
                    outRow[e] /= sum[i];
            }
            if (p.WriteLogSumExp != 0)
            {
                var logSumExp = (float*)LogSumExp + (nint)bh * p.SeqLen + r0;
                for (var i = 0; i < rows; i++)
                    logSumExp[i] = max[i] + MathF.Log(sum[i]);
            }
        }

        /// <summary>Items 0 … KeyItems−1 are key blocks (dk, dv), the rest query blocks (dq).</summary>
        public void Gradient(int index)
        {
            if (index < KeyItems)
                KeyGradients(index);
            else
                QueryGradients(index - KeyItems);
        }

        /// <summary>
        /// dq for query rows r0 … r0+rows−1 of one (b, h): for each key block up to the diagonal, P = exp(s·Q·Kᵀ − L),
        /// dP = dO·Vᵀ, dS = s·P ⊙ (dP − D), dq += dS·K. The longest rows come first.
        /// </summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private void QueryGradients(int index)
        {
            var p = P;
            var (bh, r0, rows) = QueryBlock(index);
            var qRows = p.Heads * p.KeyDim;
            var s = HostGemm.Buffer(ref scores, Rows * Rows);
            var dp = HostGemm.Buffer(ref products, Rows * Rows);
            var dq = Row(Dq, bh, r0, p.KeyDim);
            for (var k0 = 0; k0 <= r0; k0 += Rows)
            {
                var keys = Math.Min(Rows, r0 + rows - k0);
                var k = Row(K, bh, k0, p.KeyDim);
                ScoreGradients(bh, r0, rows, k0, keys, s, dp);
                HostGemm.MultiplyStrided(dp, Rows, false, k, qRows, false, dq, qRows, rows, p.KeyDim, keys,
                    accumulate: k0 > 0, Path);
            }
        }

        /// <summary>
        /// dk and dv for key rows j0 … j0+keys−1 of one (b, h): for each query block from the diagonal on, P and dS as
        /// in <see cref="QueryGradients"/>, dv += Pᵀ·dO, dk += dSᵀ·Q. The longest (first) key blocks come first.
        /// </summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private void KeyGradients(int index)
        {
            var p = P;
            var block = index % Blocks;
            var bh = index / Blocks;
            var j0 = block * Rows;
            var keys = Math.Min(Rows, p.SeqLen - j0);
            var (qRows, vRows) = (p.Heads * p.KeyDim, p.Heads * p.ValueDim);
            var s = HostGemm.Buffer(ref scores, Rows * Rows);
            var dp = HostGemm.Buffer(ref products, Rows * Rows);
            var dk = Row(Dk, bh, j0, p.KeyDim);
            var dv = Row(Dv, bh, j0, p.ValueDim);
            for (var r0 = j0; r0 < p.SeqLen; r0 += Rows)
            {
                var rows = Math.Min(Rows, p.SeqLen - r0);
                ScoreGradients(bh, r0, rows, j0, keys, s, dp);
                // Pᵀ and dSᵀ are the stored [rows, Rows] blocks read transposed.
                HostGemm.MultiplyStrided(s, Rows, true, Row(Out, bh, r0, p.ValueDim), vRows, false, dv, vRows, keys,
                    p.ValueDim, rows, accumulate: r0 > j0, Path);
                HostGemm.MultiplyStrided(dp, Rows, true, Row(Q, bh, r0, p.KeyDim), qRows, false, dk, qRows, keys,
                    p.KeyDim, rows, accumulate: r0 > j0, Path);
            }
        }

        /// <summary>
        /// For query rows r0 … r0+rows−1 against keys k0 … k0+keys−1 of one (b, h): P = exp(s·Q·Kᵀ − L) into
        /// <paramref name="s"/> and s·P ⊙ (dO·Vᵀ − D) into <paramref name="dp"/>, both [rows, Rows], zero where the
        /// key is in the query's future.
        /// </summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private void ScoreGradients(int bh, int r0, int rows, int k0, int keys, float* s, float* dp)
        {
            var p = P;
            var (qRows, vRows) = (p.Heads * p.KeyDim, p.Heads * p.ValueDim);
            HostGemm.MultiplyStrided(Row(Q, bh, r0, p.KeyDim), qRows, false, Row(K, bh, k0, p.KeyDim), qRows, true, s,
                Rows, rows, keys, p.KeyDim, accumulate: false, Path);
            HostGemm.MultiplyStrided(Row(Out, bh, r0, p.ValueDim), vRows, false, Row(V, bh, k0, p.ValueDim), vRows,
                true, dp, Rows, rows, keys, p.ValueDim, accumulate: false, Path);
            var logSumExp = (float*)LogSumExp + (nint)bh * p.SeqLen + r0;
            var deltas = (float*)Deltas + (nint)bh * p.SeqLen + r0;
            for (var i = 0; i < rows; i++)
            {
                var scoreRow = s + i * Rows;
                var productRow = dp + i * Rows;
                var visible = Math.Clamp(r0 + i - k0 + 1, 0, keys);
                Exponentials(scoreRow, visible, keys, p.Scale, logSumExp[i]);
                // Whole vectors up to the block's width: lanes past the keys compute garbage nobody reads.
                var vScale = new Vector<float>(p.Scale);
                var delta = new Vector<float>(deltas[i]);
                for (var j = 0; j < keys; j += Vector<float>.Count)
                {
                    var dS = Vector.Load(scoreRow + j) * (Vector.Load(productRow + j) - delta);
                    Vector.Store(vScale * dS, productRow + j);
                }
            }
        }

        /// <summary>The query block of item <paramref name="index"/>: b·H + h, its first row and its rows. The last
        /// blocks, whose rows see the most keys, come first.</summary>
        private (int Bh, int R0, int Rows) QueryBlock(int index)
        {
            var r0 = (Blocks - 1 - index % Blocks) * Rows;
            return (index / Blocks, r0, Math.Min(Rows, P.SeqLen - r0));
        }

        /// <summary>Row r0 of head bh = b·H + h in a [B, T, H, dim] buffer; the next rows follow H·dim apart.</summary>
        private float* Row(nint buffer, int bh, int r0, int dim)
        {
            var b = bh / P.Heads;
            var h = bh - b * P.Heads;
            return (float*)buffer + ((nint)(b * P.SeqLen + r0) * P.Heads + h) * dim;
        }
    }

    /// <summary>The largest of scale·row[j] over j &lt; <paramref name="visible"/> (≥ 1), a vector at a time.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static float MaxLogit(float* row, int visible, float scale)
    {
        // A maximum does not depend on the order it is taken in: the vector lanes give the bits of a scalar loop.
        var width = Vector<float>.Count;
        var vScale = new Vector<float>(scale);
        var vMax = new Vector<float>(float.MinValue);
        var j = 0;
        for (; j + width <= visible; j += width)
            vMax = Vector.Max(vMax, Vector.Load(row + j) * vScale);
        var max = float.MinValue;
        for (var lane = 0; lane < width; lane++)
            max = MathF.Max(max, vMax[lane]);
        for (; j < visible; j++)
            max = MathF.Max(max, scale * row[j]);
        return max;
    }

    /// <summary>
    /// row[j] = exp(scale·row[j] − shift) for j &lt; <paramref name="visible"/> and 0 for the masked rest up to
    /// <paramref name="keys"/>; returns their sum, in vector lanes then across them, an order fixed by the vector width
    /// alone. The row is a whole block of <see cref="Rows"/> floats, a multiple of any vector width, so the loops need
    /// no tail: lanes past the visible keys are computed and then zeroed.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static float Exponentials(float* row, int visible, int keys, float scale, float shift)
    {
        var width = Vector<float>.Count;
        var vScale = new Vector<float>(scale);
        var vShift = new Vector<float>(shift);
        var end = (visible + width - 1) / width * width;
        for (var j = 0; j < end; j += width)
            Vector.Store(Vector.Exp(Vector.Load(row + j) * vScale - vShift), row + j);
        for (var j = visible; j < Math.Max(end, keys); j++)
            row[j] = 0f;
        var sum = Vector<float>.Zero;
        for (var j = 0; j < end; j += width)
            sum += Vector.Load(row + j);
        return Vector.Sum(sum);
    }
}
