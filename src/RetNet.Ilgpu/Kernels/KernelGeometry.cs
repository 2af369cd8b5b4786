using ILGPU;
using RetNet.Ilgpu.Attention;
using RetNet.Ilgpu.Devices;
using RetNet.Ilgpu.Kernels.CrossEntropy;
using RetNet.Ilgpu.Kernels.Gemm;
using RetNet.Ilgpu.Kernels.Normalization;
using RetNet.Ilgpu.Kernels.Reductions;
using RetNet.Ilgpu.Retention;

namespace RetNet.Ilgpu.Kernels;

/// <summary>The group shape one kernel is launched with on a device.</summary>
/// <param name="ThreadsPerGroup">Threads per group of an explicitly grouped kernel; null for an implicitly grouped
/// one (the accelerator picks its group size when the kernel is loaded) and for an explicit kernel without a rule
/// here.</param>
/// <param name="DynamicSharedBytes">Dynamic shared memory requested per group, in bytes.</param>
/// <param name="Rule">Where the numbers come from, in words.</param>
internal sealed record KernelGeometry(int? ThreadsPerGroup, int DynamicSharedBytes, string Rule)
{
    /// <summary>
    /// The geometry the launchers give <paramref name="kernel"/> on a device with <paramref name="limits"/>. Each case
    /// calls the rule its launcher calls, so the two cannot drift apart; an explicit kernel that no case knows gets a
    /// null thread count (the kernel report shows it as unknown and a test fails until a case is added).
    /// </summary>
    public static KernelGeometry For(KernelDescriptor kernel, LaunchLimits limits)
    {
        if (kernel.Grouping == KernelGrouping.Implicit)
            return new(null, 0, "implicit: the accelerator picks the group size when it loads the kernel");
        var method = kernel.Method;
        var type = method.DeclaringType!;
        var tile = method.IsGenericMethod ? method.GetGenericArguments()[0] : null;
        return (type.Name, method.Name) switch
        {
            (nameof(GemmKernels), nameof(GemmKernels.Tiled)) => Of(
                Gemm.Gemm.TiledConfig((IGemmTile)Activator.CreateInstance(tile!)!, new GemmShape(1, 1, 1, 1)),
                "Gemm.TiledConfig: one thread per 4×4 block of the tile"),
            (nameof(GemmKernels), nameof(GemmKernels.SmallRows)) => SmallRows(limits,
                tile == typeof(SubGroupSum) ? GroupReduction.SubGroups : GroupReduction.SharedMemoryTree),
            (nameof(RetentionKernels), nameof(RetentionKernels.CausalTiled) or nameof(RetentionKernels.StatesTiled)) =>
                new(RetentionLaunch.TiledGroupSize(limits.MaxGroupSize), 0, "RetentionLaunch.TiledGroupSize"),
            (nameof(AttentionKernels), nameof(AttentionKernels.ForwardTiled) or nameof(AttentionKernels.QueryGradientTiled)
                or nameof(AttentionKernels.KeyValueGradientTiled)) =>
                new(AttentionLaunch.TiledGroupSize(limits.MaxGroupSize), 0, "AttentionLaunch.TiledGroupSize"),
            (nameof(NormalizationKernels), nameof(NormalizationKernels.ForwardGroup)
                or nameof(NormalizationKernels.BackwardGroup)) => Normalization(limits, GroupReduction.SharedMemoryTree),
            (nameof(NormalizationKernels), nameof(NormalizationKernels.ForwardSubGroup)
                or nameof(NormalizationKernels.BackwardSubGroup)) => Normalization(limits, GroupReduction.SubGroups),
            (nameof(ReductionKernels), nameof(ReductionKernels.Reduce)) =>
                Reduction(limits, GroupReduction.SharedMemoryTree),
            (nameof(ReductionKernels), nameof(ReductionKernels.ReduceSubGroup)) =>
                Reduction(limits, GroupReduction.SubGroups),
            (nameof(CrossEntropyKernels), nameof(CrossEntropyKernels.RowPerGroup)) =>
                CrossEntropy(limits, GroupReduction.SharedMemoryTree),
            (nameof(CrossEntropyKernels), nameof(CrossEntropyKernels.RowPerSubGroups)) =>
                CrossEntropy(limits, GroupReduction.SubGroups),
            _ => new(null, 0, "unknown: no launch rule for this explicitly grouped kernel in KernelGeometry.For"),
        };
    }

    private static KernelGeometry Of(KernelConfig config, string rule) =>
        new(config.GroupDim.Size, config.SharedMemoryConfig.ArraySize, rule);

    // The row reductions come in a tree and a sub-group variant; the device policy launches one of them. The other
    // is reported with the shape its launcher would give it, and the rule says which one the policy picks.
    private static KernelGeometry Normalization(LaunchLimits limits, GroupReduction reduction) => Of(
        RowNormalization.GroupLaunch(1, NormalizationOptions.For(limits, int.MaxValue, reduction)),
        RuleOf("NormalizationOptions.For, long rows", limits, reduction));

    private static KernelGeometry SmallRows(LaunchLimits limits, GroupReduction reduction) => Of(
        SmallRowsLaunch.For(limits, int.MaxValue, reduction).Config(1, 1),
        RuleOf("SmallRowsLaunch.For, long rows of B", limits, reduction));

    private static KernelGeometry Reduction(LaunchLimits limits, GroupReduction reduction)
    {
        var launch = ReductionLaunch.For(limits, reduction);
        return new(launch.GroupSize, launch.SharedMemory.ArraySize, RuleOf("ReductionLaunch.For", limits, reduction));
    }

    private static KernelGeometry CrossEntropy(LaunchLimits limits, GroupReduction reduction)
    {
        var launch = CrossEntropyLaunch.For(limits, reduction);
        return new(launch.GroupSize, launch.SharedMemory.ArraySize,
            RuleOf("CrossEntropyLaunch.For", limits, reduction));
    }

    private static string RuleOf(string launcher, LaunchLimits limits, GroupReduction reduction) =>
        DevicePolicy.ReductionFor(limits) == reduction
            ? $"{launcher} ({reduction}: the device policy's reduction)"
            : $"{launcher} with {reduction} forced (the device policy picks {DevicePolicy.ReductionFor(limits)})";
}
