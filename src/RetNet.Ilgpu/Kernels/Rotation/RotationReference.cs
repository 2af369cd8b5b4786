namespace RetNet.Ilgpu.Kernels.Rotation;

/// <summary>The rotation of queries and keys in double precision (torchscale's theta shift and GPT-NeoX's rotary
/// embedding), the reference of <see cref="ThetaShift"/>.</summary>
public static class RotationReference
{
    /// <summary>The angles of <paramref name="layout"/>: torchscale's θ_i = 10000^(−linspace(0, 1, Dk/2)_i) (a
    /// single pair gets θ = 1, linspace of one point being 0), or GPT-NeoX's θ_i = base^(−2i/Dk).</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="headDim"/> is not a positive even number, or
    /// <paramref name="theta"/> is not finite and &gt; 1.</exception>
    public static double[] Angles(int headDim, RotaryLayout layout = RotaryLayout.Interleaved, double theta = 10000)
    {
        if (headDim <= 0 || headDim % 2 != 0)
            throw new ArgumentOutOfRangeException(nameof(headDim), headDim,
                $"Argument 'headDim' is {headDim}; expected a positive even number.");
        if (!(double.IsFinite(theta) && theta > 1))
            throw new ArgumentOutOfRangeException(nameof(theta), theta, $"Argument 'theta' is {theta}; expected > 1.");
        var half = headDim / 2;
        var angles = new double[half];
        for (var i = 0; i < half; i++)
            angles[i] = layout == RotaryLayout.Halves
                ? Math.Pow(theta, -2.0 * i / headDim)
                : Math.Pow(theta, -(half == 1 ? 0 : (double)i / (half - 1)));
        return angles;
    }

    /// <summary>Where pair i's two elements sit in a head row of <paramref name="headDim"/>: (i·stride, i·stride +
    /// offset).</summary>
    internal static (int Stride, int Offset) Pairs(RotaryLayout layout, int headDim) =>
        layout == RotaryLayout.Halves ? (1, headDim / 2) : (2, 1);

    /// <summary>Returns x [B, T, H, Dk] rotated, token t of sequence b at position starts[b] + t, times scale.</summary>
    public static double[] Apply(IReadOnlyList<double> x, int batch, int seqLen, int heads, int headDim,
        IReadOnlyList<int> starts, double scale = 1, RotaryLayout layout = RotaryLayout.Interleaved)
    {
        var angles = Angles(headDim, layout);
        var (stride, offset) = Pairs(layout, headDim);
        var y = new double[x.Count];
        for (var b = 0; b < batch; b++)
        for (var t = 0; t < seqLen; t++)
        for (var h = 0; h < heads; h++)
        for (var i = 0; i < headDim / 2; i++)
        {
            var at = ((b * seqLen + t) * heads + h) * headDim + i * stride;
            var a = (starts[b] + t) * angles[i];
            var (s, c) = Math.SinCos(a);
            y[at] = scale * (x[at] * c - x[at + offset] * s);
            y[at + offset] = scale * (x[at + offset] * c + x[at] * s);
        }
        return y;
    }
}
