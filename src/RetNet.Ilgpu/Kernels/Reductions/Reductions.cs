using System.Reflection;
using ILGPU;
using ILGPU.Runtime;
using RetNet.Ilgpu.Devices;
using RetNet.Ilgpu.Tensors;

namespace RetNet.Ilgpu.Kernels.Reductions;

/// <summary>
/// Whole-tensor reductions for gradient clipping and loss means: Σx, Σx² (also over a list of tensors, for the global
/// gradient norm) and max |x|. Deterministic: two passes (groups write partials, then one group reduces them) in an
/// order fixed by the launch shape, so the same input gives bit-identical results run to run. Accumulation is fp32 on
/// the device with Neumaier-compensated per-thread sums and pairwise trees, accurate to a few fp32 ulps even for 10⁷
/// elements. Results come back as the fp32 value the device computed (widening it would promise precision it lacks).
/// Every method waits for the queued work and the result.
/// </summary>
public static class Reductions
{
    /// <summary>Σ x over every element; 0 for an empty tensor. NaN or ±∞ elements make the result NaN or ±∞.</summary>
    public static float Sum(Tensor x)
    {
        ArgumentNullException.ThrowIfNull(x);
        return ToHost<SumReduction, SumReduction>([x], nameof(x));
    }

    /// <summary>Σ x² over every element; 0 for an empty tensor; +∞ on fp32 overflow; NaN when an element is NaN.</summary>
    public static float SumOfSquares(Tensor x)
    {
        ArgumentNullException.ThrowIfNull(x);
        return ToHost<SquareSumReduction, SumReduction>([x], nameof(x));
    }

    /// <summary>
    /// Σ x² over every element of every tensor (the squared global norm of a set of gradients, for clipping); 0 for an
    /// empty list. All tensors must live on one device. NaN in any element makes the result NaN.
    /// </summary>
    /// <exception cref="ArgumentException">The tensors live on different devices.</exception>
    public static float SumOfSquares(IReadOnlyList<Tensor> tensors)
    {
        ArgumentNullException.ThrowIfNull(tensors);
        return ToHost<SquareSumReduction, SumReduction>(tensors, nameof(tensors));
    }

    /// <summary>
    /// max |x| over every element; 0 for an empty tensor. NaN propagates: if any element is NaN the result is NaN (GPU
    /// max instructions would drop it), so a caller can detect a diverged gradient from this one value.
    /// </summary>
    public static float MaxAbs(Tensor x)
    {
        ArgumentNullException.ThrowIfNull(x);
        return ToHost<AbsMaxReduction, AbsMaxReduction>([x], nameof(x));
    }

    private static float ToHost<TFirst, TSecond>(IReadOnlyList<Tensor> inputs, string argument)
        where TFirst : struct, IReduction
        where TSecond : struct, IReduction
    {
        var device = DeviceOf(inputs, argument);
        if (device is null)
            return 0f;
        using var result = Tensor.Uninitialized(device, 1);
        Reduce<TFirst, TSecond>(inputs, argument, result, 1f, ReductionLaunch.For(device));
        return result.ToHost()[0];
    }

    /// <summary>
    /// result[0] = scale · reduce(all elements of <paramref name="inputs"/>): map and combine with
    /// <typeparamref name="TFirst"/>, then combine the partials with <typeparamref name="TSecond"/>, by the device's
    /// <see cref="ReductionBackend"/> (the kernels at <paramref name="launch"/>, checked on every backend). Returns when
    /// the result is written.
    /// </summary>
    internal static void Reduce<TFirst, TSecond>(IReadOnlyList<Tensor> inputs, string argument, Tensor result,
        float scale, ReductionLaunch launch)
        where TFirst : struct, IReduction
        where TSecond : struct, IReduction
    {
        var device = result.Device;
        ShapeCheck.Expect(result, nameof(result), 1);
        for (var k = 0; k < inputs.Count; k++)
        {
            ArgumentNullException.ThrowIfNull(inputs[k], $"{argument}[{k}]");
            ShapeCheck.SameDevice(device, $"{argument}[{k}]", inputs[k]);
            ShapeCheck.Distinct(result, nameof(result), inputs[k], $"{argument}[{k}]");
        }
        launch.Validate(device);
        device.Backend<ReductionBackend>().Reduce<TFirst, TSecond>(inputs, result, scale, launch);
    }

