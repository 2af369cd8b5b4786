using ILGPU;

namespace RetNet.Ilgpu.Kernels.Gemm;

/// <summary>The scalars of one GEMM launch, passed to a kernel as a single argument.</summary>
internal readonly struct GemmArguments
{
    public GemmArguments(GemmShape shape, float alpha, float beta)
    {
        Batch = shape.Batch;
        M = shape.M;
        N = shape.N;
        K = shape.K;
        BatchStrideA = shape.BatchStrideA;
        BatchStrideB = shape.BatchStrideB;
        BatchStrideC = shape.BatchStrideC;
        (StrideAM, StrideAK) = shape.TransposeA ? (1, shape.M) : (shape.K, 1);
        (StrideBK, StrideBN) = shape.TransposeB ? (1, shape.K) : (shape.N, 1);
        TransposeA = shape.TransposeA ? 1 : 0;
        TransposeB = shape.TransposeB ? 1 : 0;
        Alpha = alpha;
        Beta = beta;
    }

    public readonly int Batch;
    public readonly int M;
    public readonly int N;
    public readonly int K;
    public readonly int BatchStrideA;
    public readonly int BatchStrideB;
    public readonly int BatchStrideC;

    // op(A)[m, k] = A[m·StrideAM + k·StrideAK] and op(B)[k, n] = B[k·StrideBK + n·StrideBN]: a transposition is only
    // a choice of strides.
    public readonly int StrideAM;
    public readonly int StrideAK;
    public readonly int StrideBK;
    public readonly int StrideBN;

    // 0 or 1 rather than bool, so the argument's layout is plain 32-bit words on every backend. The tiled kernel
    // needs them to decide which tile dimension consecutive threads walk.
    public readonly int TransposeA;
    public readonly int TransposeB;

    public readonly float Alpha;
    public readonly float Beta;
}

/// <summary>
/// GEMM kernels, C = alpha·op(A)·op(B) + beta·C over a batch, fp32 accumulation. When beta is 0, C is never read,
/// so an uninitialised output (even NaN) does not leak into the result.
/// </summary>
internal static class GemmKernels
{
    /// <summary>
    /// One thread per element of C (index = (batch·M + m)·N + n, so consecutive threads write consecutive columns),
    /// each with the whole K loop. No shared memory and no barriers, so it is the faster kernel on ILGPU's CPU
    /// accelerator, where barriers cost ~0.1 ms a round (Auto picks the host SIMD GEMM there, not a kernel). A and B may
    /// be stored in 16 bits (widened as loaded).
    /// </summary>
    [Kernel(KernelGrouping.Implicit)]
    public static void Simple(Index1D index, FloatSource a, FloatSource b, ArrayView<float> c, GemmArguments args)
    {
        int i = index;
        var n = i % args.N;
        var rows = i / args.N;
        var m = rows % args.M;
        var p = rows / args.M;
        var ai = p * args.BatchStrideA + m * args.StrideAM;
        var bi = p * args.BatchStrideB + n * args.StrideBN;
        var sum = 0f;
        for (var k = 0; k < args.K; k++)
        {
            sum += a[ai] * b[bi];
            ai += args.StrideAK;
            bi += args.StrideBK;
        }
        c[i] = args.Beta == 0f ? args.Alpha * sum : args.Alpha * sum + args.Beta * c[i];
    }

    /// <summary>The most rows of C (per batch entry) <see cref="SmallRows{TSum}"/> computes: one register each.</summary>
    public const int MaxSmallRows = 8;

