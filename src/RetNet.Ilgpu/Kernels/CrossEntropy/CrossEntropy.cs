using System.Reflection;
using ILGPU;
using ILGPU.Runtime;
using RetNet.Ilgpu.Devices;
using RetNet.Ilgpu.Kernels.Reductions;
using RetNet.Ilgpu.Tensors;

namespace RetNet.Ilgpu.Kernels.CrossEntropy;

/// <summary>
/// Softmax cross-entropy of logits [..., V] against class targets [...], forward and backward fused: the mean loss over
/// the rows whose target is not the ignore index, and dLogits = gradientScale · (softmax − onehot(target)) / count for
/// those rows, 0 for ignored rows. Numerically stable for any finite logits (row maximum subtracted, log-sum-exp), e.g.
/// ±1e4. When every row is ignored (count = 0) the loss is 0 and the gradient is all zeros, never NaN.
/// The targets are read back to the host and validated before anything is launched, so each call waits for the queued
/// work; the mean is reduced deterministically (per-row losses, then a fixed-order two-pass sum).
/// </summary>
public static class CrossEntropy
{
    /// <summary>The default ignore index (as in PyTorch): targets equal to it contribute neither loss nor gradient.</summary>
    public const int DefaultIgnoreIndex = -100;

    /// <summary>
    /// Computes the mean loss and writes its gradient. <paramref name="dLogits"/> may be <paramref name="logits"/>
    /// itself (in place, saving an N × V buffer) or a distinct tensor of the same shape.
    /// </summary>
    /// <param name="logits">Scores [..., V], finite.</param>
    /// <param name="targets">Classes [...] (the leading shape of <paramref name="logits"/>), each in [0, V) or equal to
    /// <paramref name="ignoreIndex"/>.</param>
    /// <param name="dLogits">Receives the gradient of <c>gradientScale · loss</c> with respect to the logits.</param>
    /// <param name="ignoreIndex">Target value of rows to skip (padding).</param>
    /// <param name="gradientScale">Factor applied to the gradient only (e.g. a loss-scaling or accumulation factor);
    /// the returned loss is unscaled.</param>
    /// <returns>The mean loss over non-ignored rows; 0 when every row is ignored.</returns>
    /// <exception cref="ArgumentException">Shapes disagree, <paramref name="dLogits"/> partially overlaps
    /// <paramref name="logits"/>, or a target is outside [0, V) and not the ignore index (the message names the
    /// position, the value and V).</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="gradientScale"/> is not finite.</exception>
    public static float ForwardBackward(Tensor logits, IndexTensor targets, Tensor dLogits,
        int ignoreIndex = DefaultIgnoreIndex, float gradientScale = 1f)
    {
        ArgumentNullException.ThrowIfNull(logits);
        using var loss = Tensor.Uninitialized(logits.Device, 1);
        Run(logits, targets, dLogits, loss, ignoreIndex, gradientScale, CrossEntropyLaunch.For(logits.Device));
        return loss.ToHost()[0];
    }

    /// <summary>
    /// Like <see cref="ForwardBackward(Tensor, IndexTensor, Tensor, int, float)"/> but writes the mean loss into the
    /// device tensor <paramref name="loss"/> [1] (for a training loop that keeps it on the device).
    /// </summary>
    /// <returns>The number of rows that count (targets not equal to the ignore index): the mean's divisor.</returns>
    /// <exception cref="ArgumentException">As the other overload, or <paramref name="loss"/> is not [1] or shares storage
    /// with the logits or the gradient.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="gradientScale"/> is not finite.</exception>
    public static int ForwardBackward(Tensor logits, IndexTensor targets, Tensor dLogits, Tensor loss,
        int ignoreIndex = DefaultIgnoreIndex, float gradientScale = 1f)
    {
        ArgumentNullException.ThrowIfNull(logits);
        return Run(logits, targets, dLogits, loss, ignoreIndex, gradientScale, CrossEntropyLaunch.For(logits.Device));
    }