    private static RetNetDevice? DeviceOf(IReadOnlyList<Tensor> inputs, string argument)
    {
        for (var k = 0; k < inputs.Count; k++)
            ArgumentNullException.ThrowIfNull(inputs[k], $"{argument}[{k}]");
        return inputs.Count == 0 ? null : inputs[0].Device;
    }
}

/// <summary>
/// The whole-tensor reductions' seam (<see cref="Reductions.Reduce{TFirst, TSecond}"/>): the two-pass kernels on
/// tiled and barrier-free backends, fixed blocks of host code (<see cref="HostReductions"/>) on the host backend.
/// </summary>
internal abstract class ReductionBackend : IOperatorBackends<ReductionBackend>
{
    /// <summary>The implementation of each backend.</summary>
    static ReductionBackend IOperatorBackends<ReductionBackend>.For(DevicePolicy policy) =>
        policy.Backend == OperatorBackend.Host ? HostReductions.Instance : TwoPassKernels.Instance;

    /// <summary>
    /// result[0] = scale · reduce(all elements of <paramref name="inputs"/>), arguments checked. The kernels run at
    /// <paramref name="launch"/>; the host code ignores it (its blocks are fixed, so that no core count changes a bit).
    /// </summary>
    public abstract void Reduce<TFirst, TSecond>(IReadOnlyList<Tensor> inputs, Tensor result, float scale,
        ReductionLaunch launch)
        where TFirst : struct, IReduction
        where TSecond : struct, IReduction;

    /// <summary>
    /// The first pass (<c>TFirst</c>) writes one partial per group, each input into its own range of one buffer; the
    /// second (<c>TSecond</c>, which only combines) reduces all partials in one group. Waits for the stream before
    /// freeing the partials (not every backend defers the free until queued kernels finish).
    /// </summary>
    private sealed class TwoPassKernels : ReductionBackend
    {
        public static TwoPassKernels Instance { get; } = new();

        public override void Reduce<TFirst, TSecond>(IReadOnlyList<Tensor> inputs, Tensor result, float scale,
            ReductionLaunch launch)
        {
            var device = result.Device;
            var groupCounts = inputs.Select(t => launch.GroupsFor(t.Length)).ToArray();
            var partialCount = groupCounts.Sum();
            using var partials = Tensor.Uninitialized(device, Math.Max(partialCount, 1));
            var subGroups = launch.Reduction == GroupReduction.SubGroups;
            var first = subGroups
                ? device.Kernel(ReductionKernels.ReduceSubGroup<TFirst>, LoadReduceSubGroup<TFirst>)
                : device.Kernel(ReductionKernels.Reduce<TFirst>, LoadReduce<TFirst>);
            var second = subGroups
                ? device.Kernel(ReductionKernels.ReduceSubGroup<TSecond>, LoadReduceSubGroup<TSecond>)
                : device.Kernel(ReductionKernels.Reduce<TSecond>, LoadReduce<TSecond>);
            var shared = launch.SharedMemory;

            var offset = 0;
            for (var k = 0; k < inputs.Count; k++)
            {
                if (groupCounts[k] == 0)
                    continue;
                first(device.Stream, new KernelConfig(groupCounts[k], launch.GroupSize, shared),
                    inputs[k].ReadView, inputs[k].Length, partials.View.SubView(offset, groupCounts[k]), 1f);
                offset += groupCounts[k];
            }
            second(device.Stream, new KernelConfig(1, launch.GroupSize, shared),
                partials.View, partialCount, result.View, scale);
            device.Stream.Synchronize();
        }

        private static Action<AcceleratorStream, KernelConfig, ArrayView<float>, int, ArrayView<float>, float>
            LoadReduce<TOp>(Accelerator accelerator) where TOp : struct, IReduction =>
            accelerator.LoadKernel<ArrayView<float>, int, ArrayView<float>, float>(ReductionKernels.Reduce<TOp>);

