using System.Buffers;
using System.Runtime.CompilerServices;
using RetNet.Ilgpu.Kernels;
using RetNet.Ilgpu.Kernels.Gemm;

namespace RetNet.Ilgpu.Retention;

/// <summary>The retention operator's <see cref="Devices.OperatorBackend.Host"/> implementation:
/// <see cref="HostRetention"/> on the CPU accelerator's host buffers (in host or simulator execution), as
/// <paramref name="simd"/> says.</summary>
internal sealed unsafe class HostRetentionLaunch(HostSimd simd) : RetentionLaunch
{
    private const string What = "Host SIMD retention";

    public override string Name => simd.ToString();

    public override void Causal(in CausalOperands o)
    {
        HostSimd.Enter(o.Rows.Device, What);
        HostRetention.Causal(HostSimd.Pointer(o.Rows), HostSimd.Pointer(o.Keys), HostSimd.Pointer(o.Values),
            HostSimd.Pointer(o.State), HostSimd.Pointer(o.Decay), HostSimd.Pointer(o.Output), Bounds(o.Bounds),
            o.Rows.Dim(0), Problem(o, out _), simd.Path, simd.Threads);
    }

    public override void States(in StateOperands o)
    {
        HostSimd.Enter(o.X.Device, What);
        HostRetention.States(HostSimd.Pointer(o.X), HostSimd.Pointer(o.Y), HostSimd.Pointer(o.Initial),
            HostSimd.Pointer(o.Decay), HostSimd.Pointer(o.ChunkStates), HostSimd.Pointer(o.Final), Bounds(o.Bounds),
            o.X.Dim(0), Problem(o), simd.Path, simd.Threads);
    }

    public override void Recurrent(in RecurrentOperands o)
    {
        HostSimd.Enter(o.Q.Device, What);
        HostRetention.Recurrent(HostSimd.Pointer(o.Q), HostSimd.Pointer(o.K), HostSimd.Pointer(o.V),
            HostSimd.Pointer(o.Decay), HostSimd.Pointer(o.State), HostSimd.Pointer(o.Output), Bounds(o.Bounds),
            o.Q.Dim(0), Problem(o), simd.Path, simd.Threads);
    }

    /// <summary>The token bounds' host address, or null without packed documents (the problem's HasBounds is
    /// 0).</summary>
    private static int* Bounds(Tensors.IndexTensor? bounds) => bounds is null ? null : HostSimd.Pointer(bounds);
}

/// <summary>
/// The decayed causal product and the chunk-state walk (<see cref="CausalProblem"/>, <see cref="StateProblem"/>) as
/// host code over host memory, for ILGPU's CPU accelerator in host execution: the same sums as the barrier-free
/// kernels, formed as small matrix products by <see cref="HostGemm.MultiplyStrided"/> so they run on the processor's
/// vector units (AVX-512, AVX2 or scalar fused multiply-adds).
/// </summary>
/// <remarks>
/// Every decay is <see cref="RetentionKernels.Decay"/> itself, evaluated once per exponent into a table, so the host
/// path multiplies by the very values the kernels use. Determinism: work is split into fixed items, (b, h, chunk,
/// block of rows) for the product and (b, h, block of state columns) for the walk; each output element is summed
/// inside one item in a fixed order, so neither the thread count nor the instruction-set path
/// changes a bit.
/// </remarks>
internal static unsafe partial class HostRetention
{
    /// <summary>Query rows per item and keys per score block: a 64 × 64 score block is 16 KiB and stays in L1.</summary>
    internal const int Rows = 64;

    /// <summary>State columns per item of the walk.</summary>
    internal const int Columns = 64;

    /// <summary>Tokens of a chunk weighted and multiplied at once by the walk (one K-block of the GEMM).</summary>
    internal const int Tokens = HostGemm.KC;

    /// <summary>Below this many multiply-adds (~20 µs on one core) a chunkwise launch stays on the calling thread: a
    /// fork-join would cost more than it saves (a short prompt's prefill; items own disjoint outputs, so the thread
    /// count never changes a bit).</summary>
    private const long ParallelProducts = 1 << 19;

    [ThreadStatic] private static float[]? scores;
    [ThreadStatic] private static float[]? weighted;
    [ThreadStatic] private static float[]? running;

