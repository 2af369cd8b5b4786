using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Algorithms.ScanReduceOperations;

namespace RetNet.Ilgpu.Kernels.CrossEntropy;

/// <summary>
/// Fused softmax cross-entropy, forward and backward in one pass over each row of logits [N, V]:
/// losses[n] = logsumexp(x[n, :]) − x[n, t_n] and dLogits[n, :] = gradientScale · (softmax(x[n, :]) − onehot(t_n)),
/// both 0 for rows whose target is the ignore index. Softmax is taken online: a running maximum m and a running
/// Σ exp(x − m) rescaled whenever m grows, so each row is read twice (statistics, gradient) instead of three times.
/// dLogits may be logits itself: every thread reads an element before writing it and writes only its own elements,
/// and the target logit is read before anything is written.
/// </summary>
internal static class CrossEntropyKernels
{
    /// <summary>
    /// One group per row (grid = N groups), threads striding over the classes, the per-thread (max, sum) pairs combined
    /// in a shared-memory tree (<see cref="TreeSoftmaxCombine"/>). The group size must be a power of two; dynamic
    /// shared memory holds 2 floats per thread.
    /// </summary>
    [Kernel(KernelGrouping.Explicit, Geometry = typeof(CrossEntropyLaunch))]
    public static void RowPerGroup(ArrayView<float> logits, ArrayView<int> targets, ArrayView<float> dLogits,
        ArrayView<float> losses, int classes, int ignoreIndex, float gradientScale) =>
        Row<TreeSoftmaxCombine>(logits, targets, dLogits, losses, classes, ignoreIndex, gradientScale);

    /// <summary>
    /// <see cref="RowPerGroup"/> with the pairs combined in two levels by sub-group built-ins
    /// (<see cref="SubGroupSoftmaxCombine"/>); dynamic shared memory holds 2 floats per thread.
    /// </summary>
    [Kernel(KernelGrouping.Explicit, Geometry = typeof(CrossEntropyLaunch))]
    public static void RowPerSubGroups(ArrayView<float> logits, ArrayView<int> targets, ArrayView<float> dLogits,
        ArrayView<float> losses, int classes, int ignoreIndex, float gradientScale) =>
        Row<SubGroupSoftmaxCombine>(logits, targets, dLogits, losses, classes, ignoreIndex, gradientScale);

    private static void Row<TCombine>(ArrayView<float> logits, ArrayView<int> targets, ArrayView<float> dLogits,
        ArrayView<float> losses, int classes, int ignoreIndex, float gradientScale)
        where TCombine : struct, ISoftmaxCombine
    {
        var row = Grid.IdxX;
        var thread = Group.IdxX;
        var size = Group.DimX;
        var start = (long)row * classes;
        var target = targets[row];

        if (target == ignoreIndex)
        {
            // Uniform across the group, so leaving before the barriers is safe.
            for (var c = thread; c < classes; c += size)
                dLogits[start + c] = 0f;
            if (thread == 0)
                losses[row] = 0f;
            return;
        }
        var targetLogit = thread == 0 ? logits[start + target] : 0f;

        var rowMax = float.NegativeInfinity;
        var rowSum = 0f;
        for (var c = thread; c < classes; c += size)
            Accumulate(logits[start + c], ref rowMax, ref rowSum);
        default(TCombine).Combine(ref rowMax, ref rowSum);

        if (thread == 0)
            losses[row] = rowMax + XMath.Log(rowSum) - targetLogit;
        var probabilityScale = gradientScale / rowSum;
        for (var c = thread; c < classes; c += size)
        {
            var p = XMath.Exp(logits[start + c] - rowMax) * probabilityScale;
            dLogits[start + c] = c == target ? p - gradientScale : p;
        }
    }

    /// <summary>
    /// One thread per row, no shared memory, no barriers: the form for the CPU accelerator, where barrier rounds are
    /// expensive and one long loop per thread is cheap.
    /// </summary>
    [Kernel(KernelGrouping.Implicit)]
    public static void RowPerThread(Index1D thread, ArrayView<float> logits, ArrayView<int> targets,
        ArrayView<float> dLogits, ArrayView<float> losses, int classes, int ignoreIndex, float gradientScale, Spread spread)
    {
        // Each item (row) is handled by exactly one thread; Launch.Spread decides which.
        for (var runStart = spread.First(thread); runStart < spread.Count; runStart += spread.Step)
        {
            var runEnd = spread.End(runStart);
            for (var row = runStart; row < runEnd; row++)
            {
                var start = (long)row * classes;
                var target = targets[row];
                if (target == ignoreIndex)
                {
                    for (var c = 0; c < classes; c++)
                        dLogits[start + c] = 0f;
                    losses[row] = 0f;
                    continue;
                }
                var targetLogit = logits[start + target];

                var max = float.NegativeInfinity;
                var sum = 0f;
                for (var c = 0; c < classes; c++)
                    Accumulate(logits[start + c], ref max, ref sum);

                losses[row] = max + XMath.Log(sum) - targetLogit;
                var probabilityScale = gradientScale / sum;
                for (var c = 0; c < classes; c++)
                {
                    var p = XMath.Exp(logits[start + c] - max) * probabilityScale;
                    dLogits[start + c] = c == target ? p - gradientScale : p;
                }
            }
        }
    }

