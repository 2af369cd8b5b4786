using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using ILGPU.Runtime;
using RetNet.Ilgpu.Tensors;

namespace RetNet.Ilgpu.Kernels.Gemm;

/// <summary>The instruction set <see cref="HostGemm"/> runs its micro-kernel with.</summary>
internal enum HostGemmPath
{
    /// <summary>The widest path the processor executes in hardware (<see cref="HostGemm.Best"/>).</summary>
    Auto,

    /// <summary>6×32 register block of sixteen-lane vectors (AVX-512).</summary>
    Vector512,

    /// <summary>6×16 register block of eight-lane vectors (AVX2 with FMA).</summary>
    Vector256,

    /// <summary>6×8 block of scalars: any processor.</summary>
    Scalar,
}

/// <summary>A GEMM operand in host memory: where its first element lies and how its elements are stored.</summary>
internal readonly record struct HostOperand(nint Pointer, TensorDType DType)
{
    /// <summary>The host address of <paramref name="tensor"/>'s elements (pinned host memory on ILGPU's CPU
    /// accelerator) and its storage type.</summary>
    public static unsafe HostOperand Of(Tensor tensor) => tensor.DType == TensorDType.Float32
        ? new((nint)tensor.ReadView.LoadEffectiveAddressAsPtr(), TensorDType.Float32)
        : new((nint)tensor.ReadHalfView.LoadEffectiveAddressAsPtr(), tensor.DType);
}

/// <summary>
/// GEMM as host code over host memory, for ILGPU's CPU accelerator: its buffers are ordinary pinned host memory, and
/// its kernels run as simulated threads (~1 µs each) that cannot use SIMD intrinsics, so the processor's vector units
/// are reached only from here. The layout is the classic one of high-performance CPU GEMMs: op(B) is packed into
/// KC×NR column panels and op(A) into MR×KC row panels (zero-padded past the matrix edges), and a register-blocked
/// micro-kernel accumulates one MR×NR tile of C with fused multiply-adds.
/// </summary>
/// <remarks>
/// Products of at most <see cref="SmallRows"/> rows (a decoding step's Linear layers: one row per sequence) skip the
/// packing, which would cost as much as the product: op(A) is read in place, and op(B) too when its rows run along N
/// (whole column panels in register blocks of rows, <c>RowsAlongN</c>: a decoding step against k-major weights);
/// against a transposed B ([N, K], a Linear layer's weight) the vector paths stream one dot product per element of C
/// (<see cref="HostDots"/>: each weight row read once, front to back, as a step must to run at memory bandwidth), and
/// the scalar path transposes one K-block of one column panel at a time. The vector paths' dot products also take
/// products of up to <see cref="DotRows"/> rows against such a weight (a prompt's prefill).
/// <para>
/// A and B may be stored as fp16 or bf16 (C is always fp32): the packing widens them to fp32 as it copies, so the
/// micro-kernels stay fp32, and the unpacked path widens B's vectors as it loads them, so a decoding step reads two
/// bytes per weight. Widening is exact, so a 16-bit operand gives bit for bit the result of its widened fp32 copy.
/// </para>
/// <para>
/// Determinism: every element of C is the fused multiply-add chain over k = 0, 1, …, K−1 in that order, starting
/// from 0 and held in float between K-blocks, then alpha·sum (+ beta·old C); threads only split the rows and column
/// panels of C, never K, so neither the thread count nor the scheduling changes a single sum. All three paths and the
/// small-row path take exactly that sequence of operations per element, so they give bit-identical results, except
/// the vector paths' dot products against a transposed B (<see cref="HostDots"/>), which sum in another fixed order:
/// deterministic on any thread count, equal to the packed path to rounding only.
/// </para>
/// </remarks>
internal static unsafe partial class HostGemm
{
    /// <summary>Rows of the register block: with two B vectors a row, 6·2 accumulators + 2 B vectors + 1 broadcast
    /// fill 15 of the 16 vector registers AVX2 has; 12 independent FMA chains also cover the FMA latency (4 cycles,
    /// two pipes). AVX-512 keeps the same rows so every path shares one packing of A.</summary>
    internal const int MR = 6;

    /// <summary>Depth of one packed K-block: a 256×32 B panel is 32 KiB and stays in L1 while the A panels stream.</summary>
    internal const int KC = 256;

    // Rows of A one task packs (a multiple of MR): 144×256 floats are 144 KiB, resident in a 1 MiB L2.
    private const int MCMax = 144;

    // Columns of B packed at once: 256×2048 floats are 2 MiB, which lives in L3.
    private const int NCMax = 2048;

    // Below this many flops per parallel region (~40 µs on one core) a fork-join costs more than it saves.
    private const double ParallelFlops = 1 << 21;

    /// <summary>
    /// Products with at most this many rows per batch entry run unpacked (<see cref="Problem.MultiplySmall"/>).
    /// </summary>
    internal const int SmallRows = 8;

    /// <summary>Products with at most this many rows against B stored [N, K] (with A's rows along K) run as dot
    /// products (<see cref="HostDots"/>, blocks of rows by four weight rows) unless unpacked products are turned off, since
    /// packing copies every weight on every call. Measured on the build machine (prefill, median ms, packed → dots):
    /// tiny 16 tokens 0.21 → 0.12, small 16 tokens 0.70 → 0.28, base 64 tokens 55.7 → 42.4 and 128 tokens 72.1 →
    /// 59.7.</summary>
    internal const int DotRows = 128;

    // Below this many elements of B the unpacked path stays on one thread: transposing and multiplying 2^17 elements
    // takes ~30 µs, a few fork-joins.
    private const long SmallParallelElements = 1 << 17;

    [ThreadStatic] private static float[]? packedA;
    [ThreadStatic] private static float[]? packedB;
    [ThreadStatic] private static float[]? transposedB;
    [ThreadStatic] private static float[]? smallSums;
    [ThreadStatic] private static float[]? widenedA;

    /// <summary>The widest path executed in hardware: AVX-512, else AVX2 with FMA, else scalar.</summary>
    internal static HostGemmPath Best =>
        Vector512.IsHardwareAccelerated && Avx512F.IsSupported ? HostGemmPath.Vector512
        : Vector256.IsHardwareAccelerated && Fma.IsSupported ? HostGemmPath.Vector256
        : HostGemmPath.Scalar;

