using System.Reflection;
using ILGPU;
using ILGPU.Runtime;
using RetNet.Ilgpu.Devices;

namespace RetNet.Ilgpu.Kernels;

/// <summary>The group shape one kernel is launched with on a device.</summary>
/// <param name="ThreadsPerGroup">Threads per group of an explicitly grouped kernel; null for an implicitly grouped
/// one (the accelerator picks its group size when the kernel is loaded) and for an explicit kernel without a rule.</param>
/// <param name="DynamicSharedBytes">Dynamic shared memory requested per group, in bytes.</param>
/// <param name="Rule">Where the numbers come from, in words.</param>
internal sealed record KernelGeometry(int? ThreadsPerGroup, int DynamicSharedBytes, string Rule)
{
    /// <summary>
    /// The geometry the launchers give <paramref name="kernel"/> on a device with <paramref name="limits"/>: the rule
    /// its <see cref="KernelAttribute.Geometry"/> names, which each operator writes beside its launcher and which calls
    /// the launcher's own rule, so the two cannot drift apart. An explicit kernel without a rule gets a null thread
    /// count (the kernel report shows it as unknown and a test fails until one is named).
    /// </summary>
    public static KernelGeometry For(KernelDescriptor kernel, LaunchLimits limits)
    {
        if (kernel.Grouping == KernelGrouping.Implicit)
            return new(null, 0, "implicit: the accelerator picks the group size when it loads the kernel");
        var rule = kernel.Method.GetCustomAttribute<KernelAttribute>()?.Geometry;
        return rule is null
            ? new(null, 0, "unknown: the kernel's [Kernel] attribute names no Geometry rule")
            : ((IKernelGeometryRule)Activator.CreateInstance(rule)!).For(kernel.Method, limits);
    }

    /// <summary>The group size and dynamic shared memory of <paramref name="config"/>.</summary>
    public static KernelGeometry Of(KernelConfig config, string rule) =>
        new(config.GroupDim.Size, config.SharedMemoryConfig.ArraySize, rule);

    /// <summary>A group-reduction kernel's group size and dynamic shared memory, with <see cref="RuleOf"/>'s text.</summary>
    public static KernelGeometry Of(int groupSize, SharedMemoryConfig shared, string launcher, LaunchLimits limits,
        GroupReduction reduction) => new(groupSize, shared.ArraySize, RuleOf(launcher, limits, reduction));

    /// <summary>The reduction of a kernel that comes in a tree and a sub-group variant: sub-groups when
    /// <paramref name="kernel"/> is the one named <paramref name="subGroupVariant"/>.</summary>
    public static GroupReduction ReductionOf(MethodInfo kernel, string subGroupVariant) =>
        kernel.Name == subGroupVariant ? GroupReduction.SubGroups : GroupReduction.SharedMemoryTree;

    /// <summary>
    /// The rule text of a kernel that comes in a tree and a sub-group variant, of which the device policy launches
    /// one: the other is reported with the shape its launcher would give it, and the text says which one the policy
    /// picks.
    /// </summary>
    public static string RuleOf(string launcher, LaunchLimits limits, GroupReduction reduction) =>
        DevicePolicy.ReductionFor(limits) == reduction
            ? $"{launcher} ({reduction}: the device policy's reduction)"
            : $"{launcher} with {reduction} forced (the device policy picks {DevicePolicy.ReductionFor(limits)})";
}

/// <summary>
/// The launch rule of explicitly grouped kernels, for the kernel report: implemented by the operator that owns the
/// kernels, beside its launcher, and named by each kernel's <see cref="KernelAttribute.Geometry"/>, so the registry
/// and the report know no operator. A struct (the operator's launch shape itself, where it is one) or a class with a
/// parameterless constructor.
/// </summary>
internal interface IKernelGeometryRule
{
    /// <summary>The geometry the launcher gives <paramref name="kernel"/> (a closed method) on a device with
    /// <paramref name="limits"/>.</summary>
    KernelGeometry For(MethodInfo kernel, LaunchLimits limits);
}