    /// <summary>
    /// The decayed causal product over [B, T, H, ·] host buffers (state optional when <c>p.HasState</c> is 0); at most
    /// <paramref name="threads"/> threads.
    /// </summary>
    internal static void Causal(float* x, float* y, float* z, float* state, float* decay, float* output, int* bounds,
        int batch, in CausalProblem p, HostGemmPath path, int threads)
    {
        var powers = Powers(decay, p.Heads, p.ChunkSize);
        try
        {
            var blocks = (p.ChunkSize + Rows - 1) / Rows;
            var work = new CausalWork((nint)x, (nint)y, (nint)z, (nint)state, (nint)output, (nint)bounds, powers, p,
                blocks, path);
            // Scores and weighted values within each chunk, and each row against the state.
            var products = (long)batch * p.Heads * p.SeqLen *
                           ((long)p.ChunkSize * (p.RowDim + p.OutDim) + (long)p.RowDim * p.OutDim);
            HostSimd.For(batch * p.Heads * p.ChunkCount * blocks, products >= ParallelProducts ? threads : 1,
                work.Item);
        }
        finally
        {
            ArrayPool<float>.Shared.Return(powers);
        }
    }

    /// <summary>
    /// The chunk-state walk over [B, T, H, ·] host buffers; absent matrices (flags 0) are never touched, and
    /// <paramref name="final"/> may be <paramref name="initial"/>. At most <paramref name="threads"/> threads.
    /// </summary>
    internal static void States(float* x, float* y, float* initial, float* decay, float* chunkStates, float* final,
        int* bounds, int batch, in StateProblem p, HostGemmPath path, int threads)
    {
        if (p.WriteChunkStates == 0 && p.WriteFinal == 0)
            return;
        var powers = Powers(decay, p.Heads, p.ChunkSize);
        try
        {
            var blocks = (p.ColDim + Columns - 1) / Columns;
            var work = new StateWork((nint)x, (nint)y, (nint)initial, (nint)chunkStates, (nint)final, (nint)bounds,
                powers, p, blocks, path);
            var products = (long)batch * p.Heads * p.SeqLen * p.RowDim * p.ColDim;
            HostSimd.For(batch * p.Heads * blocks, products >= ParallelProducts ? threads : 1, work.Item);
        }
        finally
        {
            ArrayPool<float>.Shared.Return(powers);
        }
    }

    /// <summary>γ_h^m = <see cref="RetentionKernels.Decay"/>(log γ_h, m) for m = 0 … C, at [h·(C + 1) + m].</summary>
    private static float[] Powers(float* decay, int heads, int chunkSize)
    {
        var powers = ArrayPool<float>.Shared.Rent(heads * (chunkSize + 1));
        for (var h = 0; h < heads; h++)
        {
            for (var m = 0; m <= chunkSize; m++)
                powers[h * (chunkSize + 1) + m] = RetentionKernels.Decay(decay[h], m);
        }
        return powers;
    }

    /// <summary>The start (forward) or end (reverse) of the document of <paramref name="token"/> = b·T + t, within its
    /// row (<see cref="RetentionKernels.DocumentStart"/>, <see cref="RetentionKernels.DocumentEnd"/>).</summary>
    private static int DocumentBound(int* bounds, int hasBounds, bool reverse, int token, int seqLen) =>
        hasBounds == 0 ? (reverse ? seqLen : 0) : bounds[2 * token + (reverse ? 1 : 0)];

    /// <summary>An item of a walk over state columns: sequence b, head h, b·H + h, and the block of columns
    /// e0 … e0 + cols − 1 (at most <see cref="Columns"/>) it owns.</summary>
    private readonly record struct ColumnBlock(int B, int H, int Bh, int E0, int Cols)
    {
        /// <summary>Item <paramref name="index"/> of B·H·<paramref name="blocks"/> over <paramref name="dim"/>
        /// columns per head.</summary>
        public static ColumnBlock Of(int index, int blocks, int heads, int dim)
        {
            var bh = index / blocks;
            var e0 = index % blocks * Columns;
            return new(bh / heads, bh % heads, bh, e0, Math.Min(Columns, dim - e0));
        }
    }