    /// <summary>The operation with an explicit kernel form and group size, so tests can run every configuration.</summary>
    internal static int Run(Tensor logits, IndexTensor targets, Tensor dLogits, Tensor loss, int ignoreIndex,
        float gradientScale, CrossEntropyLaunch launch)
    {
        ArgumentNullException.ThrowIfNull(logits);
        ArgumentNullException.ThrowIfNull(targets);
        ArgumentNullException.ThrowIfNull(dLogits);
        ArgumentNullException.ThrowIfNull(loss);
        var device = logits.Device;
        ShapeCheck.SameDevice(device, nameof(targets), targets);
        ShapeCheck.SameDevice(device, nameof(dLogits), dLogits);
        ShapeCheck.SameDevice(device, nameof(loss), loss);
        if (logits.Rank == 0)
            throw new ArgumentException(
                $"Argument 'logits' has shape {ShapeCheck.Format(logits.Shape)}; expected [..., V] of rank ≥ 1.",
                nameof(logits));
        ShapeCheck.Expect(targets.Shape, nameof(targets), logits.ShapeArray[..^1]);
        ShapeCheck.Same(dLogits, nameof(dLogits), logits, nameof(logits));
        ShapeCheck.DistinctOrSame(dLogits, nameof(dLogits), logits, nameof(logits));
        ShapeCheck.Expect(loss, nameof(loss), 1);
        ShapeCheck.Distinct(loss, nameof(loss), logits, nameof(logits));
        ShapeCheck.Distinct(loss, nameof(loss), dLogits, nameof(dLogits));
        if (!float.IsFinite(gradientScale))
            throw new ArgumentOutOfRangeException(nameof(gradientScale), gradientScale, "Expected a finite factor.");
        launch.Validate(device);

        var classes = logits.Dim(-1);
        var rows = targets.Length;
        var count = CountAndValidate(targets, classes, ignoreIndex);

        using var rowLosses = Tensor.Uninitialized(device, rows);
        if (rows > 0)
        {
            var rowScale = count == 0 ? 0f : gradientScale / count;
            if (launch.Form != CrossEntropyForm.RowPerThread)
            {
                var kernel = launch.Form == CrossEntropyForm.RowPerGroup
                    ? device.Kernel(CrossEntropyKernels.RowPerGroup, accelerator =>
                        accelerator.LoadKernel<ArrayView<float>, ArrayView<int>, ArrayView<float>, ArrayView<float>,
                            int, int, float>(CrossEntropyKernels.RowPerGroup))
                    : device.Kernel(CrossEntropyKernels.RowPerSubGroups, accelerator =>
                        accelerator.LoadKernel<ArrayView<float>, ArrayView<int>, ArrayView<float>, ArrayView<float>,
                            int, int, float>(CrossEntropyKernels.RowPerSubGroups));
                var config = new KernelConfig(rows, launch.GroupSize, launch.SharedMemory);
                kernel(device.Stream, config, logits.View, targets.View, dLogits.View, rowLosses.View, classes,
                    ignoreIndex, rowScale);
            }
            else
            {
                var kernel = device.Kernel(CrossEntropyKernels.RowPerThread, accelerator =>
                    accelerator.LoadAutoGroupedKernel<Index1D, ArrayView<float>, ArrayView<int>, ArrayView<float>,
                        ArrayView<float>, int, int, float, Spread>(CrossEntropyKernels.RowPerThread));
                var spread = Kernels.Launch.Spread(device, rows);
                kernel(device.Stream, spread.Threads, logits.View, targets.View, dLogits.View, rowLosses.View, classes,
                    ignoreIndex, rowScale, spread);
            }
        }
        // Ignored rows hold an exact 0, so with count = 0 the mean is 0 · 0 = 0.
        Reductions.Reductions.Reduce<SumReduction, SumReduction>([rowLosses], "losses", loss,
            count == 0 ? 0f : 1f / count, ReductionLaunch.For(device));
        return count;
    }

