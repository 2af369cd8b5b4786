using ILGPU;
using ILGPU.Runtime;
using RetNet.Ilgpu.Tensors;

namespace RetNet.Ilgpu.Kernels.HeadGroups;

/// <summary>
/// Grouped key/value heads (docs/MATH.md §13): H query heads share H/G key and value heads, query head j reading kv
/// head ⌊j/G⌋. <see cref="Expand"/> spreads the kv heads' rows over the query heads so that retention runs on H
/// heads unchanged; <see cref="Reduce"/> is its transpose, summing the gradients of the G query heads of each kv head.
/// </summary>
public static class HeadGroups
{
    /// <summary>destination [N, H, D] = source [N, H/G, D] with each kv head repeated for its G query heads.</summary>
    /// <exception cref="ArgumentException">Shapes disagree: not rank 3, N or D differ, or H is not a multiple of the
    /// source's heads.</exception>
    public static void Expand(Tensor source, Tensor destination)
    {
        var group = Check(source, nameof(source), destination, nameof(destination));
        Launch(HeadGroupsKernels.Expand, source, destination, destination.Dim(1), group);
    }

    /// <summary>destination [N, H/G, D] = Σ over each kv head's G query heads of source [N, H, D] (overwritten).</summary>
    /// <exception cref="ArgumentException">Shapes disagree (see <see cref="Expand"/>).</exception>
    public static void Reduce(Tensor source, Tensor destination)
    {
        var group = Check(destination, nameof(destination), source, nameof(source));
        Launch(HeadGroupsKernels.Reduce, source, destination, destination.Dim(1), group);
    }

    /// <summary>Checks kv [N, Hkv, D] against query-headed [N, H, D] and returns G = H / Hkv.</summary>
    private static int Check(Tensor kv, string kvName, Tensor query, string queryName)
    {
        ShapeCheck.Rank(kv, kvName, 3);
        ShapeCheck.Rank(query, queryName, 3);
        ShapeCheck.SameDevice(kv.Device, queryName, query);
        if (kv.Dim(0) != query.Dim(0) || kv.Dim(2) != query.Dim(2) || kv.Dim(1) <= 0 || query.Dim(1) % kv.Dim(1) != 0)
            throw new ArgumentException(
                $"Argument '{queryName}' has shape {ShapeCheck.Format(query.Shape)} and '{kvName}' " +
                $"{ShapeCheck.Format(kv.Shape)}; expected [N, H, D] and [N, H/G, D] with the same N and D.", queryName);
        if (kv.Overlaps(query))
            throw new ArgumentException($"Argument '{queryName}' shares storage with '{kvName}'.", queryName);
        return query.Dim(1) / kv.Dim(1);
    }

    private static void Launch(Action<Index1D, ArrayView<float>, ArrayView<float>, int, int, int, Spread> body,
        Tensor source, Tensor destination, int heads, int group)
    {
        if (destination.Length == 0)
            return;
        var device = destination.Device;
        var kernel = device.Kernel(body, accelerator =>
            accelerator.LoadAutoGroupedKernel<Index1D, ArrayView<float>, ArrayView<float>, int, int, int, Spread>(body));
        var spread = Kernels.Launch.Spread(device, destination.Length);
        kernel(device.Stream, spread.Threads, source.View, destination.View, heads, group, destination.Dim(2), spread);
    }
}