    /// <summary>Columns of the register block of <paramref name="path"/>.</summary>
    internal static int PanelWidth(HostGemmPath path) => path switch
    {
        HostGemmPath.Vector512 => 32,
        HostGemmPath.Vector256 => 16,
        HostGemmPath.Scalar => 8,
        _ => PanelWidth(Best),
    };

    /// <summary>
    /// C = alpha·op(A)·op(B) + beta·C on host pointers laid out as <paramref name="shape"/> says; with beta = 0 the old
    /// C is never read. <paramref name="threads"/> caps the threads used; products of at most
    /// <paramref name="smallRows"/> rows per entry run unpacked (0 packs every product, so tests reach both).
    /// </summary>
    internal static void Run(HostOperand a, HostOperand b, float* c, GemmShape shape, float alpha, float beta,
        HostGemmPath path, int threads, int smallRows = SmallRows)
    {
        if (path == HostGemmPath.Auto)
            path = Best;
        if (shape.Batch == 0 || shape.M == 0 || shape.N == 0)
            return;
        if (shape.K == 0)
        {
            // No products: the kernels' alpha·0 + beta·C, with beta = 0 overwriting whatever C held.
            var total = (long)shape.ElementsC;
            for (long i = 0; i < total; i++)
                c[i] = beta == 0f ? alpha * 0f : alpha * 0f + beta * c[i];
            return;
        }
        // A batched, untransposed A against a broadcast B is one product with batch·M rows: A's matrices follow one
        // another row by row, and so do C's. Each element's K loop is unchanged.
        if (shape.BroadcastB && !shape.TransposeA && shape.Batch > 1)
            shape = new GemmShape(1, shape.Batch * shape.M, shape.N, shape.K, false, shape.TransposeB);

        var (sam, sak) = shape.TransposeA ? (1, shape.M) : (shape.K, 1);
        var (sbk, sbn) = shape.TransposeB ? (1, shape.K) : (shape.N, 1);
        var problem = new Problem(a.Pointer, a.DType, b.Pointer, b.DType, (nint)c, shape.M, shape.N, shape.K, sam, sak,
            sbk, sbn, shape.N, alpha, beta, Accumulate: false, path, PanelWidth(path), smallRows);
        var entryFlops = 2.0 * shape.M * shape.N * shape.K;
        threads = Math.Max(1, threads);

        // Many entries: one thread per entry, each with its own packed panels. Few large entries: split each.
        if (shape.Batch > 1 && threads > 1 && (shape.Batch >= 2 * threads || entryFlops < ParallelFlops))
        {
            EntriesInParallel(problem, shape, threads);
            return;
        }
        for (var p = 0; p < shape.Batch; p++)
            problem.Entry(p, shape).Multiply(threads);
    }

    // The parallel branches live in methods of their own: a lambda's captured variables are allocated where their
    // scope begins, and a decoding step calls these products dozens of times on one thread.
    private static void EntriesInParallel(Problem problem, GemmShape shape, int threads) =>
        Parallel.For(0, shape.Batch, new ParallelOptions { MaxDegreeOfParallelism = threads }, p =>
            problem.Entry(p, shape).Multiply(1));

    /// <summary>
    /// C = op(A)·op(B) for one matrix product on the calling thread, with leading dimensions, so operands can be
    /// blocks inside larger strided tensors (retention's rows of one head in [B, T, H, D]). op(A) is [m, k], stored
    /// [m, lda] or, when <paramref name="transposeA"/>, [k, lda]; op(B) is [k, n], stored [k, ldb] or [n, ldb]; C is
    /// [m, ldc]. With <paramref name="accumulate"/> every element's fused multiply-add chain starts from C's old value
    /// (C += op(A)·op(B)), else from zero; k ≥ 1.
    /// </summary>
    internal static void MultiplyStrided(float* a, int lda, bool transposeA, float* b, int ldb, bool transposeB,
        float* c, int ldc, int m, int n, int k, bool accumulate, HostGemmPath path)
    {
        if (path == HostGemmPath.Auto)
            path = Best;
        var (sam, sak) = transposeA ? (1, lda) : (lda, 1);
        var (sbk, sbn) = transposeB ? (1, ldb) : (ldb, 1);
        new Problem((nint)a, TensorDType.Float32, (nint)b, TensorDType.Float32, (nint)c, m, n, k, sam, sak, sbk, sbn,
            ldc, 1f, 0f, accumulate, path, PanelWidth(path), SmallRows: 0).Multiply(1);
    }

