using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Algorithms.ScanReduceOperations;

namespace RetNet.Ilgpu.Kernels;

/// <summary>
/// How the threads of a group add up one float each, every thread receiving the total. A struct type argument, so
/// a kernel body written once is compiled with either strategy and the choice costs nothing at run time.
/// </summary>
internal interface IGroupSum
{
    /// <summary>
    /// The group's total of <paramref name="value"/>. Every thread of the group must call it. A kernel making several
    /// sums passes region 0, 1, 0, … in turn: the sub-group strategy then needs no barrier after reading its slots.
    /// </summary>
    float Sum(float value, int region);
}

/// <summary>
/// The shared-memory tree: dynamic shared memory of G floats (G a power of two), log2(G) halving steps each followed
/// by a barrier, and a closing barrier so the next sum can reuse the memory.
/// </summary>
internal readonly struct TreeGroupSum : IGroupSum
{
    /// <summary>Floats of dynamic shared memory a group of <paramref name="groupSize"/> threads needs.</summary>
    public static int SharedFloats(int groupSize) => groupSize;

    public float Sum(float value, int region)
    {
        var shared = SharedMemory.GetDynamic<float>();
        var t = Group.IdxX;
        shared[t] = value;
        Group.Barrier();
        for (var half = Group.DimX / 2; half > 0; half /= 2)
        {
            if (t < half)
                shared[t] += shared[t + half];
            Group.Barrier();
        }
        var total = shared[0];
        Group.Barrier();
        return total;
    }
}

/// <summary>
/// The two-level sum: each sub-group adds its values with the sub-group built-in (a warp shuffle tree in PTX,
/// sub_group_reduce_add in OpenCL C; no barrier), lane 0 writes the sub-group's partial to its slot, one barrier,
/// then every sub-group adds all partials the same way, so every thread holds the same bits without a broadcast.
/// The sub-group size is read in the kernel (Warp.WarpSize), so one kernel serves 8, 16, 32, 64 or a whole group.
/// Slots: G per region (a group has at most G sub-groups, one per thread), two regions, so consecutive sums never
/// overwrite partials another sub-group is still reading and need no closing barrier.
/// </summary>
internal readonly struct SubGroupSum : IGroupSum
{
    /// <summary>Floats of dynamic shared memory a group of <paramref name="groupSize"/> threads needs.</summary>
    public static int SharedFloats(int groupSize) => 2 * groupSize;

    public float Sum(float value, int region)
    {
        var size = Group.DimX;
        var slots = SharedMemory.GetDynamic<float>().SubView(region * size, size);
        var lane = Warp.LaneIdx;
        var warpSize = Warp.WarpSize;
        var partial = WarpExtensions.Reduce<float, AddFloat>(value);
        if (lane == 0)
            slots[Warp.WarpIdx] = partial;
        Group.Barrier();
        var subGroups = (size + warpSize - 1) / warpSize;
        var total = 0f;
        for (var i = lane; i < subGroups; i += warpSize)
            total += slots[i];
        return WarpExtensions.AllReduce<float, AddFloat>(total);
    }
}

/// <summary>The host-side rule shared by every sub-group kernel's launch configuration.</summary>
internal static class SubGroupLaunch
{
    /// <summary>
    /// Rejects a group size that is not a power of two within the device's group limit (the trees halve it) and, when
    /// <paramref name="subGroups"/>, a sub-group launch the device cannot run (<see cref="Validate"/>).
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">Thrown with <paramref name="argument"/> as the parameter name.</exception>
    public static void ValidateGroup(Devices.RetNetDevice device, int groupSize, bool subGroups, string argument)
    {
        if (groupSize < 1 || (groupSize & (groupSize - 1)) != 0 || groupSize > device.MaxGroupSize)
            throw new ArgumentOutOfRangeException(argument, groupSize,
                $"Expected a power of two between 1 and the device's group limit {device.MaxGroupSize}.");
        if (subGroups)
            Validate(device, groupSize, argument);
    }

    /// <summary>
    /// Rejects a sub-group launch the device cannot run: no sub-group operations, or a group that is not a whole
    /// number of sub-groups where sub-groups cannot shrink (CUDA warps, the CPU accelerator's emulated warps).
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">Thrown with <paramref name="argument"/> as the parameter name.</exception>
    public static void Validate(Devices.RetNetDevice device, int groupSize, string argument)
    {
        if (!device.Policy.SupportsSubGroups)
            throw new ArgumentOutOfRangeException(argument, groupSize,
                $"The sub-group form needs sub-group operations, which {device} lacks (no cl_khr_subgroups).");
        var granularity = device.Policy.SubGroupGranularity;
        if (groupSize % granularity != 0)
            throw new ArgumentOutOfRangeException(argument, groupSize,
                $"Expected a multiple of the device's sub-group size {granularity} for the sub-group form.");
    }
}

/// <summary>Sums over the calling sub-group that do not depend on the order the built-in adds in.</summary>
internal static class SubGroupSums
{
    /// <summary>
    /// Σ value over the calling sub-group, in every lane, to about one rounding. The built-in's order is not
    /// specified: a GPU adds in a butterfly, but PoCL makes a whole 256-thread group one sub-group and its sum of 10⁷
    /// squares came out 3e-6 low (the tree keeps 3e-8). So each value is split at a quantum q a few bits above the
    /// sub-group's largest ulp: high = value rounded to a multiple of q (the 1.5·2^k trick), low = value − high,
    /// both exact. Every partial sum of the highs is a multiple of q below 2^24·q, hence exact in any order; the
    /// lows are below q/2 each, so their rounding is negligible. Every lane must call it.
    /// </summary>
    public static float Accurate(float value)
    {
        var max = WarpExtensions.AllReduce<float, MaxFloat>(XMath.Abs(value));
        var exponent = (int)((Interop.FloatAsInt(max) >> 23) & 0xFF) - 127;
        var levels = 0;
        for (var lanes = 1; lanes < Warp.WarpSize; lanes *= 2)
            levels++;
        // q = 2^(exponent + levels − 21): n values below 2^(exponent + 1) sum below 2^24·q; c = 1.5·2^(log2 q + 23).
        var cExponent = exponent + levels + 2;
        // Zero, subnormal, infinite or NaN maxima, or a c beyond fp32's range: the plain sum (uniform across lanes).
        if (!XMath.IsFinite(max) || exponent < -120 || cExponent > 127)
            return WarpExtensions.AllReduce<float, AddFloat>(value);
        var c = Interop.IntAsFloat(((uint)(cExponent + 127) << 23) | 0x400000u);
        var high = value + c - c;
        var low = value - high;
        return WarpExtensions.AllReduce<float, AddFloat>(high) + WarpExtensions.AllReduce<float, AddFloat>(low);
    }
}