    /// <summary>
    /// The product of a few rows (at most <see cref="MaxSmallRows"/>, a decoding step's batch) against B stored
    /// [N, K] (a Linear layer's weight): one group per column n of C (grid x) and batch entry (grid y). The group's
    /// threads stride over k, so each step reads a contiguous run of B's row n once (2 bytes a weight when it is
    /// 16-bit) and the M rows of A, which every group reads and the caches hold; each thread keeps one partial sum per
    /// row in registers, and the group adds them with <typeparamref name="TSum"/>. The tiled kernel would pad M to
    /// its 128-row tile and do 128 times the arithmetic, so this one is bound by reading B instead. No atomics: the
    /// order of every sum is fixed by the launch. Any strides are correct; only B's k-contiguous layout is fast.
    /// One batch entry per group rather than a loop over the batch: PoCL 6 gave wrong sums, varying from run to run,
    /// at groups of 4 threads and more when the loop of group sums sat inside a batch loop (measured here).
    /// </summary>
    [Kernel(KernelGrouping.Explicit, Specializations = [typeof(TreeGroupSum), typeof(SubGroupSum)],
        Geometry = typeof(SmallRowsLaunch))]
    public static void SmallRows<TSum>(FloatSource a, FloatSource b, ArrayView<float> c, GemmArguments args)
        where TSum : struct, IGroupSum
    {
        var n = Grid.IdxX;
        var p = Grid.IdxY;
        var t = Group.IdxX;
        var size = Group.DimX;
        var rows = args.M;
        var sums = default(SmallRowSums);
        var indexA = (long)p * args.BatchStrideA + (long)t * args.StrideAK;
        var indexB = (long)p * args.BatchStrideB + (long)n * args.StrideBN + (long)t * args.StrideBK;
        var stepA = (long)size * args.StrideAK;
        var stepB = (long)size * args.StrideBK;
        for (var k = t; k < args.K; k += size)
        {
            sums.MultiplyAdd(a, indexA, args.StrideAM, rows, b[indexB]);
            indexA += stepA;
            indexB += stepB;
        }
        var indexC = p * args.BatchStrideC + n;
        for (var m = 0; m < rows; m++)
        {
            // Consecutive sums alternate regions, as the sub-group sum requires.
            var total = default(TSum).Sum(sums.Row(m), m & 1);
            if (t == 0)
            {
                var at = indexC + m * args.N;
                c[at] = args.Beta == 0f ? args.Alpha * total : args.Alpha * total + args.Beta * c[at];
            }
        }
    }

    /// <summary>
    /// Floats after each k-row of a shared tile. A multiple of 4 keeps every quad 16-byte aligned; 4 rather than 0
    /// moves the next k-row by 4 banks, so when an operand is staged k-contiguous (scalar stores down a column of the
    /// tile) the two halves of a warp store to different banks.
    /// </summary>
    internal const int Padding = 4;

