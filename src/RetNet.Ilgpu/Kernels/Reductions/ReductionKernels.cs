using ILGPU;
using ILGPU.Algorithms;

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
}

/// <summary>Σ x.</summary>
internal readonly struct SumReduction : IReduction
{
    public bool Compensated => true;

    public float Map(float x) => x;

    public float Combine(float a, float b) => a + b;
}

/// <summary>Σ x².</summary>
internal readonly struct SquareSumReduction : IReduction
{
    public bool Compensated => true;

    public float Map(float x) => x * x;

    public float Combine(float a, float b) => a + b;
}

/// <summary>max |x|, with NaN winning every comparison.</summary>
internal readonly struct AbsMaxReduction : IReduction
{
    public bool Compensated => false;

    public float Map(float x) => XMath.Abs(x);

    // PTX max.f32 and OpenCL fmax return the non-NaN operand; a NaN gradient must instead reach the caller.
    public float Combine(float a, float b) => a >= b || XMath.IsNaN(a) ? a : b;
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
    /// first loops over a grid-strided range (compensated for sums, so the per-thread count does not cost precision),
    /// then the group combines the thread results in a shared-memory tree: the group size must be a power of two and
    /// dynamic shared memory must hold one float per thread.
    /// </summary>
    [Kernel(KernelGrouping.Explicit, Specializations =
        [typeof(SumReduction), typeof(SquareSumReduction), typeof(AbsMaxReduction)])]
    public static void Reduce<TOp>(ArrayView<float> input, int length, ArrayView<float> output, float scale)
        where TOp : struct, IReduction
    {
        var op = default(TOp);
        var shared = SharedMemory.GetDynamic<float>();
        var thread = Group.IdxX;
        var size = Group.DimX;
        var group = Grid.IdxX;
        long stride = (long)Grid.DimX * size;

        var accumulator = 0f;
        var compensation = 0f;
        for (long i = (long)group * size + thread; i < length; i += stride)
        {
            var value = op.Map(input[i]);
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
        // Once the sum is ±∞ or NaN the compensation is NaN (∞ − ∞); keep the sum itself so overflow stays ∞.
        if (op.Compensated && XMath.IsFinite(accumulator))
            accumulator += compensation;

        shared[thread] = accumulator;
        Group.Barrier();
        for (var half = size / 2; half > 0; half /= 2)
        {
            if (thread < half)
                shared[thread] = op.Combine(shared[thread], shared[thread + half]);
            Group.Barrier();
        }
        if (thread == 0)
            output[group] = shared[0] * scale;
    }
}
