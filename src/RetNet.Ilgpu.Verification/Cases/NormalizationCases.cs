namespace RetNet.Ilgpu.Verification.Cases;

/// <summary>What the RMSNorm and LayerNorm checks of <c>retnet verify</c> and the tests hold gradients to.</summary>
public static class NormalizationCases
{
    /// <summary>
    /// The floor of dx's tolerance (<see cref="ToleranceRule"/>): the largest rstd·(|g_j| + |mean g| + |x̂_j|·mean|g·x̂|),
    /// g = dy ⊙ weight, the terms dx = rstd·(g − mean g − x̂·mean(g·x̂)) subtracts (without mean g for RMSNorm). Where
    /// they cancel, fp32 keeps only its precision relative to them, not to dx: in a row of one element RMSNorm's
    /// x̂² = x²/(x² + eps) is 1 − eps/x², so dx ≈ rstd·g·eps/x², a few millionths of its terms, and its fp32 value is
    /// off by percents of itself.
    /// </summary>
    /// <param name="x">The input [rows, dim].</param>
    /// <param name="weight">The weight [dim], or null for none (1).</param>
    /// <param name="dy">The output gradient [rows, dim].</param>
    /// <param name="dim">The row length.</param>
    /// <param name="rstd">1/σ per row, from the reference's forward pass.</param>
    /// <param name="mean">The mean per row for LayerNorm; null for RMSNorm.</param>
    public static double GradientFloor(double[] x, double[]? weight, double[] dy, int dim, double[] rstd,
        double[]? mean)
    {
        ArgumentNullException.ThrowIfNull(x);
        ArgumentNullException.ThrowIfNull(dy);
        ArgumentNullException.ThrowIfNull(rstd);
        double floor = 0;
        for (var r = 0; r < rstd.Length; r++)
        {
            double meanG = 0, meanGX = 0;
            for (var j = 0; j < dim; j++)
            {
                var g = Math.Abs(dy[r * dim + j] * (weight?[j] ?? 1.0));
                meanG += g / dim;
                meanGX += g * Math.Abs((x[r * dim + j] - (mean?[r] ?? 0)) * rstd[r]) / dim;
            }
            for (var j = 0; j < dim; j++)
            {
                var xHat = Math.Abs((x[r * dim + j] - (mean?[r] ?? 0)) * rstd[r]);
                var g = Math.Abs(dy[r * dim + j] * (weight?[j] ?? 1.0));
                floor = Math.Max(floor, rstd[r] * (g + (mean is null ? 0 : meanG) + xHat * meanGX));
            }
        }
        return floor;
    }
}