    /// <summary>
    /// One group per BM×BN tile of C (grid x over row tiles, y over column tiles, z strides over the batch); each
    /// thread accumulates an 8×8 <see cref="RegisterBlock"/>. The operand tiles are double-buffered in shared memory,
    /// k-major: while the group multiplies one K-step out of one buffer, each thread fetches its quads of the next
    /// K-step from global memory into registers and stores them into the other buffer, so a K-step needs one barrier.
    /// Elements outside the matrices are staged as zeros. A and B may be stored in 16 bits: they are widened as they
    /// are fetched, so the shared tiles and the arithmetic are fp32.
    /// </summary>
    [Kernel(KernelGrouping.Explicit, Specializations =
        [typeof(GemmTile128x128), typeof(GemmTile128x64), typeof(GemmTile64x64), typeof(GemmTile32x32)],
        Geometry = typeof(TiledGemmGeometry))]
    public static void Tiled<TTile>(FloatSource a, FloatSource b, ArrayView<float> c, GemmArguments args)
        where TTile : struct, IGemmTile
    {
        var tile = default(TTile);
        var bm = tile.BM;
        var bn = tile.BN;
        var bk = tile.BK;
        // Allocated as quads so that every quad is 16-byte aligned; the scalar views share the storage.
        var quadsOfA = SharedMemory.Allocate<Float4>(2 * tile.BK * (tile.BM + Padding) / 4);
        var quadsOfB = SharedMemory.Allocate<Float4>(2 * tile.BK * (tile.BN + Padding) / 4);
        var scalarsOfA = quadsOfA.Cast<float>();
        var scalarsOfB = quadsOfB.Cast<float>();
        var tileA = new OperandTile(bm, bk, args.M, args.K, args.StrideAM, args.StrideAK, args.TransposeA == 0);
        var tileB = new OperandTile(bn, bk, args.N, args.K, args.StrideBN, args.StrideBK, args.TransposeB != 0);

        var threadsN = bn / RegisterBlock.Columns;
        var threads = bm / RegisterBlock.Rows * threadsN;
        var twoQuadsA = bm * bk == 8 * threads;
        var twoQuadsB = bk * bn == 8 * threads;
        var tid = Group.IdxX;
        var tx = tid % threadsN;
        var ty = tid / threadsN;
        var row0 = Grid.IdxX * bm;
        var col0 = Grid.IdxY * bn;
        var firstBatch = Grid.IdxZ;
        var batchStep = Grid.DimZ;
        // The quads this thread stages: quad tid, and quad tid + threads when the tile has two per thread.
        var a0 = tileA.QuadOrigin(tid);
        var a1 = tileA.QuadOrigin(tid + threads);
        var b0 = tileB.QuadOrigin(tid);
        var b1 = tileB.QuadOrigin(tid + threads);
        // A thread's block is rows ty·4.. and BM/2 + ty·4.., columns tx·4.. and BN/2 + tx·4.. of the tile: in the
        // k-major tiles those are quads ty and ty + BM/8 of a k-row of A, tx and tx + BN/8 of a k-row of B.
        var quadRowA = (bm + Padding) / 4;
        var quadRowB = (bn + Padding) / 4;
        var quadBufferA = bk * quadRowA;
        var quadBufferB = bk * quadRowB;

        for (var p = firstBatch; p < args.Batch; p += batchStep)
        {
            var baseA = p * args.BatchStrideA;
            var baseB = p * args.BatchStrideB;
            var block = default(RegisterBlock);

            var stagedA0 = tileA.Load(a, baseA, row0, 0, a0);
            var stagedA1 = twoQuadsA ? tileA.Load(a, baseA, row0, 0, a1) : default;
            var stagedB0 = tileB.Load(b, baseB, col0, 0, b0);
            var stagedB1 = twoQuadsB ? tileB.Load(b, baseB, col0, 0, b1) : default;
            tileA.Store(quadsOfA, scalarsOfA, 0, a0, stagedA0);
            if (twoQuadsA)
                tileA.Store(quadsOfA, scalarsOfA, 0, a1, stagedA1);
            tileB.Store(quadsOfB, scalarsOfB, 0, b0, stagedB0);
            if (twoQuadsB)
                tileB.Store(quadsOfB, scalarsOfB, 0, b1, stagedB1);
            Group.Barrier();

            var buffer = 0;
            for (var k0 = 0; k0 < args.K; k0 += bk)
            {
                var next = k0 + bk;
                var more = next < args.K;
                if (more)
                {
                    stagedA0 = tileA.Load(a, baseA, row0, next, a0);
                    if (twoQuadsA)
                        stagedA1 = tileA.Load(a, baseA, row0, next, a1);
                    stagedB0 = tileB.Load(b, baseB, col0, next, b0);
                    if (twoQuadsB)
                        stagedB1 = tileB.Load(b, baseB, col0, next, b1);
                }

                var ai = buffer * quadBufferA + ty;
                var bi = buffer * quadBufferB + tx;
                for (var kk = 0; kk < bk; kk++)
                {
                    block.MultiplyAdd(quadsOfA[ai], quadsOfA[ai + bm / 8], quadsOfB[bi], quadsOfB[bi + bn / 8]);
                    ai += quadRowA;
                    bi += quadRowB;
                }

                // The other buffer was last read before the previous barrier, so it is free to overwrite.
                buffer ^= 1;
                if (more)
                {
                    tileA.Store(quadsOfA, scalarsOfA, buffer * quadBufferA, a0, stagedA0);
                    if (twoQuadsA)
                        tileA.Store(quadsOfA, scalarsOfA, buffer * quadBufferA, a1, stagedA1);
                    tileB.Store(quadsOfB, scalarsOfB, buffer * quadBufferB, b0, stagedB0);
                    if (twoQuadsB)
                        tileB.Store(quadsOfB, scalarsOfB, buffer * quadBufferB, b1, stagedB1);
                }
                Group.Barrier();
            }

            block.Store(c, new GemmOutput(p * args.BatchStrideC, row0 + ty * 4, row0 + bm / 2 + ty * 4,
                col0 + tx * 4, col0 + bn / 2 + tx * 4, args));
        }
    }
}

