namespace RetNet.Ilgpu.Kernels.Reductions;

/// <summary>Double-precision references of <see cref="Reductions"/>, used by the tests.</summary>
public static class ReductionReference
{
    /// <summary>Σ x in double precision.</summary>
    public static double Sum(IEnumerable<float> x)
    {
        ArgumentNullException.ThrowIfNull(x);
        var sum = 0.0;
        foreach (var v in x)
            sum += v;
        return sum;
    }

    /// <summary>Σ x² in double precision (each square of the fp32 value taken exactly).</summary>
    public static double SumOfSquares(IEnumerable<float> x)
    {
        ArgumentNullException.ThrowIfNull(x);
        var sum = 0.0;
        foreach (var v in x)
            sum += (double)v * v;
        return sum;
    }

    /// <summary>max |x|; 0 for no elements; NaN as soon as one element is NaN.</summary>
    public static double MaxAbs(IEnumerable<float> x)
    {
        ArgumentNullException.ThrowIfNull(x);
        var max = 0.0;
        foreach (var v in x)
        {
            if (float.IsNaN(v))
                return double.NaN;
            max = Math.Max(max, Math.Abs((double)v));
        }
        return max;
    }
}
