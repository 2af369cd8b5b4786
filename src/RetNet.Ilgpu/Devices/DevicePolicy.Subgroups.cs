namespace RetNet.Ilgpu.Devices;

/// <summary>How the threads of one group combine their per-thread values in the row and whole-tensor reductions.</summary>
internal enum GroupReduction
{
    /// <summary>A tree in shared memory: log2(G) halving steps, a barrier after each. Runs everywhere.</summary>
    SharedMemoryTree,

    /// <summary>
    /// Two levels: each sub-group (warp, wavefront) reduces with the hardware's sub-group built-in and no barrier,
    /// lane 0 writes one partial per sub-group to shared memory, one barrier, then the partials are reduced the same
    /// way. Needs sub-group operations: CUDA warp shuffles, or OpenCL's cl_khr_subgroups.
    /// </summary>
    SubGroups,
}

/// <summary>The reduction decisions: which <see cref="GroupReduction"/> a device gets and with which group size.</summary>
internal sealed partial class DevicePolicy
{
    /// <summary>
    /// The largest group the reductions ask for on a GPU: 8 NVIDIA warps, 4 AMD wavefronts, 8–32 Intel sub-groups, so
    /// a row of a few thousand elements still gives every thread several loads.
    /// </summary>
    public const int PreferredReductionGroup = 256;

    /// <summary>
    /// The largest reduction group on an OpenCL CPU device (PoCL): it runs a work-group's work-items as a loop on one
    /// core, so small groups leave more groups to spread over the cores. Measured on PoCL 6 here (2 cores): RMSNorm
    /// over 4096×1024 took 2.9 ms forward with tree groups of 16 against 8.0 ms with 256, 16384×64 1.6 ms against
    /// 18.9 ms; cross-entropy 512×8192 40 ms against 63 ms.
    /// </summary>
    public const int PreferredOpenClCpuReductionGroup = 16;

    /// <summary>True when the device runs ILGPU's warp reductions (<see cref="LaunchLimits.SupportsSubGroups"/>).</summary>
    public bool SupportsSubGroups => Device.Limits.SupportsSubGroups;

    /// <summary>
    /// The smallest OpenCL work-group the sub-group kernels are launched with. An OpenCL sub-group shrinks to a
    /// smaller work-group, so any size would be valid, but PoCL 6.0 fails to load a kernel that uses sub-group
    /// built-ins at local sizes 1 and 2 (dlopen: undefined symbol __pocl_work_group_alloca; measured here, 4 and up
    /// work). GPU sub-groups are 8 or more, so groups of 4 never matter for speed.
    /// </summary>
    public const int SmallestOpenClSubGroupLaunch = 4;

    /// <summary>The group sizes the sub-group variant accepts on this device must be multiples of this
    /// (<see cref="SubGroupGranularityFor"/>).</summary>
    public int SubGroupGranularity => SubGroupGranularityFor(Device.Limits);

    /// <summary>
    /// The group sizes the sub-group variant accepts must be multiples of this. CUDA warps and the CPU accelerator's
    /// emulated warps are always full, so a group must hold whole warps; on OpenCL any power of two from
    /// <see cref="SmallestOpenClSubGroupLaunch"/> up (whole sub-groups, or one shrunk to the group).
    /// </summary>
    public static int SubGroupGranularityFor(LaunchLimits limits) =>
        limits.HasFixedWarps ? limits.WarpSize : SmallestOpenClSubGroupLaunch;

    /// <summary>True for an OpenCL device that is a CPU (PoCL): GPU-shaped choices do not fit it.</summary>
    public bool IsOpenClCpu => Device.Limits.IsOpenClCpu;

    /// <summary>The reduction this device gets (<see cref="ReductionFor"/>).</summary>
    public GroupReduction Reduction => ReductionFor(Device.Limits);