    /// <summary>One call of the causal product: pointers (as nint so the item delegate can carry them) and sizes.</summary>
    private sealed record CausalWork(nint X, nint Y, nint Z, nint State, nint Output, nint Bounds, float[] Powers,
        CausalProblem P, int Blocks, HostGemmPath Path)
    {
        /// <summary>
        /// Rows r0 … r1−1 of one chunk of one (b, h): out = diag(γ^e)·(X S) + Σ over key blocks (M ⊙ X Yᵀ)·Z, each
        /// score multiplied by its decay and masked by index, like <see cref="RetentionKernels.CausalRows"/>.
        /// </summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void Item(int index)
        {
            var p = P;
            var block = index % Blocks;
            var chunk = index / Blocks % p.ChunkCount;
            var bh = index / (Blocks * p.ChunkCount);
            var h = bh % p.Heads;
            var b = bh / p.Heads;
            var chunkStart = chunk * p.ChunkSize;
            var chunkEnd = Math.Min(chunkStart + p.ChunkSize, p.SeqLen);
            var r0 = chunkStart + block * Rows;
            if (r0 >= chunkEnd)
                return;
            var r1 = Math.Min(r0 + Rows, chunkEnd);
            var rows = r1 - r0;
            var reverse = p.Reverse != 0;
            var powers = Powers.AsSpan(h * (p.ChunkSize + 1), p.ChunkSize + 1);
            var xRows = p.Heads * p.RowDim;
            var outRows = p.Heads * p.OutDim;
            var x = (float*)X + ((nint)(b * p.SeqLen + r0) * p.Heads + h) * p.RowDim;
            var output = (float*)Output + ((nint)(b * p.SeqLen + r0) * p.Heads + h) * p.OutDim;
            // Each row's document bound: its start (forward) or end (reverse), as the kernels read it.
            var firstToken = b * p.SeqLen + r0;
            var bounds = (int*)Bounds;

            var accumulate = false;
            if (p.HasState != 0)
            {
                var state = (float*)State + (nint)(bh * p.ChunkCount + chunk) * p.RowDim * p.OutDim;
                var transposed = p.StateColStride != 1;
                HostGemm.MultiplyStrided(x, xRows, false, state, transposed ? p.RowDim : p.OutDim, transposed, output,
                    outRows, rows, p.OutDim, p.RowDim, accumulate: false, Path);
                for (var i = 0; i < rows; i++)
                {
                    var t = r0 + i;
                    var scale = powers[reverse ? chunkEnd - 1 - t : t - chunkStart + 1];
                    var row = output + (nint)i * outRows;
                    var bound = DocumentBound(bounds, p.HasBounds, reverse, firstToken + i, p.SeqLen);
                    if (RetentionKernels.ReadsWindowState(reverse, bound, chunkStart, chunkEnd, p.SeqLen))
                    {
                        for (var e = 0; e < p.OutDim; e++)
                            row[e] *= scale;
                    }
                    else
                    {
                        new Span<float>(row, p.OutDim).Clear();
                    }
                }
                accumulate = true;
            }

            // Keys in the window that any of these rows sees: forward from the chunk start (or the first row's
            // document start) to the last row, reverse from the first row to the chunk end (or the last row's
            // document end).
            var keyStart = reverse
                ? r0
                : Math.Max(chunkStart, DocumentBound(bounds, p.HasBounds, false, firstToken, 0));
            var keyEnd = reverse
                ? Math.Min(chunkEnd, DocumentBound(bounds, p.HasBounds, true, firstToken + rows - 1, p.SeqLen))
                : r1;
            var s = HostGemm.Buffer(ref scores, Rows * Rows);
            for (var k0 = keyStart; k0 < keyEnd; k0 += Rows)
            {
                var keys = Math.Min(Rows, keyEnd - k0);
                var y = (float*)Y + ((nint)(b * p.SeqLen + k0) * p.Heads + h) * p.RowDim;
                var z = (float*)Z + ((nint)(b * p.SeqLen + k0) * p.Heads + h) * p.OutDim;
                HostGemm.MultiplyStrided(x, xRows, false, y, xRows, true, s, Rows, rows, keys, p.RowDim,
                    accumulate: false, Path);
                for (var i = 0; i < rows; i++)
                {
                    var t = r0 + i;
                    var scoreRow = s + i * Rows;
                    var bound = DocumentBound(bounds, p.HasBounds, reverse, firstToken + i, p.SeqLen);
                    for (var j = 0; j < keys; j++)
                    {
                        var m = reverse ? k0 + j - t : t - k0 - j;
                        var sameDocument = reverse ? k0 + j < bound : k0 + j >= bound;
                        scoreRow[j] = m >= 0 && sameDocument ? scoreRow[j] * powers[m] : 0f;
                    }
                }
                HostGemm.MultiplyStrided(s, Rows, false, z, outRows, false, output, outRows, rows, p.OutDim, keys,
                    accumulate, Path);
                accumulate = true;
            }
        }
    }

