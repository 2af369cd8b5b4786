using MathNet.Numerics;

namespace RetNet.Ilgpu.Kernels.Elementwise;

/// <summary>Double-precision references of <see cref="Elementwise"/>, used by the tests.</summary>
public static class ElementwiseReference
{
    /// <summary>x·σ(x).</summary>
    public static double Silu(double x) => x / (1 + Math.Exp(-x));

    /// <summary>d/dx x·σ(x).</summary>
    public static double SiluDerivative(double x)
    {
        var s = 1 / (1 + Math.Exp(-x));
        return s * (1 + x * (1 - s));
    }

    /// <summary>x·Φ(x) with the exact error function.</summary>
    public static double Gelu(double x) => 0.5 * x * (1 + SpecialFunctions.Erf(x / Math.Sqrt(2)));

    /// <summary>Φ(x) + x·φ(x).</summary>
    public static double GeluDerivative(double x) =>
        0.5 * (1 + SpecialFunctions.Erf(x / Math.Sqrt(2))) + x * Math.Exp(-0.5 * x * x) / Math.Sqrt(2 * Math.PI);

    /// <summary>Applies <paramref name="f"/> to every element.</summary>
    public static double[] Map(IReadOnlyList<float> x, Func<double, double> f)
    {
        var y = new double[x.Count];
        for (var i = 0; i < y.Length; i++)
            y[i] = f(x[i]);
        return y;
    }

    /// <summary>Applies <paramref name="f"/> to every pair of elements.</summary>
    public static double[] Zip(IReadOnlyList<float> a, IReadOnlyList<float> b, Func<double, double, double> f)
    {
        if (a.Count != b.Count)
            throw new ArgumentException($"Argument 'b' has {b.Count} elements; expected {a.Count} like 'a'.", nameof(b));
        var y = new double[a.Count];
        for (var i = 0; i < y.Length; i++)
            y[i] = f(a[i], b[i]);
        return y;
    }
}
