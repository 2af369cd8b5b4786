namespace RetNet.Ilgpu.Kernels.Gemm;

/// <summary>
/// The output tile of one group of <see cref="GemmKernels.Tiled{TTile}"/>, fixed at compile time. Implementations are
/// empty structs whose properties return constants, so ILGPU folds them and sizes shared memory statically. Each
/// thread computes one <see cref="RegisterBlock"/> (4×4) of the BM×BN tile, so a group has BM/4 · BN/4 threads.
/// </summary>
internal interface IGemmTile
{
    /// <summary>Rows of C per group (and rows of the shared A tile); a multiple of <see cref="RegisterBlock.Rows"/>.</summary>
    int BM { get; }

    /// <summary>Columns of C per group (and columns of the shared B tile); a multiple of <see cref="RegisterBlock.Columns"/>.</summary>
    int BN { get; }

    /// <summary>Depth of one K-step: columns of the shared A tile, rows of the shared B tile.</summary>
    int BK { get; }
}

/// <summary>64×64 outputs per group: 256 threads. The GPU tile.</summary>
internal readonly struct GemmTile64x64 : IGemmTile
{
    public int BM => 64;
    public int BN => 64;
    public int BK => 16;
}

/// <summary>64×32 outputs per group: 128 threads, for devices whose groups stop below 256.</summary>
internal readonly struct GemmTile64x32 : IGemmTile
{
    public int BM => 64;
    public int BN => 32;
    public int BK => 16;
}

/// <summary>16×16 outputs per group: 16 threads, the most ILGPU's CPU accelerator runs in one group.</summary>
internal readonly struct GemmTile16x16 : IGemmTile
{
    public int BM => 16;
    public int BN => 16;
    public int BK => 16;
}

/// <summary>
/// One thread's 4×4 block of C. Sixteen named fields rather than an array: ILGPU 1.5.3 does not unroll loops, so an
/// array indexed by a loop counter would stay in (slow) local memory on CUDA, while fields accessed by name become
/// registers.
/// </summary>
internal struct RegisterBlock
{
    /// <summary>Rows of C one thread owns.</summary>
    public const int Rows = 4;

    /// <summary>Columns of C one thread owns.</summary>
    public const int Columns = 4;

    private float c00, c01, c02, c03, c10, c11, c12, c13, c20, c21, c22, c23, c30, c31, c32, c33;

    /// <summary>Adds the outer product of a column (a0..a3) of A and a row (b0..b3) of B.</summary>
    public void MultiplyAdd(float a0, float a1, float a2, float a3, float b0, float b1, float b2, float b3)
    {
        c00 += a0 * b0;
        c01 += a0 * b1;
        c02 += a0 * b2;
        c03 += a0 * b3;
        c10 += a1 * b0;
        c11 += a1 * b1;
        c12 += a1 * b2;
        c13 += a1 * b3;
        c20 += a2 * b0;
        c21 += a2 * b1;
        c22 += a2 * b2;
        c23 += a2 * b3;
        c30 += a3 * b0;
        c31 += a3 * b1;
        c32 += a3 * b2;
        c33 += a3 * b3;
    }

    /// <summary>Element (i, j); a chain of selects, used once per element when C is stored.</summary>
    public readonly float Get(int i, int j) => i switch
    {
        0 => Pick(j, c00, c01, c02, c03),
        1 => Pick(j, c10, c11, c12, c13),
        2 => Pick(j, c20, c21, c22, c23),
        _ => Pick(j, c30, c31, c32, c33),
    };

    private static float Pick(int j, float v0, float v1, float v2, float v3) => j switch
    {
        0 => v0,
        1 => v1,
        2 => v2,
        _ => v3,
    };
}

/// <summary>Host-side facts about tiles.</summary>
internal static class GemmTiles
{
    /// <summary>Every tile the library launches, largest group first (the order <see cref="Gemm"/> picks in).</summary>
    public static IReadOnlyList<IGemmTile> All { get; } = [new GemmTile64x64(), new GemmTile64x32(), new GemmTile16x16()];

    /// <summary>Threads per group: one per register block of the BM×BN output tile.</summary>
    public static int Threads(IGemmTile tile) => tile.BM / RegisterBlock.Rows * (tile.BN / RegisterBlock.Columns);

    /// <summary>The largest tile whose group fits <paramref name="maxGroupSize"/> threads.</summary>
    /// <exception cref="NotSupportedException">Not even the smallest tile fits.</exception>
    public static IGemmTile Largest(int maxGroupSize) =>
        All.FirstOrDefault(t => Threads(t) <= maxGroupSize)
        ?? throw new NotSupportedException(
            $"The tiled GEMM needs groups of at least {All.Min(Threads)} threads; the device allows {maxGroupSize}. " +
            "Use GemmVariant.Simple.");

    /// <summary>A readable name such as <c>64x64x16 (256 threads)</c>.</summary>
    public static string Describe(IGemmTile tile) => $"{tile.BM}x{tile.BN}x{tile.BK} ({Threads(tile)} threads)";
}