        private static Action<AcceleratorStream, KernelConfig, ArrayView<float>, int, ArrayView<float>, float>
            LoadReduceSubGroup<TOp>(Accelerator accelerator) where TOp : struct, IReduction =>
            accelerator.LoadKernel<ArrayView<float>, int, ArrayView<float>, float>(ReductionKernels.ReduceSubGroup<TOp>);
    }
}

/// <summary>
/// The launch shape of a reduction: a power-of-two group size, the most groups of the first pass, and how a group
/// combines its threads. The summation order, hence the last bits of a sum, depends on all three; a fixed shape gives
/// bit-identical results.
/// </summary>
/// <param name="GroupSize">Threads per group, a power of two within the device limit.</param>
/// <param name="MaxGroups">The most groups of the first pass (≥ 1); larger inputs loop in each thread.</param>
/// <param name="Reduction">The shared-memory tree, or the two-level sub-group combine.</param>
internal readonly record struct ReductionLaunch(int GroupSize, int MaxGroups,
    GroupReduction Reduction = GroupReduction.SharedMemoryTree) : IKernelGeometryRule
{
    /// <summary>
    /// Up to 1024 groups of the size and with the combine the device policy picks for long rows, on real devices. On
    /// the CPU accelerator few tree groups: every group pays its own barrier rounds there, while the per-thread loop
    /// is cheap and compensated.
    /// </summary>
    public static ReductionLaunch For(RetNetDevice device) => For(device.Limits);

    /// <summary>The shape <see cref="For(RetNetDevice)"/> gives a device with <paramref name="limits"/>: the combine
    /// <see cref="DevicePolicy.ReductionFor"/> picks.</summary>
    public static ReductionLaunch For(LaunchLimits limits) => For(limits, DevicePolicy.ReductionFor(limits));

    /// <summary>
    /// The shape a device with <paramref name="limits"/> gets with <paramref name="reduction"/>: the policy's group for
    /// long rows and up to 1024 groups; on the CPU accelerator the tree in few small groups. Lets the kernel report
    /// give the variant the policy does not pick the shape it would be launched with.
    /// </summary>
    public static ReductionLaunch For(LaunchLimits limits, GroupReduction reduction) =>
        limits.IsCpuAccelerator && reduction == GroupReduction.SharedMemoryTree
            ? new(Launch.PowerOfTwoGroup(limits.MaxGroupSize, 16), 8)
            : new(DevicePolicy.ReductionGroupSize(limits, reduction, int.MaxValue), 1024, reduction);

    /// <summary>The dynamic shared memory of both passes: one float per thread, the tree's nodes or (more than
    /// enough) the sub-group variant's per-sub-group slots.</summary>
    public SharedMemoryConfig SharedMemory => SharedMemoryConfig.RequestDynamic<float>(GroupSize);

    /// <summary>First-pass groups for <paramref name="length"/> elements: one element per thread at least, at most
    /// <see cref="MaxGroups"/>; none for an empty input.</summary>
    public int GroupsFor(int length) =>
        (int)Math.Min(MaxGroups, ((long)length + GroupSize - 1) / GroupSize);

    /// <summary>Rejects a shape the chosen combine cannot run with.</summary>
    public void Validate(RetNetDevice device)
    {
        SubGroupLaunch.ValidateGroup(device, GroupSize, Reduction == GroupReduction.SubGroups, nameof(GroupSize));
        if (MaxGroups < 1)
            throw new ArgumentOutOfRangeException(nameof(MaxGroups), MaxGroups, "Expected at least one group.");
    }

    /// <summary>The kernel report's rule for the reduction kernels: <see cref="For(LaunchLimits, GroupReduction)"/>
    /// with the kernel's reduction.</summary>
    KernelGeometry IKernelGeometryRule.For(MethodInfo kernel, LaunchLimits limits)
    {
        var launch = For(limits, KernelGeometry.ReductionOf(kernel, nameof(ReductionKernels.ReduceSubGroup)));
        return KernelGeometry.Of(launch.GroupSize, launch.SharedMemory, "ReductionLaunch.For", limits, launch.Reduction);
    }
}
