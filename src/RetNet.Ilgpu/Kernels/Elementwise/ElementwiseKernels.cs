using ILGPU;
using ILGPU.Algorithms;

namespace RetNet.Ilgpu.Kernels.Elementwise;

/// <summary>An elementwise function of one value and a scalar parameter.</summary>
internal interface IUnaryOp
{
    float Apply(float x, float parameter);
}

/// <summary>An elementwise function of two values and a scalar parameter.</summary>
internal interface IBinaryOp
{
    float Apply(float a, float b, float parameter);
}

/// <summary>y = parameter · x.</summary>
internal readonly struct ScaleOp : IUnaryOp
{
    public float Apply(float x, float parameter) => parameter * x;
}

/// <summary>y = x·σ(x).</summary>
internal readonly struct SiluOp : IUnaryOp
{
    public float Apply(float x, float parameter) => KernelMath.Silu(x);
}

/// <summary>y = x·Φ(x), the exact (erf) GELU.</summary>
internal readonly struct GeluOp : IUnaryOp
{
    public float Apply(float x, float parameter) => 0.5f * x * (1f + KernelMath.Erf(x * KernelMath.InvSqrt2));
}

/// <summary>y = a + b.</summary>
internal readonly struct AddOp : IBinaryOp
{
    public float Apply(float a, float b, float parameter) => a + b;
}

/// <summary>y = parameter · a + b (deepnorm's scaled residual).</summary>
internal readonly struct ScaleAddOp : IBinaryOp
{
    public float Apply(float a, float b, float parameter) => parameter * a + b;
}

/// <summary>y = a · b.</summary>
internal readonly struct MultiplyOp : IBinaryOp
{
    public float Apply(float a, float b, float parameter) => a * b;
}

/// <summary>dx from (x, dy) for SiLU: dy · σ(x)(1 + x(1 − σ(x))).</summary>
internal readonly struct SiluBackwardOp : IBinaryOp
{
    public float Apply(float x, float dy, float parameter)
    {
        var s = KernelMath.Sigmoid(x);
        return dy * s * (1f + x * (1f - s));
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