/// <summary>
/// How one operand maps onto its k-major shared tile of <see cref="Width"/> × <see cref="Depth"/> (BM × BK for op(A),
/// BN × BK for op(B); "w" is m for A and n for B). Threads stage quads of 4 elements that are consecutive in global
/// memory: along k when the operand is stored k-contiguous (A as is, Bᵀ), along w otherwise (Aᵀ, B). Consecutive
/// threads take consecutive quads, so global loads are coalesced for every transposition.
/// </summary>
internal readonly struct OperandTile
{
    public OperandTile(int width, int depth, int extent, int k, int strideW, int strideK, bool kContiguous)
    {
        Width = width;
        Depth = depth;
        Extent = extent;
        K = k;
        StrideW = strideW;
        StrideK = strideK;
        KContiguous = kContiguous;
    }

    public readonly int Width;
    public readonly int Depth;
    public readonly int Extent;
    public readonly int K;
    public readonly int StrideW;
    public readonly int StrideK;
    public readonly bool KContiguous;

    /// <summary>Tile coordinates (w, k) of the first element of quad <paramref name="quad"/>.</summary>
    public (int W, int K) QuadOrigin(int quad) => KContiguous
        ? (quad / (Depth / 4), quad % (Depth / 4) * 4)
        : (quad % (Width / 4) * 4, quad / (Width / 4));

    /// <summary>
    /// The quad at <paramref name="origin"/> of the tile whose corner is (<paramref name="w0"/>, <paramref name="k0"/>)
    /// in the matrix starting at <paramref name="baseIndex"/>; elements outside the matrix read as 0.
    /// </summary>
    public Float4 Load(FloatSource source, int baseIndex, int w0, int k0, (int W, int K) origin)
    {
        var w = w0 + origin.W;
        var k = k0 + origin.K;
        var valid = KContiguous ? (w < Extent ? K - k : 0) : (k < K ? Extent - w : 0);
        var index = baseIndex + w * StrideW + k * StrideK;
        return new Float4(
            valid > 0 ? Element(source, index) : 0f,
            valid > 1 ? Element(source, index + 1) : 0f,
            valid > 2 ? Element(source, index + 2) : 0f,
            valid > 3 ? Element(source, index + 3) : 0f);
    }

    /// <summary>
    /// Writes a staged quad into the buffer starting at quad <paramref name="quadOffset"/>: one 16-byte store when it
    /// runs along w (a k-row of the tile), four scalar stores down a column when it runs along k.
    /// </summary>
    public void Store(ArrayView<Float4> quads, ArrayView<float> scalars, int quadOffset, (int W, int K) origin,
        Float4 value)
    {
        var row = Width + GemmKernels.Padding;
        if (KContiguous)
        {
            var at = quadOffset * 4 + origin.K * row + origin.W;
            scalars[at] = value.X;
            scalars[at + row] = value.Y;
            scalars[at + 2 * row] = value.Z;
            scalars[at + 3 * row] = value.W;
        }
        else
        {
            quads[quadOffset + (origin.K * row + origin.W) / 4] = value;
        }
    }

    // The one place an operand element is read from global memory: fp32, or fp16/bf16 widened as it loads (the
    // storage type is uniform across the launch, so every thread takes the same branch).
    private static float Element(FloatSource source, int index) => source[index];
}