    /// <summary>Adds exp(x − max) to the running sum, raising max (and rescaling the sum) when x exceeds it.</summary>
    private static void Accumulate(float x, ref float max, ref float sum)
    {
        if (x > max)
        {
            sum = Rescale(sum, max, x) + 1f;
            max = x;
        }
        else
        {
            sum += XMath.Exp(x - max);
        }
    }

    /// <summary>sum · exp(from − to) for to ≥ from; exact when equal, so two empty (−∞, 0) pairs stay (−∞, 0).</summary>
    internal static float Rescale(float sum, float from, float to) => from == to ? sum : sum * XMath.Exp(from - to);
}

/// <summary>
/// How a group merges its threads' online-softmax pairs (running max m, Σ exp(x − m)) into the row's pair, which
/// every thread receives. A struct type argument, resolved when the kernel is compiled.
/// </summary>
internal interface ISoftmaxCombine
{
    /// <summary>Replaces the calling thread's pair by the group's. Every thread of the group must call it.</summary>
    void Combine(ref float max, ref float sum);
}

/// <summary>Pairs merged in a shared-memory tree (maxima in the first G floats, sums in the next G), a barrier per
/// level.</summary>
internal readonly struct TreeSoftmaxCombine : ISoftmaxCombine
{
    public void Combine(ref float max, ref float sum)
    {
        var thread = Group.IdxX;
        var size = Group.DimX;
        var shared = SharedMemory.GetDynamic<float>();
        var maxima = shared.SubView(0, size);
        var sums = shared.SubView(size, size);
        maxima[thread] = max;
        sums[thread] = sum;
        Group.Barrier();
        for (var half = size / 2; half > 0; half /= 2)
        {
            if (thread < half)
            {
                var otherMax = maxima[thread + half];
                var otherSum = sums[thread + half];
                var ownMax = maxima[thread];
                var ownSum = sums[thread];
                var combined = XMath.Max(ownMax, otherMax);
                sums[thread] = CrossEntropyKernels.Rescale(ownSum, ownMax, combined) +
                               CrossEntropyKernels.Rescale(otherSum, otherMax, combined);
                maxima[thread] = combined;
            }
            Group.Barrier();
        }
        max = maxima[0];
        sum = sums[0];
    }
}

/// <summary>
/// Pairs merged in two levels. Within a sub-group: the built-in max gives the common maximum, each lane rescales
/// its sum to it, the built-in add sums them (no barrier). Lane 0 writes the sub-group's pair to its slot (maxima in
/// the first G floats, sums in the next G: enough slots for any sub-group size), one barrier, then every sub-group
/// merges all slots the same way, so every thread holds the same bits without a broadcast. The sub-group size is
/// read in the kernel, so one kernel serves any device.
/// </summary>
internal readonly struct SubGroupSoftmaxCombine : ISoftmaxCombine
{
    public void Combine(ref float max, ref float sum)
    {
        var size = Group.DimX;
        var shared = SharedMemory.GetDynamic<float>();
        var maxima = shared.SubView(0, size);
        var sums = shared.SubView(size, size);
        var lane = Warp.LaneIdx;
        var warpSize = Warp.WarpSize;
        var subGroupMax = WarpExtensions.AllReduce<float, MaxFloat>(max);
        var subGroupSum = WarpExtensions.AllReduce<float, AddFloat>(
            CrossEntropyKernels.Rescale(sum, max, subGroupMax));
        if (lane == 0)
        {
            maxima[Warp.WarpIdx] = subGroupMax;
            sums[Warp.WarpIdx] = subGroupSum;
        }
        Group.Barrier();
        var subGroups = (size + warpSize - 1) / warpSize;
        var ownMax = float.NegativeInfinity;
        var ownSum = 0f;
        for (var i = lane; i < subGroups; i += warpSize)
        {
            var slotMax = maxima[i];
            var combined = XMath.Max(ownMax, slotMax);
            ownSum = CrossEntropyKernels.Rescale(ownSum, ownMax, combined) +
                     CrossEntropyKernels.Rescale(sums[i], slotMax, combined);
            ownMax = combined;
        }
        max = WarpExtensions.AllReduce<float, MaxFloat>(ownMax);
        sum = WarpExtensions.AllReduce<float, AddFloat>(CrossEntropyKernels.Rescale(ownSum, ownMax, max));
    }
}

