using ILGPU.Algorithms;

namespace RetNet.Ilgpu.Kernels;

/// <summary>Scalar functions usable inside kernels on every backend (no BCL bodies that throw).</summary>
internal static class KernelMath
{
    /// <summary>1/√(2π).</summary>
    public const float InvSqrt2Pi = 0.3989422804014327f;

    /// <summary>1/√2.</summary>
    public const float InvSqrt2 = 0.7071067811865476f;

    /// <summary>
    /// The error function to ~1.5e-7 absolute (Abramowitz and Stegun 7.1.26), below fp32 resolution near 1; neither
    /// PTX nor OpenCL C offers erf through ILGPU's XMath.
    /// </summary>
    public static float Erf(float x)
    {
        var sign = x < 0f ? -1f : 1f;
        var a = XMath.Abs(x);
        var t = 1f / (1f + 0.3275911f * a);
        var poly = t * (0.254829592f + t * (-0.284496736f + t * (1.421413741f + t * (-1.453152027f + t * 1.061405429f))));
        return sign * (1f - poly * XMath.Exp(-a * a));
    }

    /// <summary>
    /// e^x − 1 accurate to a few ulps for every x, small |x| included, where e^x − 1 itself loses all digits
    /// (Kahan's trick: the rounding error of u = e^x cancels in (u − 1)·x / log u). Neither PTX nor OpenCL C offers
    /// expm1 through ILGPU's XMath.
    /// </summary>
    public static float Expm1(float x)
    {
        var u = XMath.Exp(x);
        if (u == 1f)
            return x;
        var um1 = u - 1f;
        if (um1 == -1f)
            return -1f;
        return um1 * x / XMath.Log(u);
    }

    /// <summary>x·σ(x), computed without overflow for large |x|.</summary>
    public static float Silu(float x) => x * Sigmoid(x);

    /// <summary>1/(1 + e^(−x)), evaluated on the side where the exponential cannot overflow.</summary>
    public static float Sigmoid(float x)
    {
        if (x >= 0f)
            return 1f / (1f + XMath.Exp(-x));
        var e = XMath.Exp(x);
        return e / (1f + e);
    }
}
