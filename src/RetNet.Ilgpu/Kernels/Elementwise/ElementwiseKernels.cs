using ILGPU;
using ILGPU.Algorithms;
using RetNet.Ilgpu.Kernels.Gemm;

namespace RetNet.Ilgpu.Kernels.Elementwise;

/// <summary>
/// An elementwise function of one value and a scalar parameter: <see cref="Apply"/> for the kernels,
/// <see cref="ApplyLanes"/> for the host's vector loops, which run every element through it (a tail is padded into a
/// full vector), so an element's bits never depend on its index or on the tensor's length. The two agree to rounding
/// (exactly, for ops without transcendental functions).
/// </summary>
internal interface IUnaryOp
{
    float Apply(float x, float parameter);

    static abstract TV ApplyLanes<TV, TOps>(TV x, TV parameter)
        where TV : struct
        where TOps : struct, IVectorOps<TV>;
}

/// <summary>An elementwise function of two values and a scalar parameter; the two forms as in
/// <see cref="IUnaryOp"/>.</summary>
internal interface IBinaryOp
{
    float Apply(float a, float b, float parameter);

    static abstract TV ApplyLanes<TV, TOps>(TV a, TV b, TV parameter)
        where TV : struct
        where TOps : struct, IVectorOps<TV>;
}

/// <summary>
/// The exp-based functions of the ops' vector forms. σ(x) = 1/(1 + e^(−x)) on both sides: for x below about −88
/// e^(−x) overflows to ∞ and σ to 0, the limit (the true value is below fp32's smallest normal), so the kernels'
/// two-sided form is not needed; NaN stays NaN through the exponential.
/// </summary>
internal static class LaneMath
{
    public static TV Sigmoid<TV, TOps>(TV x)
        where TV : struct
        where TOps : struct, IVectorOps<TV> =>
        TOps.Divide(TOps.Broadcast(1f), TOps.Add(TOps.Broadcast(1f), TOps.Exp(TOps.Subtract(TOps.Zero, x))));

    /// <summary><see cref="KernelMath.Erf"/>'s Abramowitz–Stegun formula, lane by lane, same operations.</summary>
    public static TV Erf<TV, TOps>(TV x)
        where TV : struct
        where TOps : struct, IVectorOps<TV>
    {
        var a = TOps.Abs(x);
        var t = TOps.Divide(TOps.Broadcast(1f), TOps.Add(TOps.Broadcast(1f), TOps.Multiply(TOps.Broadcast(0.3275911f), a)));
        var poly = TOps.Add(TOps.Broadcast(-1.453152027f), TOps.Multiply(t, TOps.Broadcast(1.061405429f)));
        poly = TOps.Add(TOps.Broadcast(1.421413741f), TOps.Multiply(t, poly));
        poly = TOps.Add(TOps.Broadcast(-0.284496736f), TOps.Multiply(t, poly));
        poly = TOps.Add(TOps.Broadcast(0.254829592f), TOps.Multiply(t, poly));
        poly = TOps.Multiply(t, poly);
        var e = TOps.Exp(TOps.Subtract(TOps.Zero, TOps.Multiply(a, a)));
        return TOps.NegateWhereNegative(TOps.Subtract(TOps.Broadcast(1f), TOps.Multiply(poly, e)), x);
    }

    /// <summary>Φ(x) = ½(1 + erf(x/√2)).</summary>
    public static TV NormalCdf<TV, TOps>(TV x)
        where TV : struct
        where TOps : struct, IVectorOps<TV> =>
        TOps.Multiply(TOps.Broadcast(0.5f),
            TOps.Add(TOps.Broadcast(1f), Erf<TV, TOps>(TOps.Multiply(x, TOps.Broadcast(KernelMath.InvSqrt2)))));
}

/// <summary>y = parameter · x.</summary>
internal readonly struct ScaleOp : IUnaryOp
{
    public float Apply(float x, float parameter) => parameter * x;

    public static TV ApplyLanes<TV, TOps>(TV x, TV parameter)
        where TV : struct
        where TOps : struct, IVectorOps<TV> => TOps.Multiply(parameter, x);
}

/// <summary>y = x·σ(x).</summary>
internal readonly struct SiluOp : IUnaryOp
{
    public float Apply(float x, float parameter) => KernelMath.Silu(x);

    public static TV ApplyLanes<TV, TOps>(TV x, TV parameter)
        where TV : struct
        where TOps : struct, IVectorOps<TV> => TOps.Multiply(x, LaneMath.Sigmoid<TV, TOps>(x));
}

/// <summary>y = x·Φ(x), the exact (erf) GELU.</summary>
internal readonly struct GeluOp : IUnaryOp
{
    public float Apply(float x, float parameter) => 0.5f * x * (1f + KernelMath.Erf(x * KernelMath.InvSqrt2));

    public static TV ApplyLanes<TV, TOps>(TV x, TV parameter)
        where TV : struct
        where TOps : struct, IVectorOps<TV> => TOps.Multiply(x, LaneMath.NormalCdf<TV, TOps>(x));
}