    /// <summary>
    /// One product's operands: base pointers (as nint so lambdas can carry them), A's and B's storage types, strides
    /// (in elements) and C's leading dimension (N, except in <see cref="MultiplyStrided"/>, which never has beta ≠ 0,
    /// so a saved old C always has rows of N). Products of at most <paramref name="SmallRows"/> rows run unpacked;
    /// <see cref="MultiplyStrided"/> (which accumulates) always packs.
    /// </summary>
    private readonly partial record struct Problem(nint A, TensorDType TypeA, nint B, TensorDType TypeB, nint C, int M, int N,
        int K, int Sam, int Sak, int Sbk, int Sbn, int Ldc, float Alpha, float Beta, bool Accumulate, HostGemmPath Path,
        int NR, int SmallRows)
    {
        public Problem Entry(int p, GemmShape shape) => this with
        {
            A = A + (nint)p * shape.BatchStrideA * TensorDTypes.SizeOf(TypeA),
            B = B + (nint)p * shape.BatchStrideB * TensorDTypes.SizeOf(TypeB),
            C = C + (nint)p * shape.BatchStrideC * sizeof(float),
        };

        public void Multiply(int threads)
        {
            // A few rows against a Linear weight stored [N, K] (a short prompt's prefill): the dot products read each
            // weight row once, where packing would copy every weight first.
            var dotRows = SmallRows > 0 && Sbk == 1 && Sak == 1 && Path != HostGemmPath.Scalar ? DotRows : 0;
            if (M <= Math.Max(SmallRows, dotRows) && !Accumulate)
            {
                MultiplySmall(threads);
                return;
            }
            var (m, n, k) = (M, N, K);
            var c = (float*)C;
            var kBlocks = (K + KC - 1) / KC;
            // With several K-blocks, C holds the running sums between blocks, so beta·C needs the old C kept aside.
            float[]? saved = null;
            float* old = c;
            if (Beta != 0f && kBlocks > 1)
            {
                saved = GC.AllocateUninitializedArray<float>(M * N, pinned: true);
                new ReadOnlySpan<float>(c, M * N).CopyTo(saved);
                old = Pointer(saved);
            }
            var packB = Buffer(ref packedB, KC * Math.Min(RoundUp(N, NR), NCMax));
            for (var jc = 0; jc < N; jc += NCMax)
            {
                var nc = Math.Min(NCMax, N - jc);
                var panels = (nc + NR - 1) / NR;
                for (var pc = 0; pc < K; pc += KC)
                {
                    var kc = Math.Min(KC, K - pc);
                    var block = new Block(this, (nint)packB, (nint)old, jc, nc, pc, kc, pc == 0 && !Accumulate,
                        pc + kc == K);
                    var parallel = threads > 1 && 2.0 * M * nc * kc >= ParallelFlops;
                    if (parallel)
                    {
                        Parallel.For(0, panels, new ParallelOptions { MaxDegreeOfParallelism = threads },
                            block.PackB);
                    }
                    else
                    {
                        for (var jr = 0; jr < panels; jr++)
                            block.PackB(jr);
                    }

                    // Tasks: row blocks of at most MCMax rows, as many as a multiple of the thread count so the
                    // threads finish together; when M is short, the column panels are split too.
                    var workers = parallel ? threads : 1;
                    var rowTasks = workers * ((M + workers * MCMax - 1) / (workers * MCMax));
                    var mc = RoundUp((M + rowTasks - 1) / rowTasks, MR);
                    rowTasks = (M + mc - 1) / mc;
                    var columnTasks = Math.Min(panels, Math.Max(1, (workers + rowTasks - 1) / rowTasks));
                    var panelsPerTask = (panels + columnTasks - 1) / columnTasks;
                    columnTasks = (panels + panelsPerTask - 1) / panelsPerTask;
                    var tasks = rowTasks * columnTasks;
                    void RunTask(int t)
                    {
                        var i0 = t / columnTasks * mc;
                        var jr0 = t % columnTasks * panelsPerTask;
                        block.Compute(i0, Math.Min(mc, m - i0), jr0, Math.Min(panels, jr0 + panelsPerTask));
                    }
                    if (parallel && tasks > 1)
                    {
                        Parallel.For(0, tasks, new ParallelOptions { MaxDegreeOfParallelism = threads }, RunTask);
                    }
                    else
                    {
                        for (var t = 0; t < tasks; t++)
                            RunTask(t);
                    }
                }
            }
            GC.KeepAlive(saved);
        }

        /// <summary>
        /// The unpacked product: column panels of NR columns, split over threads only when B is large enough to pay
        /// for a fork-join; each panel computes all M rows.
        /// </summary>
        public void MultiplySmall(int threads)
        {
            // The dot products read A's rows along K, so a transposed A is copied into rows first, like a 16-bit one.
            var dots = Sbk == 1 && Path != HostGemmPath.Scalar;
            if (TypeA != TensorDType.Float32 || (dots && Sak != 1))
            {
                WidenA().MultiplySmall(threads);
                return;
            }
            if (dots)
            {
                Dots(threads);
                return;
            }
            var panels = (N + NR - 1) / NR;
            var tasks = SplitsColumns(threads) ? Math.Min(threads, panels) : 1;
            if (tasks == 1)
                Panels(0, panels);
            else
                PanelsInParallel(this, panels, tasks);
        }

        private static void PanelsInParallel(Problem self, int panels, int tasks) =>
            Parallel.For(0, tasks, new ParallelOptions { MaxDegreeOfParallelism = tasks },
                t => self.Panels(t * panels / tasks, (t + 1) * panels / tasks));

        /// <summary>
        /// Whether the unpacked product splits its columns over threads: when B is large enough to pay for a
        /// fork-join in reading alone, or the M·N·K products are (a decoding step's batch of rows). Columns only, so
        /// the split never changes a bit.
        /// </summary>
        private bool SplitsColumns(int threads) =>
            threads > 1 && ((long)N * K >= SmallParallelElements || 2.0 * M * N * K >= ParallelFlops);

        /// <summary>
        /// op(B) stored [N, K] (a Linear layer's weight) against rows of A along K: one streamed dot product per
        /// element (<see cref="HostDots"/>), the columns split over threads in groups of four.
        /// </summary>
        private void Dots(int threads)
        {
            var groups = (N + 3) / 4;
            var tasks = SplitsColumns(threads) ? Math.Min(threads, groups) : 1;
            if (tasks == 1)
                DotColumns(0, N);
            else
                DotsInParallel(this, groups, tasks);
        }

        private static void DotsInParallel(Problem self, int groups, int tasks) =>
            Parallel.For(0, tasks, new ParallelOptions { MaxDegreeOfParallelism = tasks },
                t => self.DotColumns(Math.Min(self.N, 4 * (t * groups / tasks)),
                    Math.Min(self.N, 4 * ((t + 1) * groups / tasks))));

        private void DotColumns(int j0, int j1)
        {
            switch (TypeB)
            {
                case TensorDType.BFloat16:
                    DotColumns<BFloat16Elements>(j0, j1);
                    break;
                case TensorDType.Float16:
                    DotColumns<HalfElements>(j0, j1);
                    break;
                default:
                    DotColumns<Float32Elements>(j0, j1);
                    break;
            }
        }

        private void DotColumns<TB>(int j0, int j1) where TB : struct, IElements
        {
            if (Path == HostGemmPath.Vector512)
                HostDots.Columns<Vector512<float>, Vector512Ops, TB>((float*)A, Sam, M, B, Sbn, (float*)C, Ldc, K, j0,
                    j1, Alpha, Beta);
            else
                HostDots.Columns<Vector256<float>, Vector256Ops, TB>((float*)A, Sam, M, B, Sbn, (float*)C, Ldc, K, j0,
                    j1, Alpha, Beta);
        }

        /// <summary>
        /// This product with op(A) widened into a per-thread fp32 copy [M, K]: at most <see cref="SmallRows"/> rows,
        /// so M·K conversions once beat one per element of C, and every panel then reads plain floats.
        /// </summary>
        private Problem WidenA()
        {
            var wide = Buffer(ref widenedA, M * K);
            for (var i = 0; i < M; i++)
            {
                if (Sak == 1)
                {
                    Widen(A + (nint)i * Sam * TensorDTypes.SizeOf(TypeA), TypeA, wide + (nint)i * K, K, Path);
                    continue;
                }
                for (var k = 0; k < K; k++)
                    wide[(nint)i * K + k] = Element(A, TypeA, (nint)i * Sam + (nint)k * Sak);
            }
            return this with { A = (nint)wide, TypeA = TensorDType.Float32, Sam = K, Sak = 1 };
        }

        private void Panels(int jr0, int jr1)
        {
            switch (TypeB)
            {
                case TensorDType.BFloat16:
                    Panels<BFloat16Elements>(jr0, jr1);
                    break;
                case TensorDType.Float16:
                    Panels<HalfElements>(jr0, jr1);
                    break;
                default:
                    Panels<Float32Elements>(jr0, jr1);
                    break;
            }
        }

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private void Panels<TB>(int jr0, int jr1) where TB : struct, IElements
        {
            if (Path != HostGemmPath.Scalar && Sbn == 1)
            {
                // B's rows run along N: whole panels read it in place, rows in register blocks.
                var whole = Math.Min(jr1, N / NR);
                if (whole > jr0)
                {
                    if (Path == HostGemmPath.Vector512)
                        RowsAlongN<Vector512<float>, Vector512Ops, TB>(jr0, whole);
                    else
                        RowsAlongN<Vector256<float>, Vector256Ops, TB>(jr0, whole);
                    jr0 = whole;
                }
            }
            for (var jr = jr0; jr < jr1; jr++)
            {
                var j0 = jr * NR;
                var width = Math.Min(NR, N - j0);
                if (Path == HostGemmPath.Scalar)
                    ScalarPanel<TB>(j0, width);
                else
                    VectorPanel<TB>(j0, width);
            }
        }

        /// <summary>Columns j0 … j0+width of C, one fused multiply-add chain per element straight from A and B.</summary>
        private void ScalarPanel<TB>(int j0, int width) where TB : struct, IElements
        {
            var a = (float*)A;
            var c = (float*)C;
            for (var i = 0; i < M; i++)
            {
                for (var j = j0; j < j0 + width; j++)
                {
                    var acc = 0f;
                    for (var k = 0; k < K; k++)
                        acc = MathF.FusedMultiplyAdd(a[(nint)i * Sam + (nint)k * Sak],
                            TB.Load(B, (nint)k * Sbk + (nint)j * Sbn), acc);
                    var cell = c + (nint)i * Ldc + j;
                    *cell = Beta != 0f ? Alpha * acc + Beta * *cell : Alpha * acc;
                }
            }
        }

        /// <summary>
        /// Columns j0 … j0+width of C on the vector paths: per K-block, op(B)'s block as KC rows of NR floats (B's own
        /// rows, widened as they load, when they run along N and the panel is whole; else a transposed fp32 copy),
        /// then per row of C two vector accumulators take one fused multiply-add per k, kept on the stack between
        /// K-blocks.
        /// </summary>
        private void VectorPanel<TB>(int j0, int width) where TB : struct, IElements
        {
            var sums = Buffer(ref smallSums, M * NR);
            var edge = stackalloc float[32];
            var a = (float*)A;
            var c = (float*)C;
            var copy = Buffer(ref transposedB, KC * NR);
            for (var pc = 0; pc < K; pc += KC)
            {
                var kc = Math.Min(KC, K - pc);
                var panel = PanelOfB<TB>(copy, j0, width, pc, kc, out var stride, out var inPlace);
                var first = pc == 0;
                var last = pc + kc == K;
                for (var i = 0; i < M; i++)
                {
                    var row = a + (nint)i * Sam + (nint)pc * Sak;
                    var sum = sums + i * NR;
                    var target = width == NR ? c + (nint)i * Ldc + j0 : edge;
                    if (width != NR && last && Beta != 0f)
                    {
                        for (var j = 0; j < width; j++)
                            edge[j] = c[(nint)i * Ldc + j0 + j];
                    }
                    if (Path == HostGemmPath.Vector512)
                        SmallRow<Vector512<float>, Vector512Ops, TB>(kc, row, Sak, panel, stride, inPlace, sum, first,
                            last, target, Alpha, Beta);
                    else
                        SmallRow<Vector256<float>, Vector256Ops, TB>(kc, row, Sak, panel, stride, inPlace, sum, first,
                            last, target, Alpha, Beta);
                    if (width != NR && last)
                    {
                        for (var j = 0; j < width; j++)
                            c[(nint)i * Ldc + j0 + j] = edge[j];
                    }
                }
            }
        }

        /// <summary>
        /// K-block pc … pc+kc of op(B)'s columns j0 … j0+width as rows of NR elements, <paramref name="stride"/>
        /// apart: B itself (<paramref name="inPlace"/>, in B's storage type) when B's rows run along N and the panel is
        /// whole; else <paramref name="copy"/>, fp32, filled with in-register transposes of whole tiles (widened as
        /// they load) and element copies (zeros past N) at the edges.
        /// </summary>
        private nint PanelOfB<TB>(float* copy, int j0, int width, int pc, int kc, out int stride, out bool inPlace)
            where TB : struct, IElements
        {
            var b = B + ((nint)pc * Sbk + (nint)j0 * Sbn) * TB.Size;
            stride = NR;
            inPlace = Sbn == 1 && width == NR;
            if (inPlace)
            {
                stride = Sbk;
                return b;
            }
            var k = 0;
            if (Sbk == 1 && width == NR)
            {
                // Bᵀ is stored: NR rows of K, turned into K rows of NR a square tile at a time.
                var lanes = Path == HostGemmPath.Vector512 ? 16 : 8;
                for (; k + lanes <= kc; k += lanes)
                {
                    for (var j = 0; j < NR; j += lanes)
                    {
                        var tile = b + ((nint)j * Sbn + k) * TB.Size;
                        if (lanes == 16)
                            Transpose16<TB>(tile, Sbn, copy + k * NR + j, NR);
                        else
                            Transpose8<TB>(tile, Sbn, copy + k * NR + j, NR);
                    }
                }
            }
            for (; k < kc; k++)
            {
                var row = copy + k * NR;
                for (var j = 0; j < width; j++)
                    row[j] = TB.Load(b, (nint)k * Sbk + (nint)j * Sbn);
                for (var j = width; j < NR; j++)
                    row[j] = 0f;
            }
            return (nint)copy;
        }
    }

