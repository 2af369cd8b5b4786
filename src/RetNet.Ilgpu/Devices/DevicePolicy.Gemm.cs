using RetNet.Ilgpu.Kernels.Gemm;

namespace RetNet.Ilgpu.Devices;

/// <summary>The GEMM decisions: which tile the tiled kernel uses on each device class, and when products of a few
/// rows go to the small-row kernel instead.</summary>
internal sealed partial class DevicePolicy
{
    /// <summary>The tile <see cref="Gemm"/>'s tiled variant launches on this device.</summary>
    public IGemmTile GemmTile => GemmTileFor(Class, Device.Description.IsGpu, Device.MaxGroupSize);

    /// <summary>
    /// The tile for a device of class <paramref name="deviceClass"/> whose groups hold at most
    /// <paramref name="maxGroupSize"/> threads: the class's preferred tile, or the largest that fits when the
    /// device's groups are smaller.
    /// </summary>
    /// <exception cref="NotSupportedException">Not even the smallest tile fits.</exception>
    public static IGemmTile GemmTileFor(DeviceClass deviceClass, bool isGpu, int maxGroupSize)
    {
        IGemmTile preferred = deviceClass switch
        {
            // 256 threads within 128 registers each: two groups (16 warps) per SM, 64 fused multiply-adds per four
            // 16-byte shared-memory loads.
            DeviceClass.NvidiaGpu => new GemmTile128x128(),
            // 256 threads are four 64-wide wavefronts; the same arithmetic per shared-memory load as on NVIDIA.
            DeviceClass.AmdGpu => new GemmTile128x128(),
            // Intel's compiler maps work-items to SIMD lanes and spills large per-lane register blocks at SIMD16 and
            // wider: a smaller group leaves it room to choose SIMD8.
            DeviceClass.IntelGpu => new GemmTile64x64(),
            // The simulator stops at 16 threads a group (Auto runs the host GEMM on the CPU accelerator anyway).
            DeviceClass.CpuAccelerator => new GemmTile32x32(),
            // An OpenCL CPU runtime (PoCL) keeps every value that lives across a barrier in memory, a slot per
            // work-item: 64 work-items' accumulators (16 KB) stay in the L1 cache, 256 work-items' do not, and the
            // 128×128 tile ran 7.6× slower than the 64×64 one there (docs/BENCHMARKS.md).
            _ => isGpu ? new GemmTile128x128() : new GemmTile64x64(),
        };
        return GemmTiles.Threads(preferred) <= maxGroupSize ? preferred : GemmTiles.Largest(maxGroupSize);
    }

    /// <summary>
    /// The largest group the small-row GEMM asks for on an OpenCL CPU device (PoCL), which runs a work-group's
    /// work-items as a loop on one core: small groups leave more groups to spread over the cores, as for the row
    /// reductions (<see cref="PreferredOpenClCpuReductionGroup"/>).
    /// </summary>
    public const int PreferredOpenClCpuSmallRowGroup = 16;

    /// <summary>True when <see cref="Gemm"/>'s automatic choice sends products of at most
    /// <see cref="GemmKernels.MaxSmallRows"/> rows against a k-contiguous B to the small-row kernel on this device
    /// (<see cref="UsesSmallRowGemmFor"/>).</summary>
    public bool UsesSmallRowGemm => UsesSmallRowGemmFor(Device.Limits);

    /// <summary>
    /// Every device except ILGPU's CPU accelerator. On GPUs and PoCL the tiled kernel pads a decoding step's few rows
    /// to its whole tile and becomes compute-bound at a tile-height fraction of its speed, while the small-row kernel
    /// reads each weight once. The CPU accelerator's automatic path is host code (or, on the simulator, the
    /// barrier-free kernel: the small-row kernel's group sums cost ~0.1 ms per barrier round there).
    /// </summary>
    public static bool UsesSmallRowGemmFor(LaunchLimits limits) => !limits.IsCpuAccelerator;

    /// <summary>
    /// Threads per group of the small-row GEMM for an inner dimension of <paramref name="k"/> with
    /// <paramref name="reduction"/>: the row reductions' rule (<see cref="ReductionGroupSize(GroupReduction, int,
    /// int, int, int)"/>), sized to K up to 256 threads on a GPU (several coalesced loads per thread for K of a few
    /// thousand, eight warps to hide the latency of each load) and up to
    /// <see cref="PreferredOpenClCpuSmallRowGroup"/> on an OpenCL CPU device.
    /// </summary>
    public static int SmallRowGemmGroupSize(LaunchLimits limits, GroupReduction reduction, int k) =>
        ReductionGroupSize(reduction, limits.WarpSize, limits.MaxGroupSize, k,
            limits.IsOpenClCpu ? PreferredOpenClCpuSmallRowGroup : PreferredReductionGroup);
}
