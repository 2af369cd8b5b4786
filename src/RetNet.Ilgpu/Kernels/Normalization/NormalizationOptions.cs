using System.Reflection;
using RetNet.Ilgpu.Devices;

namespace RetNet.Ilgpu.Kernels.Normalization;

/// <summary>How the row kernels of a normalisation are organised.</summary>
internal enum NormalizationForm
{
    /// <summary>One group per row, shared-memory tree reduction (the portable GPU form).</summary>
    GroupPerRow,

    /// <summary>One group per row, two-level reduction with sub-group built-ins and one barrier per sum (the form
    /// for devices with sub-group operations; see <see cref="GroupReduction.SubGroups"/>).</summary>
    SubGroupPerRow,

    /// <summary>One thread per row, no barriers (the CPU-simulator form, where a barrier round costs ~0.1 ms).</summary>
    ThreadPerRow,
}

/// <summary>
/// The launch configuration of a normalisation: the row-kernel form, its group size (a power of two, used by
/// the group-per-row forms) and the rows per chunk of the first pass of the weight and bias gradients. Library calls
/// use <see cref="For(RetNetDevice, int)"/>; tests pass every configuration explicitly.
/// </summary>
internal readonly record struct NormalizationOptions(NormalizationForm Form, int GroupSize, int ChunkRows)
    : IKernelGeometryRule
{
    /// <summary>
    /// Rows summed by one thread in the first gradient pass: C = ⌈R / 32⌉ chunks give C·D threads, plenty for the
    /// GPU, while the second pass reads only C values per column.
    /// </summary>
    public const int DefaultChunkRows = 32;

    /// <summary>
    /// The configuration the library launches for rows of <paramref name="dim"/> elements: the barrier-free form on
    /// the CPU simulator; elsewhere one group per row, with the reduction and group size the device policy picks
    /// (<see cref="DevicePolicy.ReductionGroupSize(LaunchLimits, GroupReduction, int)"/>: sized to the row up to 256
    /// threads).
    /// </summary>
    public static NormalizationOptions For(RetNetDevice device, int dim) => For(device.Limits, dim);

    /// <summary>The configuration <see cref="For(RetNetDevice, int)"/> gives a device with <paramref name="limits"/>:
    /// the reduction <see cref="DevicePolicy.ReductionFor"/> picks.</summary>
    public static NormalizationOptions For(LaunchLimits limits, int dim) => limits.IsCpuAccelerator
        ? new NormalizationOptions(NormalizationForm.ThreadPerRow, 1, DefaultChunkRows)
        : For(limits, dim, DevicePolicy.ReductionFor(limits));

    /// <summary>The group-per-row configuration a device with <paramref name="limits"/> gets for rows of
    /// <paramref name="dim"/> elements with <paramref name="reduction"/>. Lets the kernel report give the variant the
    /// policy does not pick the shape it would be launched with.</summary>
    public static NormalizationOptions For(LaunchLimits limits, int dim, GroupReduction reduction) => new(
        reduction == GroupReduction.SubGroups ? NormalizationForm.SubGroupPerRow : NormalizationForm.GroupPerRow,
        DevicePolicy.ReductionGroupSize(limits, reduction, dim), DefaultChunkRows);

    /// <summary>
    /// Rejects a group size that is not a power of two within the device limit, a sub-group form on a device without
    /// sub-group operations or with a group that is not a whole number of sub-groups, or chunks under one row.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">The configuration cannot be launched on <paramref name="device"/>.</exception>
    public void Validate(RetNetDevice device)
    {
        SubGroupLaunch.ValidateGroup(device, GroupSize, Form == NormalizationForm.SubGroupPerRow, nameof(GroupSize));
        if (ChunkRows < 1)
            throw new ArgumentOutOfRangeException(nameof(ChunkRows), ChunkRows, "Expected at least one row per chunk.");
    }

    /// <summary>The kernel report's rule for the group-per-row kernels: <see cref="For(LaunchLimits, int,
    /// GroupReduction)"/> for long rows, with the kernel's reduction.</summary>
    KernelGeometry IKernelGeometryRule.For(MethodInfo kernel, LaunchLimits limits)
    {
        var reduction = kernel.Name is nameof(NormalizationKernels.ForwardSubGroup)
            or nameof(NormalizationKernels.BackwardSubGroup)
            ? GroupReduction.SubGroups
            : GroupReduction.SharedMemoryTree;
        return KernelGeometry.Of(RowNormalization.GroupLaunch(1, For(limits, int.MaxValue, reduction)),
            KernelGeometry.RuleOf("NormalizationOptions.For, long rows", limits, reduction));
    }
}