    /// <summary>One K-block of one column block: packs its B panels and computes row blocks of C against them.</summary>
    private readonly record struct Block(Problem P, nint PackedB, nint Old, int Jc, int Nc, int Pc, int Kc, bool First,
        bool Last)
    {
        /// <summary>Packs column panel <paramref name="jr"/>: Kc rows of NR consecutive floats, zeros past N.</summary>
        public void PackB(int jr)
        {
            switch (P.TypeB)
            {
                case TensorDType.BFloat16:
                    PackB<BFloat16Elements>(jr);
                    break;
                case TensorDType.Float16:
                    PackB<HalfElements>(jr);
                    break;
                default:
                    PackB<Float32Elements>(jr);
                    break;
            }
        }

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private void PackB<TB>(int jr) where TB : struct, IElements
        {
            var nr = P.NR;
            var dst = (float*)PackedB + (nint)jr * Kc * nr;
            var j0 = Jc + jr * nr;
            var width = Math.Min(nr, P.N - j0);
            var src = P.B + ((nint)Pc * P.Sbk + (nint)j0 * P.Sbn) * TB.Size;
            if (P.Sbn == 1)
            {
                // Rows of B are contiguous: copy (widen) each row's NR elements.
                for (var k = 0; k < Kc; k++)
                {
                    var d = dst + k * nr;
                    Widen<TB>(src + (nint)k * P.Sbk * TB.Size, d, width, P.Path);
                    for (var j = width; j < nr; j++)
                        d[j] = 0f;
                }
            }
            else if (typeof(TB) == typeof(Float32Elements))
            {
                // Bᵀ is stored: K is contiguous, so read down each column.
                for (var j = 0; j < width; j++)
                {
                    for (var k = 0; k < Kc; k++)
                        dst[k * nr + j] = TB.Load(src, (nint)j * P.Sbn + k);
                }
            }
            else
            {
                // Bᵀ stored in 16 bits: widen each column's run of K with vectors, then spread it down the panel.
                var column = stackalloc float[KC];
                for (var j = 0; j < width; j++)
                {
                    Widen<TB>(src + (nint)j * P.Sbn * TB.Size, column, Kc, P.Path);
                    for (var k = 0; k < Kc; k++)
                        dst[k * nr + j] = column[k];
                }
            }
            if (P.Sbn != 1)
            {
                for (var j = width; j < nr; j++)
                {
                    for (var k = 0; k < Kc; k++)
                        dst[k * nr + j] = 0f;
                }
            }
        }

        /// <summary>Rows i0 … i0+mc of C against column panels jr0 … jr1 of the packed B.</summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void Compute(int i0, int mc, int jr0, int jr1)
        {
            var panelsA = (mc + MR - 1) / MR;
            var packA = Buffer(ref packedA, panelsA * MR * Kc);
            PackA(packA, i0, mc);
            var nr = P.NR;
            var c = (float*)P.C;
            var old = (float*)Old;
            // Edge tiles run the same micro-kernel on a full tile copied to the stack, so every element of C goes
            // through identical arithmetic.
            var edge = stackalloc float[MR * 32];
            var edgeOld = stackalloc float[MR * 32];
            for (var jr = jr0; jr < jr1; jr++)
            {
                var j0 = Jc + jr * nr;
                var width = Math.Min(nr, P.N - j0);
                var bp = (float*)PackedB + (nint)jr * Kc * nr;
                for (var ir = 0; ir < panelsA; ir++)
                {
                    var row0 = i0 + ir * MR;
                    var rows = Math.Min(MR, P.M - row0);
                    var ap = packA + (nint)ir * MR * Kc;
                    var tile = c + (nint)row0 * P.Ldc + j0;
                    var oldTile = old + (nint)row0 * P.Ldc + j0;
                    if (rows == MR && width == nr)
                    {
                        Tile(ap, bp, tile, P.Ldc, oldTile, P.Ldc);
                        continue;
                    }
                    for (var i = 0; i < rows; i++)
                    {
                        for (var j = 0; j < width; j++)
                        {
                            edge[i * nr + j] = First ? 0f : tile[(nint)i * P.Ldc + j];
                            edgeOld[i * nr + j] = Last && P.Beta != 0f ? oldTile[(nint)i * P.Ldc + j] : 0f;
                        }
                    }
                    Tile(ap, bp, edge, nr, edgeOld, nr);
                    for (var i = 0; i < rows; i++)
                    {
                        for (var j = 0; j < width; j++)
                            tile[(nint)i * P.Ldc + j] = edge[i * nr + j];
                    }
                }
            }
        }

        private void Tile(float* ap, float* bp, float* c, int ldc, float* old, int ldo)
        {
            switch (P.Path)
            {
                case HostGemmPath.Vector512:
                    Kernel<Vector512<float>, Vector512Ops>(Kc, ap, bp, c, ldc, old, ldo, First, Last, P.Alpha, P.Beta);
                    break;
                case HostGemmPath.Vector256:
                    Kernel<Vector256<float>, Vector256Ops>(Kc, ap, bp, c, ldc, old, ldo, First, Last, P.Alpha, P.Beta);
                    break;
                default:
                    KernelScalar(Kc, ap, bp, c, ldc, old, ldo, First, Last, P.Alpha, P.Beta);
                    break;
            }
        }

        /// <summary>Packs rows i0 … i0+mc of op(A), K-block Pc: per MR-row panel, Kc columns of MR floats.</summary>
        private void PackA(float* dst, int i0, int mc)
        {
            switch (P.TypeA)
            {
                case TensorDType.BFloat16:
                    PackA<BFloat16Elements>(dst, i0, mc);
                    break;
                case TensorDType.Float16:
                    PackA<HalfElements>(dst, i0, mc);
                    break;
                default:
                    PackA<Float32Elements>(dst, i0, mc);
                    break;
            }
        }

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private void PackA<TA>(float* dst, int i0, int mc) where TA : struct, IElements
        {
            var panels = (mc + MR - 1) / MR;
            var row = stackalloc float[KC];
            for (var ir = 0; ir < panels; ir++)
            {
                var d = dst + (nint)ir * MR * Kc;
                var row0 = i0 + ir * MR;
                var rows = Math.Min(MR, P.M - row0);
                var src = P.A + ((nint)row0 * P.Sam + (nint)Pc * P.Sak) * TA.Size;
                if (P.Sak == 1 && typeof(TA) == typeof(Float32Elements))
                {
                    // Rows of A are contiguous: read along each row.
                    for (var i = 0; i < rows; i++)
                    {
                        for (var k = 0; k < Kc; k++)
                            d[k * MR + i] = TA.Load(src, (nint)i * P.Sam + k);
                    }
                }
                else if (P.Sak == 1)
                {
                    // 16-bit rows: widen each row's run of K with vectors, then spread it across the panel.
                    for (var i = 0; i < rows; i++)
                    {
                        Widen<TA>(src + (nint)i * P.Sam * TA.Size, row, Kc, P.Path);
                        for (var k = 0; k < Kc; k++)
                            d[k * MR + i] = row[k];
                    }
                }
                else
                {
                    // Aᵀ is stored: the MR rows of one k are contiguous.
                    for (var k = 0; k < Kc; k++)
                    {
                        for (var i = 0; i < rows; i++)
                            d[k * MR + i] = TA.Load(src, (nint)k * P.Sak + i);
                    }
                }
                for (var i = rows; i < MR; i++)
                {
                    for (var k = 0; k < Kc; k++)
                        d[k * MR + i] = 0f;
                }
            }
        }
    }

