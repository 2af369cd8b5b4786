namespace RetNet.Ilgpu.Kernels.Normalization;

/// <summary>A reference forward pass: the output and the row statistics.</summary>
/// <param name="Y">The output [R·D], row-major.</param>
/// <param name="Mean">The row means [R] (zeros for RMSNorm, which subtracts none).</param>
/// <param name="Rstd">The reciprocal RMS or standard deviation of each row [R].</param>
public sealed record NormalizationForwardResult(double[] Y, double[] Mean, double[] Rstd);

/// <summary>Reference gradients.</summary>
/// <param name="Dx">Gradient of x [R·D].</param>
/// <param name="DWeight">Gradient of the weight [D] = Σ_rows dy ⊙ x̂ (whether or not a weight was used).</param>
/// <param name="DBias">Gradient of the bias [D] = Σ_rows dy; null for RMSNorm, which has no bias.</param>
public sealed record NormalizationGradients(double[] Dx, double[] DWeight, double[]? DBias);

/// <summary>
/// Double-precision references of <see cref="RmsNorm"/> and <see cref="LayerNorm"/> over rows of
/// <c>dim</c> elements (x row-major [R, dim]), used by the tests. Straight from the formulas:
/// no fusion, two passes for the variance.
/// </summary>
public static class NormalizationReference
{
    /// <summary>y = x·rstd ⊙ weight, rstd = 1/√(mean(x²) + eps·epsScale[r]) per row r (epsScale absent: 1).</summary>
    public static NormalizationForwardResult RmsNormForward(IReadOnlyList<double> x, IReadOnlyList<double>? weight,
        int dim, double eps, IReadOnlyList<double>? epsScale = null) =>
        Forward(x, weight, bias: null, dim, eps, centered: false, epsScale);

    /// <summary>dx = rstd·(g − x̂·mean(g·x̂)) with g = dy ⊙ weight, x̂ = x·rstd; dWeight = Σ_rows dy ⊙ x̂ (rstd with
    /// the per-row eps of <see cref="RmsNormForward"/>).</summary>
    public static NormalizationGradients RmsNormBackward(IReadOnlyList<double> x, IReadOnlyList<double>? weight,
        IReadOnlyList<double> dy, int dim, double eps, IReadOnlyList<double>? epsScale = null) =>
        Backward(x, weight, dy, dim, eps, centered: false, epsScale);

    /// <summary>y = (x − mean)·rstd ⊙ weight + bias, rstd = 1/√(var + eps), var = mean((x − mean)²) per row.</summary>
    public static NormalizationForwardResult LayerNormForward(IReadOnlyList<double> x, IReadOnlyList<double>? weight,
        IReadOnlyList<double>? bias, int dim, double eps) =>
        Forward(x, weight, bias, dim, eps, centered: true);

    /// <summary>dx = rstd·(g − mean(g) − x̂·mean(g·x̂)), dWeight = Σ_rows dy ⊙ x̂, dBias = Σ_rows dy.</summary>
    public static NormalizationGradients LayerNormBackward(IReadOnlyList<double> x, IReadOnlyList<double>? weight,
        IReadOnlyList<double> dy, int dim, double eps) =>
        Backward(x, weight, dy, dim, eps, centered: true);

    private static NormalizationForwardResult Forward(IReadOnlyList<double> x, IReadOnlyList<double>? weight,
        IReadOnlyList<double>? bias, int dim, double eps, bool centered, IReadOnlyList<double>? epsScale = null)
    {
        var rows = RowsOf(x, dim);
        CheckEpsScale(epsScale, rows);
        var y = new double[x.Count];
        var mean = new double[rows];
        var rstd = new double[rows];
        for (var r = 0; r < rows; r++)
        {
            (mean[r], rstd[r]) = Statistics(x, r, dim, eps * (epsScale?[r] ?? 1.0), centered);
            for (var j = 0; j < dim; j++)
            {
                var xHat = (x[r * dim + j] - mean[r]) * rstd[r];
                y[r * dim + j] = xHat * (weight?[j] ?? 1.0) + (bias?[j] ?? 0.0);
            }
        }
        return new NormalizationForwardResult(y, mean, rstd);
    }

    private static NormalizationGradients Backward(IReadOnlyList<double> x, IReadOnlyList<double>? weight,
        IReadOnlyList<double> dy, int dim, double eps, bool centered, IReadOnlyList<double>? epsScale = null)
    {
        var rows = RowsOf(x, dim);
        CheckEpsScale(epsScale, rows);
        if (dy.Count != x.Count)
            throw new ArgumentException($"Argument 'dy' has {dy.Count} elements; expected {x.Count} like 'x'.",
                nameof(dy));
        var dx = new double[x.Count];
        var dWeight = new double[dim];
        var dBias = new double[dim];
        var xHat = new double[dim];
        var g = new double[dim];
        for (var r = 0; r < rows; r++)
        {
            var (mean, rstd) = Statistics(x, r, dim, eps * (epsScale?[r] ?? 1.0), centered);
            double meanG = 0, meanGX = 0;
            for (var j = 0; j < dim; j++)
            {
                xHat[j] = (x[r * dim + j] - mean) * rstd;
                g[j] = dy[r * dim + j] * (weight?[j] ?? 1.0);
                meanG += g[j] / dim;
                meanGX += g[j] * xHat[j] / dim;
                dWeight[j] += dy[r * dim + j] * xHat[j];
                dBias[j] += dy[r * dim + j];
            }
            if (!centered)
                meanG = 0;
            for (var j = 0; j < dim; j++)
                dx[r * dim + j] = rstd * (g[j] - meanG - xHat[j] * meanGX);
        }
        return new NormalizationGradients(dx, dWeight, centered ? dBias : null);
    }

    private static (double Mean, double Rstd) Statistics(IReadOnlyList<double> x, int row, int dim, double eps,
        bool centered)
    {
        double mean = 0;
        if (centered)
        {
            for (var j = 0; j < dim; j++)
                mean += x[row * dim + j];
            mean /= dim;
        }
        double squares = 0;
        for (var j = 0; j < dim; j++)
        {
            var c = x[row * dim + j] - mean;
            squares += c * c;
        }
        return (mean, 1 / Math.Sqrt(squares / dim + eps));
    }

    private static void CheckEpsScale(IReadOnlyList<double>? epsScale, int rows)
    {
        if (epsScale is not null && epsScale.Count != rows)
            throw new ArgumentException(
                $"Argument 'epsScale' has {epsScale.Count} values; expected one per row ({rows}).", nameof(epsScale));
    }

    private static int RowsOf(IReadOnlyList<double> x, int dim)
    {
        if (dim < 1 || x.Count % dim != 0)
            throw new ArgumentException(
                $"Argument 'dim' is {dim}; expected a positive divisor of the {x.Count} elements of 'x'.", nameof(dim));
        return x.Count / dim;
    }
}
