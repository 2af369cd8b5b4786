namespace RetNet.Ilgpu.Kernels.Rotation;

/// <summary>torchscale's theta shift in double precision, the reference of <see cref="ThetaShift"/>.</summary>
public static class RotationReference
{
    /// <summary>θ_i = 10000^(−linspace(0, 1, Dk/2)_i); a single pair gets θ = 1 (linspace of one point is 0).</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="headDim"/> is not a positive even number.</exception>
    public static double[] Angles(int headDim)
    {
        if (headDim <= 0 || headDim % 2 != 0)
            throw new ArgumentOutOfRangeException(nameof(headDim), headDim,
                $"Argument 'headDim' is {headDim}; expected a positive even number.");
        var half = headDim / 2;
        var angles = new double[half];
        for (var i = 0; i < half; i++)
            angles[i] = Math.Pow(10000, -(half == 1 ? 0 : (double)i / (half - 1)));
        return angles;
    }

    /// <summary>Returns x [B, T, H, Dk] rotated, token t of sequence b at position starts[b] + t, times scale.</summary>
    public static double[] Apply(IReadOnlyList<double> x, int batch, int seqLen, int heads, int headDim,
        IReadOnlyList<int> starts, double scale = 1)
    {
        var angles = Angles(headDim);
        var y = new double[x.Count];
        for (var b = 0; b < batch; b++)
        for (var t = 0; t < seqLen; t++)
        for (var h = 0; h < heads; h++)
        for (var i = 0; i < headDim / 2; i++)
        {
            var at = ((b * seqLen + t) * heads + h) * headDim + 2 * i;
            var a = (starts[b] + t) * angles[i];
            var (s, c) = Math.SinCos(a);
            y[at] = scale * (x[at] * c - x[at + 1] * s);
            y[at + 1] = scale * (x[at + 1] * c + x[at] * s);
        }
        return y;
    }
}
