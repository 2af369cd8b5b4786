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

    /// <summary>
    /// One group per BM×BN tile of C (grid x over row tiles, y over column tiles, z strides over the batch); each
    /// thread accumulates a 4×4 <see cref="RegisterBlock"/>. Per K-step the group stages a BM×BK tile of op(A) and a
    /// BK×BN tile of op(B) in shared memory, zero-filled outside the matrices, between two barriers.
    /// </summary>
    [Kernel(KernelGrouping.Explicit, Specializations = [typeof(GemmTile64x64), typeof(GemmTile64x32), typeof(GemmTile16x16)])]
    public static void Tiled<TTile>(ArrayView<float> a, ArrayView<float> b, ArrayView<float> c, GemmArguments args)
        where TTile : struct, IGemmTile
    {
        var tile = default(TTile);
        var bm = tile.BM;
        var bn = tile.BN;
        var bk = tile.BK;
        // Tiles are stored k-major with the leading dimension padded by one: when K is the contiguous dimension in
        // global memory, consecutive threads store consecutive k, which unpadded would all land in one bank.
        var lda = bm + 1;
        var ldb = bn + 1;
        var tileA = SharedMemory.Allocate<float>((tile.BM + 1) * tile.BK);
        var tileB = SharedMemory.Allocate<float>(tile.BK * (tile.BN + 1));

        var threadsM = bm / RegisterBlock.Rows;
        var threadsN = bn / RegisterBlock.Columns;
        var threads = threadsM * threadsN;
        var tid = Group.IdxX;
        // A thread owns rows ty + i·threadsM and columns tx + j·threadsN of the tile: neighbouring threads read
        // neighbouring shared-memory words and store neighbouring columns of C.
        var tx = tid % threadsN;
        var ty = tid / threadsN;
        var row0 = Grid.IdxX * bm;
        var col0 = Grid.IdxY * bn;
        var firstBatch = Grid.IdxZ;
        var batchStep = Grid.DimZ;
        var transposeA = args.TransposeA != 0;
        var transposeB = args.TransposeB != 0;

        for (var p = firstBatch; p < args.Batch; p += batchStep)
        {
            var baseA = p * args.BatchStrideA;
            var baseB = p * args.BatchStrideB;
            var baseC = p * args.BatchStrideC;
            var block = default(RegisterBlock);

            for (var k0 = 0; k0 < args.K; k0 += bk)
            {
                // Consecutive threads take consecutive elements along whichever dimension is contiguous in global
                // memory (k for A, m for Aᵀ; n for B, k for Bᵀ), so every load is coalesced.
                for (var e = tid; e < bm * bk; e += threads)
                {
                    var m = transposeA ? e % bm : e / bk;
                    var k = transposeA ? e / bm : e % bk;
                    var gm = row0 + m;
                    var gk = k0 + k;
                    tileA[k * lda + m] = gm < args.M && gk < args.K
                        ? a[baseA + gm * args.StrideAM + gk * args.StrideAK]
                        : 0f;
                }
                for (var e = tid; e < bk * bn; e += threads)
                {
                    var k = transposeB ? e % bk : e / bn;
                    var n = transposeB ? e / bk : e % bn;
                    var gk = k0 + k;
                    var gn = col0 + n;
                    tileB[k * ldb + n] = gk < args.K && gn < args.N
                        ? b[baseB + gk * args.StrideBK + gn * args.StrideBN]
                        : 0f;
                }
                Group.Barrier();

                for (var kk = 0; kk < bk; kk++)
                {
                    var ai = kk * lda + ty;
                    var bi = kk * ldb + tx;
                    block.MultiplyAdd(
                        tileA[ai], tileA[ai + threadsM], tileA[ai + 2 * threadsM], tileA[ai + 3 * threadsM],
                        tileB[bi], tileB[bi + threadsN], tileB[bi + 2 * threadsN], tileB[bi + 3 * threadsN]);
                }
                // The next K-step overwrites the tiles: wait until every thread has read them.
                Group.Barrier();
            }

            for (var i = 0; i < RegisterBlock.Rows; i++)
            {
                var gm = row0 + ty + i * threadsM;
                if (gm >= args.M)
                    continue;
                for (var j = 0; j < RegisterBlock.Columns; j++)
                {
                    var gn = col0 + tx + j * threadsN;
                    if (gn >= args.N)
                        continue;
                    var ci = baseC + gm * args.N + gn;
                    var sum = args.Alpha * block.Get(i, j);
                    c[ci] = args.Beta == 0f ? sum : sum + args.Beta * c[ci];
                }
            }
        }
    }
}
