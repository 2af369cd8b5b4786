using System.Globalization;
using RetNet.Ilgpu.Kernels.Reductions;
using RetNet.Ilgpu.Tensors;

namespace RetNet.Ilgpu.Training;

/// <summary>
/// Global-norm gradient clipping as PyTorch's <c>clip_grad_norm_</c> does it: the norm of all gradients together, and
/// the factor that scales them to at most a maximum norm (pass it to <see cref="AdamW.Step"/> as the gradient scale
/// rather than rewriting the gradients).
/// </summary>
public static class GradientClipping
{
    /// <summary>
    /// √(Σ over every tensor of Σ g²), from the device's deterministic two-pass reduction (bit-identical run to run for
    /// a device); the square root is taken in double of the fp32 sum. 0 for an empty list.
    /// </summary>
    /// <param name="gradients">Gradient tensors on one device.</param>
    /// <exception cref="ArithmeticException">The norm is not finite: a gradient holds NaN or ±∞, or Σ g² overflows
    /// fp32 (a norm above ~1.8e19). The message names the first offending tensor.</exception>
    /// <exception cref="ArgumentException">The tensors live on different devices.</exception>
    public static double GlobalNorm(IReadOnlyList<Tensor> gradients)
    {
        ArgumentNullException.ThrowIfNull(gradients);
        var sumOfSquares = Reductions.SumOfSquares(gradients);
        if (float.IsFinite(sumOfSquares))
            return Math.Sqrt(sumOfSquares);
        // Only on failure: one reduction per tensor to say which one diverged.
        for (var k = 0; k < gradients.Count; k++)
        {
            var own = Reductions.SumOfSquares(gradients[k]);
            if (!float.IsFinite(own))
                throw new ArithmeticException(
                    $"The gradient norm is not finite: Σ g² of gradients[{k}] {ShapeCheck.Format(gradients[k].Shape)} " +
                    $"is {Describe(own)}; expected finite gradients (the step must be skipped or training restarted).");
        }
        throw new ArithmeticException(
            $"The gradient norm is not finite: Σ g² over all {gradients.Count} tensors is {Describe(sumOfSquares)} " +
            "although each tensor's is finite (fp32 overflow of the total); expected finite gradients.");
    }

    /// <summary>
    /// The factor min(1, maxNorm / (norm + 1e-6)) that brings gradients of norm <paramref name="norm"/> to at most
    /// <paramref name="maxNorm"/>, with PyTorch's 1e-6 guard; 1 when <paramref name="maxNorm"/> ≤ 0 (no clipping).
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="norm"/> is negative, NaN or ±∞, or
    /// <paramref name="maxNorm"/> is NaN or ±∞.</exception>
    public static double ClipScale(double norm, double maxNorm)
    {
        if (!double.IsFinite(norm) || norm < 0)
            throw new ArgumentOutOfRangeException(nameof(norm), norm,
                "Expected a finite gradient norm ≥ 0; a non-finite norm means the gradients diverged.");
        if (!double.IsFinite(maxNorm))
            throw new ArgumentOutOfRangeException(nameof(maxNorm), maxNorm,
                "Expected a finite maximum norm (≤ 0 for no clipping).");
        if (maxNorm <= 0)
            return 1.0;
        return Math.Min(1.0, maxNorm / (norm + 1e-6));
    }

    private static string Describe(float value) =>
        float.IsNaN(value) ? "NaN" : value.ToString(CultureInfo.InvariantCulture);
}