    /// <summary>
    /// The reduction the row kernels (normalisations, cross-entropy) and whole-tensor reductions get on a device with
    /// <paramref name="limits"/>: sub-groups on GPUs that support them (CUDA; OpenCL with cl_khr_subgroups), the
    /// shared-memory tree elsewhere. On the CPU accelerator the library path uses barrier-free kernels anyway. On
    /// PoCL the sub-group variant is correct but not faster: a PoCL sub-group is the whole work-group, so its built-in
    /// is a group-wide reduction of its own (measured at groups of 16: RMSNorm forward 4.8 ms against the tree's
    /// 2.9 ms, cross-entropy 61 against 40).
    /// </summary>
    public static GroupReduction ReductionFor(LaunchLimits limits) =>
        !limits.IsCpuAccelerator && !limits.IsOpenClCpu && limits.SupportsSubGroups &&
        ReductionGroupSize(limits, GroupReduction.SubGroups, 1) > 0
            ? GroupReduction.SubGroups
            : GroupReduction.SharedMemoryTree;

    /// <summary>The group size for a reduction over rows of <paramref name="rowLength"/> elements with
    /// <see cref="Reduction"/> on this device.</summary>
    public int ReductionGroupSize(int rowLength) => ReductionGroupSize(Device.Limits, Reduction, rowLength);

    /// <summary>
    /// The group size for a reduction over rows of <paramref name="rowLength"/> elements with
    /// <paramref name="reduction"/> on a device with <paramref name="limits"/>
    /// (<see cref="ReductionGroupSize(GroupReduction, int, int, int, int)"/>), preferring
    /// <see cref="PreferredOpenClCpuReductionGroup"/> on an OpenCL CPU device and
    /// <see cref="PreferredReductionGroup"/> elsewhere.
    /// </summary>
    public static int ReductionGroupSize(LaunchLimits limits, GroupReduction reduction, int rowLength) =>
        ReductionGroupSize(reduction, limits.WarpSize, limits.MaxGroupSize, rowLength,
            limits.IsOpenClCpu ? PreferredOpenClCpuReductionGroup : PreferredReductionGroup);

    /// <summary>
    /// The decision itself, a pure function so it can be tested for any device: the next power of two of the row
    /// length, at most <paramref name="preferredGroup"/> and the device limit. The tree needs only a power of
    /// two. The sub-group variant also rounds up to a whole sub-group (so AMD's 64 gets 64–256, Intel's 8/16/32 and
    /// NVIDIA's 32 get 32–256), unless the reported sub-group is larger than any group it would prefer: PoCL's CPU
    /// device reports 4096 but makes each work-group one sub-group (measured up to 256), so there the group is
    /// sized to the row alone (at least <see cref="SmallestOpenClSubGroupLaunch"/>). Returns 0 for a report no group
    /// can hold (a sub-group above the device's group limit; then <see cref="ReductionFor"/> gives the tree).
    /// </summary>
    /// <param name="reduction">The variant.</param>
    /// <param name="subGroupSize">The device's sub-group (warp) size as ILGPU reports it.</param>
    /// <param name="maxGroupSize">The device's most threads per group.</param>
    /// <param name="rowLength">Elements each group reduces (int.MaxValue for a whole-tensor reduction).</param>
    /// <param name="preferredGroup">The largest group wanted, a power of two.</param>
    public static int ReductionGroupSize(GroupReduction reduction, int subGroupSize, int maxGroupSize, int rowLength,
        int preferredGroup)
    {
        var limit = Math.Min(preferredGroup, maxGroupSize);
        var size = 1;
        while (size < rowLength && size * 2 <= limit)
            size *= 2;
        if (reduction == GroupReduction.SharedMemoryTree)
            return size;
        if (subGroupSize < 1 || subGroupSize > maxGroupSize)
            return 0;
        if (subGroupSize > preferredGroup)
            return Math.Max(size, Math.Min(SmallestOpenClSubGroupLaunch, maxGroupSize));
        while (size < subGroupSize && size * 2 <= maxGroupSize)
            size *= 2;
        return size % subGroupSize == 0 ? size : 0;
    }
}
