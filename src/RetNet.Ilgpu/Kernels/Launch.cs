using ILGPU;
using ILGPU.Runtime;

namespace RetNet.Ilgpu.Kernels;

/// <summary>Grid arithmetic shared by every explicitly grouped launch.</summary>
internal static class Launch
{
    /// <summary>Enough groups of <paramref name="groupSize"/> threads to cover <paramref name="count"/> items, one each.</summary>
    public static KernelConfig Cover(int count, int groupSize) =>
        new(Math.Max(1, CeilDiv(count, groupSize)), groupSize);

    /// <summary>Ceiling of a / b for positive b.</summary>
    public static int CeilDiv(int a, int b) => (a + b - 1) / b;

    /// <summary>
    /// The largest power of two ≤ min(<paramref name="preferred"/>, the accelerator's group limit): for tree
    /// reductions in shared memory, which need a power-of-two group.
    /// </summary>
    public static int PowerOfTwoGroup(Devices.RetNetDevice device, int preferred)
    {
        var limit = Math.Min(preferred, device.MaxGroupSize);
        var size = 1;
        while (size * 2 <= limit)
            size *= 2;
        return size;
    }
}
