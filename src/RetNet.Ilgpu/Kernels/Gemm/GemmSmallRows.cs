using System.Reflection;
using ILGPU;
using ILGPU.Runtime;
using RetNet.Ilgpu.Devices;

namespace RetNet.Ilgpu.Kernels.Gemm;

/// <summary>
/// One thread's partial sums of the small-row kernel, one per row of C, as <see cref="GemmKernels.MaxSmallRows"/>
/// named fields: ILGPU 1.5.3 does not turn an array indexed by a variable into registers, so an array would live in
/// local memory on CUDA, while fields accessed by name become registers.
/// </summary>
internal struct SmallRowSums
{
    public float S0, S1, S2, S3, S4, S5, S6, S7;

    /// <summary>
    /// Adds w·op(A)[m, k] to row m's sum for every row m &lt; <paramref name="rows"/>, reading op(A)[m, k] at
    /// <paramref name="index"/> + m·<paramref name="strideM"/>. The row count is uniform across the launch, so the
    /// guards are branches every thread takes the same way.
    /// </summary>
    public void MultiplyAdd(FloatSource a, long index, int strideM, int rows, float w)
    {
        S0 += a[index] * w;
        if (rows > 1)
            S1 += a[index + strideM] * w;
        if (rows > 2)
            S2 += a[index + 2L * strideM] * w;
        if (rows > 3)
            S3 += a[index + 3L * strideM] * w;
        if (rows > 4)
            S4 += a[index + 4L * strideM] * w;
        if (rows > 5)
            S5 += a[index + 5L * strideM] * w;
        if (rows > 6)
            S6 += a[index + 6L * strideM] * w;
        if (rows > 7)
            S7 += a[index + 7L * strideM] * w;
    }

    /// <summary>Row <paramref name="m"/>'s sum, picked by a chain of selects (a register, not an indexed array).</summary>
    public readonly float Row(int m) => m switch
    {
        0 => S0,
        1 => S1,
        2 => S2,
        3 => S3,
        4 => S4,
        5 => S5,
        6 => S6,
        _ => S7,
    };
}

/// <summary>
/// The launch of <see cref="GemmKernels.SmallRows{TSum}"/>: which group sum it reduces with and how many threads
/// share one column of C. Library calls use <see cref="For(RetNetDevice, int)"/>; tests pass every configuration.
/// </summary>
/// <param name="Reduction">The group sum: <see cref="TreeGroupSum"/> or <see cref="SubGroupSum"/>.</param>
/// <param name="GroupSize">Threads per group (a power of two), striding over K together.</param>
internal readonly record struct SmallRowsLaunch(GroupReduction Reduction, int GroupSize) : IKernelGeometryRule
{
    /// <summary>The most batch entries one launch takes (grid y; CUDA's limit). Larger batches take the tiled
    /// kernel.</summary>
    public const int MaxBatch = 65535;

    /// <summary>The launch the library uses on <paramref name="device"/> for an inner dimension of
    /// <paramref name="k"/> (the device policy's reduction, and its group size
    /// <see cref="DevicePolicy.SmallRowGemmGroupSize"/>).</summary>
    public static SmallRowsLaunch For(RetNetDevice device, int k) => For(device.Limits, k);

    /// <summary>The launch <see cref="For(RetNetDevice, int)"/> gives a device with <paramref name="limits"/>.</summary>
    public static SmallRowsLaunch For(LaunchLimits limits, int k) =>
        For(limits, k, DevicePolicy.ReductionFor(limits));

    /// <summary>The launch a device with <paramref name="limits"/> gets with <paramref name="reduction"/> forced, so
    /// the kernel report can give the variant the policy does not pick the shape it would be launched with.</summary>
    public static SmallRowsLaunch For(LaunchLimits limits, int k, GroupReduction reduction) =>
        new(reduction, DevicePolicy.SmallRowGemmGroupSize(limits, reduction, k));

    /// <summary>Grid x over the columns of C, y over the batch (at most <see cref="MaxBatch"/>), and the dynamic
    /// shared memory of the group sum.</summary>
    public KernelConfig Config(int columns, int batch) => new(
        new Index3D(columns, batch, 1), new Index3D(GroupSize, 1, 1),
        SharedMemoryConfig.RequestDynamic<float>(Reduction == GroupReduction.SubGroups
            ? SubGroupSum.SharedFloats(GroupSize)
            : TreeGroupSum.SharedFloats(GroupSize)));

    /// <summary>Rejects a group size that is not a power of two within the device limit, and a sub-group launch
    /// the device cannot run.</summary>
    /// <exception cref="ArgumentOutOfRangeException">The launch cannot run on <paramref name="device"/>.</exception>
    public void Validate(RetNetDevice device)
    {
        if (!Enum.IsDefined(Reduction))
            throw new ArgumentOutOfRangeException(nameof(Reduction), Reduction, "Expected SharedMemoryTree or SubGroups.");
        SubGroupLaunch.ValidateGroup(device, GroupSize, Reduction == GroupReduction.SubGroups, nameof(GroupSize));
    }

    /// <summary>The kernel report's rule for <see cref="GemmKernels.SmallRows{TSum}"/>: <see cref="For(LaunchLimits,
    /// int, GroupReduction)"/> for long rows of B, with the reduction of the kernel's group sum (its type argument).</summary>
    KernelGeometry IKernelGeometryRule.For(MethodInfo kernel, LaunchLimits limits)
    {
        var reduction = kernel.GetGenericArguments()[0] == typeof(SubGroupSum)
            ? GroupReduction.SubGroups
            : GroupReduction.SharedMemoryTree;
        return KernelGeometry.Of(For(limits, int.MaxValue, reduction).Config(1, 1),
            KernelGeometry.RuleOf("SmallRowsLaunch.For, long rows of B", limits, reduction));
    }
}