/// <summary>y = a + b.</summary>
internal readonly struct AddOp : IBinaryOp
{
    public float Apply(float a, float b, float parameter) => a + b;

    public static TV ApplyLanes<TV, TOps>(TV a, TV b, TV parameter)
        where TV : struct
        where TOps : struct, IVectorOps<TV> => TOps.Add(a, b);
}

/// <summary>y = parameter · a + b (deepnorm's scaled residual).</summary>
internal readonly struct ScaleAddOp : IBinaryOp
{
    public float Apply(float a, float b, float parameter) => parameter * a + b;

    public static TV ApplyLanes<TV, TOps>(TV a, TV b, TV parameter)
        where TV : struct
        where TOps : struct, IVectorOps<TV> => TOps.Add(TOps.Multiply(parameter, a), b);
}

/// <summary>y = a · b.</summary>
internal readonly struct MultiplyOp : IBinaryOp
{
    public float Apply(float a, float b, float parameter) => a * b;

    public static TV ApplyLanes<TV, TOps>(TV a, TV b, TV parameter)
        where TV : struct
        where TOps : struct, IVectorOps<TV> => TOps.Multiply(a, b);
}

/// <summary>dx from (x, dy) for SiLU: dy · σ(x)(1 + x(1 − σ(x))).</summary>
internal readonly struct SiluBackwardOp : IBinaryOp
{
    public float Apply(float x, float dy, float parameter)
    {
        var s = KernelMath.Sigmoid(x);
        return dy * s * (1f + x * (1f - s));
    }

    public static TV ApplyLanes<TV, TOps>(TV x, TV dy, TV parameter)
        where TV : struct
        where TOps : struct, IVectorOps<TV>
    {
        var s = LaneMath.Sigmoid<TV, TOps>(x);
        var one = TOps.Broadcast(1f);
        return TOps.Multiply(TOps.Multiply(dy, s), TOps.Add(one, TOps.Multiply(x, TOps.Subtract(one, s))));
    }
}

/// <summary>dx from (x, dy) for the exact GELU: dy · (Φ(x) + x·φ(x)).</summary>
internal readonly struct GeluBackwardOp : IBinaryOp
{
    public float Apply(float x, float dy, float parameter)
    {
        var cdf = 0.5f * (1f + KernelMath.Erf(x * KernelMath.InvSqrt2));
        var pdf = KernelMath.InvSqrt2Pi * XMath.Exp(-0.5f * x * x);
        return dy * (cdf + x * pdf);
    }

    public static TV ApplyLanes<TV, TOps>(TV x, TV dy, TV parameter)
        where TV : struct
        where TOps : struct, IVectorOps<TV>
    {
        var cdf = LaneMath.NormalCdf<TV, TOps>(x);
        var pdf = TOps.Multiply(TOps.Broadcast(KernelMath.InvSqrt2Pi),
            TOps.Exp(TOps.Multiply(TOps.Multiply(TOps.Broadcast(-0.5f), x), x)));
        return TOps.Multiply(dy, TOps.Add(cdf, TOps.Multiply(x, pdf)));
    }
}

/// <summary>Elementwise kernels over a <see cref="Spread"/> of the elements, specialised by operation at compile
/// time.</summary>
internal static class ElementwiseKernels
{
    /// <summary>y[i] = op(x[i], parameter) for the elements of this thread.</summary>
    [Kernel(KernelGrouping.Implicit, Specializations = [typeof(ScaleOp), typeof(SiluOp), typeof(GeluOp)])]
    public static void Map<TOp>(Index1D thread, ArrayView<float> x, ArrayView<float> y, float parameter,
        Spread spread)
        where TOp : struct, IUnaryOp
    {
        for (var runStart = spread.First(thread); runStart < spread.Count; runStart += spread.Step)
        {
            var runEnd = spread.End(runStart);
            for (var i = runStart; i < runEnd; i++)
                y[i] = default(TOp).Apply(x[i], parameter);
        }
    }

    /// <summary>y[i] = op(a[i], b[i], parameter) for the elements of this thread.</summary>
    [Kernel(KernelGrouping.Implicit, Specializations =
        [typeof(AddOp), typeof(ScaleAddOp), typeof(MultiplyOp), typeof(SiluBackwardOp), typeof(GeluBackwardOp)])]
    public static void Zip<TOp>(Index1D thread, ArrayView<float> a, ArrayView<float> b, ArrayView<float> y,
        float parameter, Spread spread)
        where TOp : struct, IBinaryOp
    {
        for (var runStart = spread.First(thread); runStart < spread.Count; runStart += spread.Step)
        {
            var runEnd = spread.End(runStart);
            for (var i = runStart; i < runEnd; i++)
                y[i] = default(TOp).Apply(a[i], b[i], parameter);
        }
    }
}
