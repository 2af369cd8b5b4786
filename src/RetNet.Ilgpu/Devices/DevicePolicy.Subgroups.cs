using ILGPU.Runtime;
using ILGPU.Runtime.OpenCL;

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
    /// True when the device runs ILGPU's warp reductions. CUDA always does (PTX shuffles) and so does the CPU
    /// accelerator (it emulates warps of <see cref="Accelerator.WarpSize"/> threads). An OpenCL device does when it
    /// has cl_khr_subgroups or cl_intel_subgroups and ILGPU's probe kernel succeeded: ILGPU.Algorithms emits
    /// sub_group_reduce_add/max without enabling the extension, so a device without it would fail only when the
    /// OpenCL compiler builds the kernel.
    /// </summary>
    public bool SupportsSubGroups => Device.Accelerator switch
    {
        CLAccelerator cl => cl.Capabilities.SubGroups,
        _ => true,
    };

    /// <summary>
    /// The smallest OpenCL work-group the sub-group kernels are launched with. An OpenCL sub-group shrinks to a
    /// smaller work-group, so any size would be valid, but PoCL 6.0 fails to load a kernel that uses sub-group
    /// built-ins at local sizes 1 and 2 (dlopen: undefined symbol __pocl_work_group_alloca; measured here, 4 and up
    /// work). GPU sub-groups are 8 or more, so groups of 4 never matter for speed.
    /// </summary>
    public const int SmallestOpenClSubGroupLaunch = 4;

    /// <summary>
    /// The group sizes the sub-group variant accepts must be multiples of this. CUDA warps and the CPU accelerator's
    /// emulated warps are always full, so a group must hold whole warps; on OpenCL any power of two from
    /// <see cref="SmallestOpenClSubGroupLaunch"/> up (whole sub-groups, or one shrunk to the group).
    /// </summary>
    public int SubGroupGranularity =>
        Device.Accelerator is CLAccelerator ? SmallestOpenClSubGroupLaunch : Device.Accelerator.WarpSize;

    /// <summary>
    /// The reduction the row kernels (normalisations, cross-entropy) and whole-tensor reductions get: sub-groups where
    /// supported on a GPU or an OpenCL runtime, the shared-memory tree on the CPU accelerator (whose library path uses
    /// barrier-free kernels anyway), on OpenCL devices without sub-group support, and where no group within the
    /// device limit holds a whole sub-group.
    /// </summary>
    public GroupReduction Reduction =>
        Class != DeviceClass.CpuAccelerator && SupportsSubGroups &&
        ReductionGroupSize(GroupReduction.SubGroups, Device.Accelerator.WarpSize, Device.MaxGroupSize, 1) > 0
            ? GroupReduction.SubGroups
            : GroupReduction.SharedMemoryTree;

    /// <summary>The group size for a reduction over rows of <paramref name="rowLength"/> elements with
    /// <see cref="Reduction"/> (<see cref="ReductionGroupSize(GroupReduction, int, int, int)"/>).</summary>
    public int ReductionGroupSize(int rowLength) =>
        ReductionGroupSize(Reduction, Device.Accelerator.WarpSize, Device.MaxGroupSize, rowLength);

    /// <summary>
    /// The decision itself, a pure function so it can be tested for any device: the next power of two of the row
    /// length, at most <see cref="PreferredReductionGroup"/> and the device limit. The tree needs only a power of
    /// two. The sub-group variant also rounds up to a whole sub-group (so AMD's 64 gets 64–256, Intel's 8/16/32 and
    /// NVIDIA's 32 get 32–256), unless the reported sub-group is larger than any group it would prefer: PoCL's CPU
    /// device reports 4096 but makes each work-group one sub-group (measured up to 256), so there the group is
    /// sized to the row alone (at least <see cref="SmallestOpenClSubGroupLaunch"/>). Returns 0 for a report no group can hold (a sub-group above the device's group
    /// limit; then <see cref="Reduction"/> is the tree).
    /// </summary>
    /// <param name="reduction">The variant.</param>
    /// <param name="subGroupSize">The device's sub-group (warp) size as ILGPU reports it.</param>
    /// <param name="maxGroupSize">The device's most threads per group.</param>
    /// <param name="rowLength">Elements each group reduces (int.MaxValue for a whole-tensor reduction).</param>
    public static int ReductionGroupSize(GroupReduction reduction, int subGroupSize, int maxGroupSize, int rowLength)
    {
        var limit = Math.Min(PreferredReductionGroup, maxGroupSize);
        var size = 1;
        while (size < rowLength && size * 2 <= limit)
            size *= 2;
        if (reduction == GroupReduction.SharedMemoryTree)
            return size;
        if (subGroupSize < 1 || subGroupSize > maxGroupSize)
            return 0;
        if (subGroupSize > PreferredReductionGroup)
            return Math.Max(size, Math.Min(SmallestOpenClSubGroupLaunch, maxGroupSize));
        while (size < subGroupSize && size * 2 <= maxGroupSize)
            size *= 2;
        return size % subGroupSize == 0 ? size : 0;
    }
}
