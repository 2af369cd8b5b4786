namespace RetNet.Ilgpu.Devices;

/// <summary>The GEMM decisions: which tile the tiled kernel uses on each device class, and when products of a few
/// rows go to the small-row kernel instead.</summary>
internal sealed partial class DevicePolicy
{
    /// <summary>Threads per group the tiled GEMM may use on this device (<see cref="GemmGroupSizeFor"/>).</summary>
    public int GemmGroupSize => GemmGroupSizeFor(Class, Device.Description.IsGpu, Device.MaxGroupSize);

    /// <summary>
    /// Threads per group the tiled GEMM may use on a device of class <paramref name="deviceClass"/> whose groups hold
    /// at most <paramref name="maxGroupSize"/> threads: the class's preference, or the device's limit when that is
    /// smaller. The GEMM launches its largest tile whose group fits (one thread per 8×8 block of the output tile:
    /// 256 threads for 128×128, 128 for 128×64, 64 for 64×64, 16 for 32×32).
    /// </summary>
    public static int GemmGroupSizeFor(DeviceClass deviceClass, bool isGpu, int maxGroupSize)
    {
        var preferred = deviceClass switch
        {
            // The 128×128 tile: 256 threads within 128 registers each, two groups (16 warps) per SM, 64 fused
            // multiply-adds per four 16-byte shared-memory loads.
            DeviceClass.NvidiaGpu => 256,
            // The 128×128 tile: four 64-wide wavefronts; the same arithmetic per shared-memory load as on NVIDIA.
            DeviceClass.AmdGpu => 256,
            // The 64×64 tile: Intel's compiler maps work-items to SIMD lanes and spills large per-lane register blocks
            // at SIMD16 and wider; a smaller group leaves it room to choose SIMD8.
            DeviceClass.IntelGpu => 64,
            // The 32×32 tile: the simulator stops at 16 threads a group (Auto runs the host GEMM on the CPU
            // accelerator anyway).
            DeviceClass.CpuAccelerator => 16,
            // An OpenCL CPU runtime (PoCL) keeps every value that lives across a barrier in memory, a slot per
            // work-item: 64 work-items' accumulators (16 KB, the 64×64 tile) stay in the L1 cache, 256 work-items' do
            // not, and the 128×128 tile ran 7.6× slower than the 64×64 one there (docs/BENCHMARKS.md).
            _ => isGpu ? 256 : 64,
        };
        return Math.Min(preferred, maxGroupSize);
    }

    /// <summary>
    /// The largest group the small-row GEMM asks for on an OpenCL CPU device (PoCL), which runs a work-group's
    /// work-items as a loop on one core: small groups leave more groups to spread over the cores, as for the row
    /// reductions (<see cref="PreferredOpenClCpuReductionGroup"/>).
    /// </summary>
    public const int PreferredOpenClCpuSmallRowGroup = 16;

    /// <summary>True when the GEMM's automatic choice sends products of a few rows (at most 8) against a k-contiguous B
    /// to the small-row kernel on this device
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