    // AggressiveOptimization on the packing and compute loops: a benchmark or a training step calls them a few dozen
    // times within the 100 ms before tiered compilation would replace the unoptimised first JIT, which packs several
    // times slower.
    //
    // The micro-kernels: acc starts at 0 (first K-block) or at C's running sum, takes one fused multiply-add per k,
    // then stores either the running sum or, after the last K-block, alpha·acc (+ beta·old when beta ≠ 0), the
    // kernels' formula.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Kernel<TV, TOps>(int kc, float* a, float* b, float* c, int ldc, float* old, int ldo,
        bool first, bool last, float alpha, float beta)
        where TV : struct
        where TOps : struct, IVectorOps<TV>
    {
        var w = TOps.Count;
        TV c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51;
        if (first)
        {
            c00 = c01 = c10 = c11 = c20 = c21 = c30 = c31 = c40 = c41 = c50 = c51 = TOps.Zero;
        }
        else
        {
            c00 = TOps.Load(c); c01 = TOps.Load(c + w);
            c10 = TOps.Load(c + ldc); c11 = TOps.Load(c + ldc + w);
            c20 = TOps.Load(c + 2 * ldc); c21 = TOps.Load(c + 2 * ldc + w);
            c30 = TOps.Load(c + 3 * ldc); c31 = TOps.Load(c + 3 * ldc + w);
            c40 = TOps.Load(c + 4 * ldc); c41 = TOps.Load(c + 4 * ldc + w);
            c50 = TOps.Load(c + 5 * ldc); c51 = TOps.Load(c + 5 * ldc + w);
        }
        for (var k = 0; k < kc; k++)
        {
            var b0 = TOps.Load(b);
            var b1 = TOps.Load(b + w);
            // One row of the register block a line: a[i] broadcast, times both B vectors, into row i's accumulators.
            var a0 = TOps.Broadcast(a[0]); c00 = TOps.Fma(a0, b0, c00); c01 = TOps.Fma(a0, b1, c01);
            var a1 = TOps.Broadcast(a[1]); c10 = TOps.Fma(a1, b0, c10); c11 = TOps.Fma(a1, b1, c11);
            var a2 = TOps.Broadcast(a[2]); c20 = TOps.Fma(a2, b0, c20); c21 = TOps.Fma(a2, b1, c21);
            var a3 = TOps.Broadcast(a[3]); c30 = TOps.Fma(a3, b0, c30); c31 = TOps.Fma(a3, b1, c31);
            var a4 = TOps.Broadcast(a[4]); c40 = TOps.Fma(a4, b0, c40); c41 = TOps.Fma(a4, b1, c41);
            var a5 = TOps.Broadcast(a[5]); c50 = TOps.Fma(a5, b0, c50); c51 = TOps.Fma(a5, b1, c51);
            a += MR;
            b += 2 * w;
        }
        Store<TV, TOps>(c, old, c00, c01, last, alpha, beta);
        Store<TV, TOps>(c + ldc, old + ldo, c10, c11, last, alpha, beta);
        Store<TV, TOps>(c + 2 * ldc, old + 2 * ldo, c20, c21, last, alpha, beta);
        Store<TV, TOps>(c + 3 * ldc, old + 3 * ldo, c30, c31, last, alpha, beta);
        Store<TV, TOps>(c + 4 * ldc, old + 4 * ldo, c40, c41, last, alpha, beta);
        Store<TV, TOps>(c + 5 * ldc, old + 5 * ldo, c50, c51, last, alpha, beta);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Store<TV, TOps>(float* c, float* old, TV v0, TV v1, bool last, float alpha, float beta)
        where TV : struct
        where TOps : struct, IVectorOps<TV>
    {
        var w = TOps.Count;
        if (last)
        {
            var va = TOps.Broadcast(alpha);
            v0 = TOps.Multiply(v0, va);
            v1 = TOps.Multiply(v1, va);
            if (beta != 0f)
            {
                var vb = TOps.Broadcast(beta);
                v0 = TOps.Add(v0, TOps.Multiply(vb, TOps.Load(old)));
                v1 = TOps.Add(v1, TOps.Multiply(vb, TOps.Load(old + w)));
            }
        }
        TOps.Store(v0, c);
        TOps.Store(v1, c + w);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void KernelScalar(int kc, float* a, float* b, float* c, int ldc, float* old, int ldo, bool first,
        bool last, float alpha, float beta)
    {
        const int nr = 8;
        var acc = stackalloc float[MR * nr];
        for (var i = 0; i < MR; i++)
        {
            for (var j = 0; j < nr; j++)
                acc[i * nr + j] = first ? 0f : c[(nint)i * ldc + j];
        }
        for (var k = 0; k < kc; k++)
        {
            for (var i = 0; i < MR; i++)
            {
                var av = a[i];
                for (var j = 0; j < nr; j++)
                    acc[i * nr + j] = MathF.FusedMultiplyAdd(av, b[j], acc[i * nr + j]);
            }
            a += MR;
            b += nr;
        }
        for (var i = 0; i < MR; i++)
        {
            for (var j = 0; j < nr; j++)
            {
                var v = acc[i * nr + j];
                if (last)
                    v = beta != 0f ? alpha * v + beta * old[(nint)i * ldo + j] : alpha * v;
                c[(nint)i * ldc + j] = v;
            }
        }
    }

    // The unpacked path's vector kernels: one row of C against a panel of NR columns (rows of B's elements, widened as
    // they load), two accumulators that start at 0 (first K-block) or at the running sums, one fused multiply-add per
    // k, then the running sums or, after the last K-block, alpha·acc (+ beta·old) through the packed path's own stores.
    /// <summary><see cref="Small{TV, TOps, TB}"/> on B's own rows (<paramref name="inPlace"/>, in B's storage type) or on
    /// a copied panel, which is fp32 whatever B's storage.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void SmallRow<TV, TOps, TB>(int kc, float* a, int sak, nint b, int ldb, bool inPlace, float* sum,
        bool first, bool last, float* c, float alpha, float beta)
        where TV : struct
        where TOps : struct, IVectorOps<TV>
        where TB : struct, IElements
    {
        if (inPlace)
            Small<TV, TOps, TB>(kc, a, sak, b, ldb, sum, first, last, c, alpha, beta);
        else
            Small<TV, TOps, Float32Elements>(kc, a, sak, b, ldb, sum, first, last, c, alpha, beta);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Small<TV, TOps, TB>(int kc, float* a, int sak, nint b, int ldb, float* sum, bool first,
        bool last, float* c, float alpha, float beta)
        where TV : struct
        where TOps : struct, IVectorOps<TV>
        where TB : struct, IElements
    {
        var w = TOps.Count;
        TV c0, c1;
        if (first)
        {
            c0 = c1 = TOps.Zero;
        }
        else
        {
            c0 = TOps.Load(sum);
            c1 = TOps.Load(sum + w);
        }
        for (var k = 0; k < kc; k++)
        {
            // B's row offset first: in this order the JIT folds the load of a[k] into the broadcast, as it does for
            // a kernel written for one width (the generic kernels compile to the same instructions).
            var row = (nint)k * ldb;
            var av = TOps.Broadcast(a[(nint)k * sak]);
            c0 = TOps.Fma(av, TOps.Load<TB>(b, row), c0);
            c1 = TOps.Fma(av, TOps.Load<TB>(b, row + w), c1);
        }
        if (last)
        {
            Store<TV, TOps>(c, c, c0, c1, last, alpha, beta);
        }
        else
        {
            TOps.Store(c0, sum);
            TOps.Store(c1, sum + w);
        }
    }

    /// <summary>
    /// dst[x·ldd + y] = src[y·lds + x] for a 16×16 tile of <typeparamref name="TB"/> elements, widened to fp32 as each
    /// row loads: unpacks and in-lane shuffles make 4×4 blocks, two rounds of 128-bit lane shuffles put them in place
    /// (64 shuffles for 256 elements). Element copies without AVX-512.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Transpose16<TB>(nint src, int lds, float* dst, int ldd) where TB : struct, IElements
    {
        if (!Avx512F.IsSupported)
        {
            TransposeScalar<TB>(src, lds, dst, ldd, 16);
            return;
        }
        // Per group of four rows g, (gX0 … gX3)[x] holds columns x, x+4, x+8, x+12 of those rows in its 128-bit lanes.
        var (a0, a1, a2, a3) = Quads<TB>(src, 0, lds);
        var (b0, b1, b2, b3) = Quads<TB>(src, 4 * (nint)lds, lds);
        var (c0, c1, c2, c3) = Quads<TB>(src, 8 * (nint)lds, lds);
        var (d0, d1, d2, d3) = Quads<TB>(src, 12 * (nint)lds, lds);
        Lanes(a0, b0, c0, d0, dst, ldd);
        Lanes(a1, b1, c1, d1, dst + ldd, ldd);
        Lanes(a2, b2, c2, d2, dst + 2 * (nint)ldd, ldd);
        Lanes(a3, b3, c3, d3, dst + 3 * (nint)ldd, ldd);
    }

    /// <summary>Four rows (from element <paramref name="first"/> on) transposed within each 128-bit lane: result x
    /// holds columns x, x+4, x+8, x+12.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static (Vector512<float>, Vector512<float>, Vector512<float>, Vector512<float>) Quads<TB>(nint src,
        nint first, int lds) where TB : struct, IElements
    {
        var r0 = TB.Load512(src, first);
        var r1 = TB.Load512(src, first + lds);
        var r2 = TB.Load512(src, first + 2 * (nint)lds);
        var r3 = TB.Load512(src, first + 3 * (nint)lds);
        var t0 = Avx512F.UnpackLow(r0, r1);
        var t1 = Avx512F.UnpackHigh(r0, r1);
        var t2 = Avx512F.UnpackLow(r2, r3);
        var t3 = Avx512F.UnpackHigh(r2, r3);
        return (Avx512F.Shuffle(t0, t2, 0x44), Avx512F.Shuffle(t0, t2, 0xEE), Avx512F.Shuffle(t1, t3, 0x44),
            Avx512F.Shuffle(t1, t3, 0xEE));
    }

    /// <summary>
    /// Columns x, x+4, x+8, x+12 of all sixteen rows from the four groups' lane-transposed vectors: lanes 0 and 2, then
    /// 1 and 3, of groups a–b and of groups c–d, then lane pairs across both.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Lanes(Vector512<float> a, Vector512<float> b, Vector512<float> c, Vector512<float> d,
        float* dst, int ldd)
    {
        var u0 = Avx512F.Shuffle4x128(a, b, 0x88);
        var u1 = Avx512F.Shuffle4x128(a, b, 0xDD);
        var v0 = Avx512F.Shuffle4x128(c, d, 0x88);
        var v1 = Avx512F.Shuffle4x128(c, d, 0xDD);
        Vector512.Store(Avx512F.Shuffle4x128(u0, v0, 0x88), dst);
        Vector512.Store(Avx512F.Shuffle4x128(u1, v1, 0x88), dst + 4 * (nint)ldd);
        Vector512.Store(Avx512F.Shuffle4x128(u0, v0, 0xDD), dst + 8 * (nint)ldd);
        Vector512.Store(Avx512F.Shuffle4x128(u1, v1, 0xDD), dst + 12 * (nint)ldd);
    }

    /// <summary>dst[x·ldd + y] = src[y·lds + x] for an 8×8 tile of <typeparamref name="TB"/> elements, widened as
    /// each row loads (24 shuffles); element copies without AVX.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Transpose8<TB>(nint src, int lds, float* dst, int ldd) where TB : struct, IElements
    {
        if (!Avx.IsSupported)
        {
            TransposeScalar<TB>(src, lds, dst, ldd, 8);
            return;
        }
        var r0 = TB.Load256(src, 0);
        var r1 = TB.Load256(src, lds);
        var r2 = TB.Load256(src, 2 * (nint)lds);
        var r3 = TB.Load256(src, 3 * (nint)lds);
        var r4 = TB.Load256(src, 4 * (nint)lds);
        var r5 = TB.Load256(src, 5 * (nint)lds);
        var r6 = TB.Load256(src, 6 * (nint)lds);
        var r7 = TB.Load256(src, 7 * (nint)lds);
        var t0 = Avx.UnpackLow(r0, r1);
        var t1 = Avx.UnpackHigh(r0, r1);
        var t2 = Avx.UnpackLow(r2, r3);
        var t3 = Avx.UnpackHigh(r2, r3);
        var t4 = Avx.UnpackLow(r4, r5);
        var t5 = Avx.UnpackHigh(r4, r5);
        var t6 = Avx.UnpackLow(r6, r7);
        var t7 = Avx.UnpackHigh(r6, r7);
        // Columns x and x+4 of rows 0–3 (q0–q3) and of rows 4–7 (q4–q7), one per 128-bit lane.
        var q0 = Avx.Shuffle(t0, t2, 0x44);
        var q1 = Avx.Shuffle(t0, t2, 0xEE);
        var q2 = Avx.Shuffle(t1, t3, 0x44);
        var q3 = Avx.Shuffle(t1, t3, 0xEE);
        var q4 = Avx.Shuffle(t4, t6, 0x44);
        var q5 = Avx.Shuffle(t4, t6, 0xEE);
        var q6 = Avx.Shuffle(t5, t7, 0x44);
        var q7 = Avx.Shuffle(t5, t7, 0xEE);
        Vector256.Store(Avx.Permute2x128(q0, q4, 0x20), dst);
        Vector256.Store(Avx.Permute2x128(q1, q5, 0x20), dst + ldd);
        Vector256.Store(Avx.Permute2x128(q2, q6, 0x20), dst + 2 * ldd);
        Vector256.Store(Avx.Permute2x128(q3, q7, 0x20), dst + 3 * ldd);
        Vector256.Store(Avx.Permute2x128(q0, q4, 0x31), dst + 4 * ldd);
        Vector256.Store(Avx.Permute2x128(q1, q5, 0x31), dst + 5 * ldd);
        Vector256.Store(Avx.Permute2x128(q2, q6, 0x31), dst + 6 * ldd);
        Vector256.Store(Avx.Permute2x128(q3, q7, 0x31), dst + 7 * ldd);
    }

    private static void TransposeScalar<TB>(nint src, int lds, float* dst, int ldd, int size)
        where TB : struct, IElements
    {
        for (var y = 0; y < size; y++)
        {
            for (var x = 0; x < size; x++)
                dst[(nint)x * ldd + y] = TB.Load(src, (nint)y * lds + x);
        }
    }

    /// <summary>
    /// dst[0 … count) = <paramref name="count"/> elements of type <paramref name="dtype"/> from
    /// <paramref name="src"/>, widened to fp32 with the vectors of <paramref name="path"/> (scalar conversions past
    /// the last whole vector, and on the scalar path).
    /// </summary>
    internal static void Widen(nint src, TensorDType dtype, float* dst, int count, HostGemmPath path)
    {
        switch (dtype)
        {
            case TensorDType.BFloat16:
                Widen<BFloat16Elements>(src, dst, count, path);
                break;
            case TensorDType.Float16:
                Widen<HalfElements>(src, dst, count, path);
                break;
            default:
                Widen<Float32Elements>(src, dst, count, path);
                break;
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Widen<T>(nint src, float* dst, int count, HostGemmPath path) where T : struct, IElements
    {
        var i = 0;
        if (path == HostGemmPath.Vector512)
        {
            for (; i + 16 <= count; i += 16)
                Vector512.Store(T.Load512(src, i), dst + i);
        }
        else if (path == HostGemmPath.Vector256)
        {
            for (; i + 8 <= count; i += 8)
                Vector256.Store(T.Load256(src, i), dst + i);
        }
        for (; i < count; i++)
            dst[i] = T.Load(src, i);
    }

    /// <summary>Element <paramref name="index"/> of <paramref name="dtype"/> storage at <paramref name="src"/>, as
    /// fp32.</summary>
    private static float Element(nint src, TensorDType dtype, nint index) => dtype switch
    {
        TensorDType.BFloat16 => BFloat16Elements.Load(src, index),
        TensorDType.Float16 => HalfElements.Load(src, index),
        _ => Float32Elements.Load(src, index),
    };

    /// <summary>A pinned per-thread scratch buffer of at least <paramref name="length"/> floats, grown on demand.</summary>
    internal static float* Buffer(ref float[]? cache, int length)
    {
        // Pinned, so the pointer stays valid without a fixed block; kept per thread so steady-state calls allocate
        // nothing.
        if (cache is null || cache.Length < length)
            cache = GC.AllocateUninitializedArray<float>(length, pinned: true);
        return Pointer(cache);
    }

    private static float* Pointer(float[] pinned) =>
        (float*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(pinned));

    private static int RoundUp(int value, int multiple) => (value + multiple - 1) / multiple * multiple;
}