    /// <summary>One call of the chunk-state walk: pointers (as nint) and sizes.</summary>
    private sealed record StateWork(nint X, nint Y, nint Initial, nint ChunkStates, nint Final, nint Bounds,
        float[] Powers, StateProblem P, int Blocks, HostGemmPath Path)
    {
        /// <summary>
        /// Columns e0 … e0+cols−1 of the matrix of one (b, h), walked over the chunks in a thread-local [RowDim, cols]
        /// buffer: S ← γ^n S + (w ⊙ X)ᵀ Y per chunk, the weights w_j of <see cref="StateProblem"/>.
        /// </summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void Item(int index)
        {
            var p = P;
            var (b, h, bh, e0, cols) = ColumnBlock.Of(index, Blocks, p.Heads, p.ColDim);
            var reverse = p.Reverse != 0;
            var powers = Powers.AsSpan(h * (p.ChunkSize + 1), p.ChunkSize + 1);
            var matrix = (nint)p.RowDim * p.ColDim;
            var xRows = p.Heads * p.RowDim;
            var yRows = p.Heads * p.ColDim;
            var s = HostGemm.Buffer(ref running, p.RowDim * cols);
            var w = HostGemm.Buffer(ref weighted, Math.Min(p.ChunkSize, Tokens) * p.RowDim);

            // Final may be initial itself: the whole block is read here, before anything is written.
            var initial = (float*)Initial + bh * matrix + e0;
            if (p.HasInitial != 0)
                for (var i = 0; i < p.RowDim; i++)
                    new ReadOnlySpan<float>(initial + (nint)i * p.ColDim, cols).CopyTo(new Span<float>(s + i * cols, cols));
            else
                new Span<float>(s, p.RowDim * cols).Clear();

            for (var step = 0; step < p.ChunkCount; step++)
            {
                var chunk = reverse ? p.ChunkCount - 1 - step : step;
                if (p.WriteChunkStates != 0)
                    Store(s, cols, (float*)ChunkStates + (bh * p.ChunkCount + chunk) * matrix + e0, p);
                if (step == p.ChunkCount - 1 && p.WriteFinal == 0)
                    break;
                var start = chunk * p.ChunkSize;
                var n = Math.Min(p.ChunkSize, p.SeqLen - start);
                var chunkDecay = powers[n];
                var documentBound = DocumentBound((int*)Bounds, p.HasBounds, reverse,
                    b * p.SeqLen + RetentionKernels.WalkedToken(reverse, start, start + n), p.SeqLen);
                if (RetentionKernels.CarriesAcrossChunk(reverse, documentBound, start, start + n))
                    HostSimd.Scale(s, s, p.RowDim * cols, chunkDecay);
                else
                    new Span<float>(s, p.RowDim * cols).Clear();
                for (var j0 = 0; j0 < n; j0 += Tokens)
                {
                    var tokens = Math.Min(Tokens, n - j0);
                    var first = (nint)(b * p.SeqLen + start + j0) * p.Heads + h;
                    var x = (float*)X + first * p.RowDim;
                    for (var j = 0; j < tokens; j++)
                    {
                        var weight = RetentionKernels.InWalkedDocument(reverse, documentBound, start + j0 + j)
                            ? powers[reverse ? j0 + j + 1 : n - 1 - j0 - j]
                            : 0f;
                        HostSimd.Scale(x + (nint)j * xRows, w + j * p.RowDim, p.RowDim, weight);
                    }
                    // S[i, e] += Σ_j w[j, i]·y[j, e]: the weighted rows are Aᵀ, stored [tokens, RowDim].
                    HostGemm.MultiplyStrided(w, p.RowDim, true, (float*)Y + first * p.ColDim + e0, yRows, false, s,
                        cols, p.RowDim, cols, tokens, accumulate: true, Path);
                }
            }
            if (p.WriteFinal != 0)
                Store(s, cols, (float*)Final + bh * matrix + e0, p);
        }

        private static void Store(float* s, int cols, float* target, in StateProblem p)
        {
            for (var i = 0; i < p.RowDim; i++)
                new ReadOnlySpan<float>(s + i * cols, cols).CopyTo(new Span<float>(target + (nint)i * p.ColDim, cols));
        }
    }
}