    private static int CountAndValidate(IndexTensor targets, int classes, int ignoreIndex)
    {
        var values = targets.ToHost();
        var count = 0;
        for (var i = 0; i < values.Length; i++)
        {
            var t = values[i];
            if (t == ignoreIndex)
                continue;
            if (t < 0 || t >= classes)
                throw new ArgumentException(
                    $"Argument 'targets' has {t} at position {i} (index {ShapeCheck.FormatIndex(i, targets.Shape)}); expected a class in " +
                    $"[0, {classes}) (V = {classes}, the last dimension of 'logits') or the ignore index {ignoreIndex}.",
                    nameof(targets));
            count++;
        }
        return count;
    }
}

/// <summary>The two kernel forms of <see cref="CrossEntropy"/>.</summary>
internal enum CrossEntropyForm
{
    /// <summary>One group per row with shared-memory tree reductions: the GPU form.</summary>
    RowPerGroup,

    /// <summary>One group per row with two-level sub-group reductions: the form for devices with sub-group
    /// operations (<see cref="GroupReduction.SubGroups"/>).</summary>
    RowPerSubGroups,

    /// <summary>One thread per row, barrier-free: the CPU accelerator form.</summary>
    RowPerThread,
}

/// <summary>A kernel form and, for the group forms, their power-of-two group size.</summary>
/// <param name="Form">The kernel form.</param>
/// <param name="GroupSize">Threads per row group (ignored by <see cref="CrossEntropyForm.RowPerThread"/>).</param>
internal readonly record struct CrossEntropyLaunch(CrossEntropyForm Form, int GroupSize) : IKernelGeometryRule
{
    /// <summary>Row per thread on the CPU accelerator; otherwise the device policy's reduction with its group for
    /// long rows, 256 threads on GPUs (a vocabulary of 50k classes gives each thread ~200 coalesced elements, and N
    /// rows give N groups).</summary>
    public static CrossEntropyLaunch For(RetNetDevice device) => For(device.Limits);

    /// <summary>The launch <see cref="For(RetNetDevice)"/> gives a device with <paramref name="limits"/>: the reduction
    /// <see cref="DevicePolicy.ReductionFor"/> picks.</summary>
    public static CrossEntropyLaunch For(LaunchLimits limits) => limits.IsCpuAccelerator
        ? new(CrossEntropyForm.RowPerThread, 1)
        : For(limits, DevicePolicy.ReductionFor(limits));

    /// <summary>The group-per-row launch a device with <paramref name="limits"/> gets with
    /// <paramref name="reduction"/> (the policy's group for long rows). Lets the kernel report give the variant the
    /// policy does not pick the shape it would be launched with.</summary>
    public static CrossEntropyLaunch For(LaunchLimits limits, GroupReduction reduction) => new(
        reduction == GroupReduction.SubGroups ? CrossEntropyForm.RowPerSubGroups : CrossEntropyForm.RowPerGroup,
        DevicePolicy.ReductionGroupSize(limits, reduction, int.MaxValue));

    /// <summary>The dynamic shared memory of both group forms: two floats per thread (the tree's running maxima and
    /// sums side by side, or the sub-group variant's per-sub-group pairs, more than enough).</summary>
    public SharedMemoryConfig SharedMemory => SharedMemoryConfig.RequestDynamic<float>(2 * GroupSize);

    /// <summary>Rejects a group size the form cannot run with.</summary>
    public void Validate(RetNetDevice device)
    {
        if (Form == CrossEntropyForm.RowPerThread)
            return;
        SubGroupLaunch.ValidateGroup(device, GroupSize, Form == CrossEntropyForm.RowPerSubGroups, nameof(GroupSize));
    }

    /// <summary>The kernel report's rule for the group-per-row kernels: <see cref="For(LaunchLimits, GroupReduction)"/>
    /// with the kernel's reduction.</summary>
    KernelGeometry IKernelGeometryRule.For(MethodInfo kernel, LaunchLimits limits)
    {
        var reduction = KernelGeometry.ReductionOf(kernel, nameof(CrossEntropyKernels.RowPerSubGroups));
        var launch = For(limits, reduction);
        return KernelGeometry.Of(launch.GroupSize, launch.SharedMemory, "CrossEntropyLaunch.For", limits, reduction);
    }
}
