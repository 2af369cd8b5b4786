namespace RetNet.Ilgpu.Kernels.Gemm;

/// <summary>
/// The output tile of one group of <see cref="GemmKernels.Tiled{TTile}"/>, fixed at compile time. Implementations are
/// empty structs whose properties return constants, so ILGPU folds them and sizes shared memory statically. Each
/// thread computes one 8×8 <see cref="RegisterBlock"/> of the BM×BN tile, so a group has BM/8 · BN/8 threads. Per
/// K-step a thread stages one or two quads (4 consecutive elements) of each operand: BM·BK and BK·BN must each be 4
/// or 8 times the thread count (<see cref="GemmTiles.QuadsA"/>, <see cref="GemmTiles.QuadsB"/>).
/// </summary>
internal interface IGemmTile : ILaunchBounds
{
    /// <summary>Rows of C per group (and rows of the shared A tile); a multiple of 8.</summary>
    int BM { get; }

    /// <summary>Columns of C per group (and columns of the shared B tile); a multiple of 8.</summary>
    int BN { get; }

    /// <summary>Depth of one K-step: columns of the shared A tile, rows of the shared B tile; a multiple of 4.</summary>
    int BK { get; }

    int ILaunchBounds.GroupSize => BM / RegisterBlock.Rows * (BN / RegisterBlock.Columns);
}

/// <summary>128×128 outputs per group, K-steps of 8: 256 threads, one quad of A and of B each per K-step.</summary>
internal readonly struct GemmTile128x128 : IGemmTile
{
    public int BM => 128;
    public int BN => 128;
    public int BK => 8;

    // Two groups per SM hold each thread to 65536 / 512 = 128 registers: 64 accumulators, 8 staged and 16 multiplied
    // operand values and the addresses fit without spilling (ptxas 11.8, sm_80 and sm_90).
    public int MinGroupsPerMultiprocessor => 2;
}

/// <summary>128×64 outputs per group, K-steps of 8: 128 threads.</summary>
internal readonly struct GemmTile128x64 : IGemmTile
{
    public int BM => 128;
    public int BN => 64;
    public int BK => 8;

    // Two staged quads of A take 4 registers more than 128 allows; three groups allow 170.
    public int MinGroupsPerMultiprocessor => 3;
}

/// <summary>64×64 outputs per group, K-steps of 8: 64 threads.</summary>
internal readonly struct GemmTile64x64 : IGemmTile
{
    public int BM => 64;
    public int BN => 64;
    public int BK => 8;

    // Two staged quads of A and of B: six groups allow 170 registers, which fit without spilling.
    public int MinGroupsPerMultiprocessor => 6;
}

/// <summary>32×32 outputs per group, K-steps of 4: 16 threads, the most ILGPU's CPU accelerator runs in one group.</summary>
internal readonly struct GemmTile32x32 : IGemmTile
{
    public int BM => 32;
    public int BN => 32;
    public int BK => 4;

    // A 16-thread group occupies a whole warp of registers: twelve groups allow 170 per thread.
    public int MinGroupsPerMultiprocessor => 12;
}

/// <summary>Host-side facts about tiles.</summary>
internal static class GemmTiles
{
    /// <summary>Every tile the library launches, largest group first.</summary>
    public static IReadOnlyList<IGemmTile> All { get; } =
        [new GemmTile128x128(), new GemmTile128x64(), new GemmTile64x64(), new GemmTile32x32()];

    /// <summary>Threads per group: one per 8×8 register block of the BM×BN output tile.</summary>
    public static int Threads(IGemmTile tile) => tile.GroupSize;

    /// <summary>Quads of A each thread stages per K-step (1 or 2).</summary>
    public static int QuadsA(IGemmTile tile) => tile.BM * tile.BK / (4 * Threads(tile));

    /// <summary>Quads of B each thread stages per K-step (1 or 2).</summary>
    public static int QuadsB(IGemmTile tile) => tile.BK * tile.BN / (4 * Threads(tile));

    /// <summary>Bytes of shared memory a group uses: two buffers of each padded operand tile.</summary>
    public static int SharedBytes(IGemmTile tile) =>
        2 * tile.BK * (tile.BM + GemmKernels.Padding + tile.BN + GemmKernels.Padding) * sizeof(float);

    /// <summary>The largest tile whose group fits <paramref name="maxGroupSize"/> threads.</summary>
    /// <exception cref="NotSupportedException">Not even the smallest tile fits.</exception>
    public static IGemmTile Largest(int maxGroupSize) =>
        All.FirstOrDefault(t => Threads(t) <= maxGroupSize)
        ?? throw new NotSupportedException(
            $"The tiled GEMM needs groups of at least {All.Min(Threads)} threads; the device allows {maxGroupSize}. " +
            "Use GemmVariant.Simple.");

    /// <summary>A readable name such as <c>128x128x8 (256 threads)</c>.</summary>
    public static string Describe(IGemmTile tile) => $"{tile.BM}x{tile.BN}x{tile.BK} ({Threads(tile)} threads)";
}
