namespace RetNet.Ilgpu.Retention;

/// <summary>Double-precision reference of <see cref="DecayNormalization"/>, summed term by term.</summary>
public static class DecayNormalizationReference
{
    /// <summary>s_p = Σ_{j=0}^{p} γ^j, added term by term (no closed form to share a rounding error with the kernel).</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="position"/> is negative.</exception>
    public static double DecaySum(double gamma, int position)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(position);
        double sum = 0, power = 1;
        for (var j = 0; j <= position; j++)
        {
            sum += power;
            power *= gamma;
        }
        return sum;
    }

    /// <summary>sums [B, T, H] flattened: <see cref="DecaySum"/> of head h at position startPositions[b] + t.</summary>
    public static double[] RowSums(IReadOnlyList<int> startPositions, int seqLen, IReadOnlyList<double> gammas)
    {
        ArgumentNullException.ThrowIfNull(startPositions);
        ArgumentNullException.ThrowIfNull(gammas);
        var heads = gammas.Count;
        var sums = new double[startPositions.Count * seqLen * heads];
        for (var b = 0; b < startPositions.Count; b++)
        for (var t = 0; t < seqLen; t++)
        for (var h = 0; h < heads; h++)
            sums[(b * seqLen + t) * heads + h] = DecaySum(gammas[h], startPositions[b] + t);
        return sums;
    }
}
