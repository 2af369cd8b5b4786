using ILGPU;
using ILGPU.Runtime;

namespace RetNet.Ilgpu.Kernels;

/// <summary>Grid arithmetic shared by every launch: explicit grids, and the thread count of implicit ones.</summary>
internal static class Launch
{
    /// <summary>
    /// The geometry of an implicitly grouped launch over <paramref name="count"/> items, decided here for every such
    /// kernel. On ILGPU's CPU accelerator each simulated thread costs about a microsecond while a loop iteration costs
    /// nanoseconds, so a few threads per core (<see cref="Devices.RetNetDevice.LaunchThreads"/>) each take one
    /// contiguous range. Elsewhere the launch covers the work one item a thread (up to the same cap) and strides, so
    /// neighbouring threads read neighbouring items. <see cref="Devices.RetNetDevice.ForcedLaunchThreads"/> replaces the
    /// thread count exactly, even above the item count, so tests can check the kernels for any split.
    /// </summary>
    public static Spread Spread(Devices.RetNetDevice device, int count)
    {
        var cap = device.RunsOnHost
            ? Math.Clamp(CeilDiv(count, Devices.RetNetDevice.HostItemsPerThread), 1, device.LaunchThreads)
            : device.LaunchThreads;
        var threads = device.ForcedLaunchThreads ?? Math.Clamp(count, 1, cap);
        var chunk = device.IsCpuSimulator ? Math.Max(1, CeilDiv(count, threads)) : 1;
        return new Spread(count, threads, chunk);
    }

    /// <summary>Enough groups of <paramref name="groupSize"/> threads to cover <paramref name="count"/> items, one each.</summary>
    public static KernelConfig Cover(int count, int groupSize) =>
        new(Math.Max(1, CeilDiv(count, groupSize)), groupSize);

    /// <summary>Ceiling of a / b for positive b.</summary>
    public static int CeilDiv(int a, int b) => (a + b - 1) / b;

    /// <summary>
    /// The largest power of two ≤ min(<paramref name="preferred"/>, the accelerator's group limit): for tree
    /// reductions in shared memory, which need a power-of-two group.
    /// </summary>
    public static int PowerOfTwoGroup(Devices.RetNetDevice device, int preferred) =>
        PowerOfTwoGroup(device.MaxGroupSize, preferred);

    /// <summary>The largest power of two ≤ min(<paramref name="preferred"/>, <paramref name="maxGroupSize"/>).</summary>
    public static int PowerOfTwoGroup(int maxGroupSize, int preferred)
    {
        var limit = Math.Min(preferred, maxGroupSize);
        var size = 1;
        while (size * 2 <= limit)
            size *= 2;
        return size;
    }
}
