using System.Runtime.CompilerServices;
using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Algorithms.ScanReduceOperations;

namespace RetNet.Ilgpu.Kernels.Reductions;

/// <summary>
/// A reduction: a map applied to each input element, then an associative combine. 0 is the identity of every
/// reduction here (sums, and maxima of |x| ≥ 0).
/// </summary>
internal interface IReduction
{
    /// <summary>True for sums: each thread then accumulates with Neumaier compensation.</summary>
    bool Compensated { get; }

    float Map(float x);

    float Combine(float a, float b);

    /// <summary><see cref="Combine"/> over the calling sub-group (warp) with its built-in; every lane gets the result.
    /// Every lane of the sub-group must call it.</summary>
    float SubGroupCombine(float value);
}

/// <summary>Σ x.</summary>
internal readonly struct SumReduction : IReduction
{
    public bool Compensated => true;

    public float Map(float x) => x;

    public float Combine(float a, float b) => a + b;

    public float SubGroupCombine(float value) => SubGroupSums.Accurate(value);
}

/// <summary>Σ x².</summary>
internal readonly struct SquareSumReduction : IReduction
{
    public bool Compensated => true;

    public float Map(float x) => x * x;

    public float Combine(float a, float b) => a + b;

    public float SubGroupCombine(float value) => SubGroupSums.Accurate(value);
}

/// <summary>max |x|, with NaN winning every comparison.</summary>
internal readonly struct AbsMaxReduction : IReduction
{
    public bool Compensated => false;

    public float Map(float x) => XMath.Abs(x);

    // PTX max.f32 and OpenCL fmax return the non-NaN operand; a NaN gradient must instead reach the caller.
    public float Combine(float a, float b) => a >= b || XMath.IsNaN(a) ? a : b;

    // The built-in max drops NaN like fmax does, so whether any lane holds a NaN travels in an integer max beside it.
    public float SubGroupCombine(float value)
    {
        var anyNaN = WarpExtensions.AllReduce<int, MaxInt32>(XMath.IsNaN(value) ? 1 : 0);
        var max = WarpExtensions.AllReduce<float, MaxFloat>(value);
        return anyNaN != 0 ? float.NaN : max;
    }
}

/// <summary>
/// One pass of a deterministic two-pass reduction. The first pass runs many groups over the input and writes one
/// partial per group; the second runs one group over the partials. The summation order depends only on the launch
/// shape, never on timing, so results are bit-identical run to run.
/// </summary>
internal static class ReductionKernels
{
    /// <summary>
    /// output[group] = scale · reduce(map(input[0..length))) over the elements this group strides over. Each thread
    /// first loops over a grid-strided range (<see cref="ThreadAccumulate{TOp}"/>), then the group combines the
    /// thread results in a shared-memory tree: the group size must be a power of two and dynamic shared memory must
    /// hold one float per thread.
    /// </summary>
    [Kernel(KernelGrouping.Explicit, Specializations =
        [typeof(SumReduction), typeof(SquareSumReduction), typeof(AbsMaxReduction)], Geometry = typeof(ReductionLaunch))]
    public static void Reduce<TOp>(ArrayView<float> input, int length, ArrayView<float> output, float scale)
        where TOp : struct, IReduction
    {
        var op = default(TOp);
        var shared = SharedMemory.GetDynamic<float>();
        var thread = Group.IdxX;
        var size = Group.DimX;
        shared[thread] = ThreadAccumulate<TOp>(input, length);
        Group.Barrier();
        for (var half = size / 2; half > 0; half /= 2)
        {
            if (thread < half)
                shared[thread] = op.Combine(shared[thread], shared[thread + half]);
            Group.Barrier();
        }
        if (thread == 0)
            output[Grid.IdxX] = shared[0] * scale;
    }

    /// <summary>
    /// <see cref="Reduce{TOp}"/> with a two-level group combine: each sub-group combines its threads' results with
    /// the sub-group built-in, lane 0 writes the sub-group's partial to its slot (dynamic shared memory of one float
    /// per thread, enough for any sub-group size), one barrier, then the first sub-group combines the partials. The
    /// group must be a whole number of sub-groups where they cannot shrink (CUDA, the CPU accelerator).
    /// </summary>
    [Kernel(KernelGrouping.Explicit, Specializations =
        [typeof(SumReduction), typeof(SquareSumReduction), typeof(AbsMaxReduction)], Geometry = typeof(ReductionLaunch))]
    public static void ReduceSubGroup<TOp>(ArrayView<float> input, int length, ArrayView<float> output, float scale)
        where TOp : struct, IReduction
    {
        var op = default(TOp);
        var slots = SharedMemory.GetDynamic<float>();
        var lane = Warp.LaneIdx;
        var warpSize = Warp.WarpSize;
        var warp = Warp.WarpIdx;
        var partial = op.SubGroupCombine(ThreadAccumulate<TOp>(input, length));
        if (lane == 0)
            slots[warp] = partial;
        Group.Barrier();
        if (warp != 0)
            return;
        var subGroups = (Group.DimX + warpSize - 1) / warpSize;
        // 0 is the identity of every reduction here.
        var own = 0f;
        for (var i = lane; i < subGroups; i += warpSize)
            own = op.Combine(own, slots[i]);
        var total = op.SubGroupCombine(own);
        if (lane == 0)
            output[Grid.IdxX] = total * scale;
    }

    /// <summary>
    /// One thread's share of a reduction: map and combine the elements group·G + t, stepping by the whole grid.
    /// </summary>
    private static float ThreadAccumulate<TOp>(ArrayView<float> input, int length) where TOp : struct, IReduction
    {
        var size = Group.DimX;
        long stride = (long)Grid.DimX * size;
        var accumulator = default(ReductionAccumulator<TOp>);
        for (long i = (long)Grid.IdxX * size + Group.IdxX; i < length; i += stride)
            accumulator.Add(input[i]);
        return accumulator.Result;
    }
}

/// <summary>
/// One thread's running reduction, in the kernels and in the host code alike: each element mapped, then combined;
/// compensated (Neumaier) for sums, so the number of elements one thread takes does not cost precision.
/// </summary>
internal struct ReductionAccumulator<TOp> where TOp : struct, IReduction
{
    private float accumulator;
    private float compensation;

    /// <summary>Maps and combines one element.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Add(float x)
    {
        var op = default(TOp);
        var value = op.Map(x);
        if (op.Compensated)
        {
            // Neumaier: the low-order bits lost by each addition are collected in `compensation`.
            var sum = accumulator + value;
            compensation += XMath.Abs(accumulator) >= XMath.Abs(value)
                ? accumulator - sum + value
                : value - sum + accumulator;
            accumulator = sum;
        }
        else
        {
            accumulator = op.Combine(accumulator, value);
        }
    }

    /// <summary>The reduction of the elements added so far (0 for none). Once a sum is ±∞ or NaN its compensation is
    /// NaN (∞ − ∞): the sum itself is kept, so overflow stays ∞.</summary>
    public readonly float Result =>
        default(TOp).Compensated && XMath.IsFinite(accumulator) ? accumulator + compensation : accumulator;
}
