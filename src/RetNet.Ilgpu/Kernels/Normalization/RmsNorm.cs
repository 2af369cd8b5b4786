using RetNet.Ilgpu.Tensors;

namespace RetNet.Ilgpu.Kernels.Normalization;

/// <summary>
/// RMSNorm over the last dimension of x, viewed as rows [R, D] (any rank ≥ 1):
/// y = x / √(mean(x²) + eps) ⊙ weight, the weight optional (RetNet's per-head norm has none). Accumulation is fp32;
/// results are identical run to run. With eps = 0 an all-zero row divides by zero.
/// </summary>
public static class RmsNorm
{
    /// <summary>
    /// Writes y = x·rstd [⊙ weight] with rstd = 1/√(mean(x²) + eps) per row, and rstd [R] itself when
    /// <paramref name="rstd"/> is given (saved for <see cref="Backward(Tensor, Tensor?, Tensor, float, Tensor, Tensor?, Tensor?)"/>). y may be x itself (in place).
    /// </summary>
    /// <param name="x">Input [..., D].</param>
    /// <param name="weight">Scale [D], or null for none.</param>
    /// <param name="eps">Added to the mean square; finite and ≥ 0.</param>
    /// <param name="y">Output, the shape of x.</param>
    /// <param name="rstd">Optional output [R], R = x.Length / D: the reciprocal RMS of each row.</param>
    /// <exception cref="ArgumentException">A shape, device or aliasing mismatch; names the argument.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="eps"/> is negative, infinite or NaN.</exception>
    public static void Forward(Tensor x, Tensor? weight, float eps, Tensor y, Tensor? rstd = null) =>
        Forward(x, weight, eps, y, rstd, null);

    /// <summary>
    /// Gradients of <see cref="Forward(Tensor, Tensor?, float, Tensor, Tensor?)"/> for the output gradient dy. With g = dy ⊙ weight and x̂ = x·rstd:
    /// dx = rstd·(g − x̂·mean(g·x̂)) and dWeight = Σ_rows dy ⊙ x̂. dx and dWeight are overwritten, not accumulated.
    /// Pass the <paramref name="rstd"/> saved by the forward pass; without it the statistics are recomputed into a
    /// temporary and the call waits for the device before freeing it.
    /// </summary>
    /// <param name="x">The forward input [..., D].</param>
    /// <param name="weight">The forward scale [D], or null.</param>
    /// <param name="dy">Gradient of y, the shape of x.</param>
    /// <param name="eps">The forward eps (used when recomputing rstd); finite and ≥ 0.</param>
    /// <param name="dx">Output gradient of x, the shape of x; distinct from every other argument.</param>
    /// <param name="dWeight">Output gradient of the weight [D], computed when given; requires a weight.</param>
    /// <param name="rstd">The reciprocal RMS [R] saved by <see cref="Forward(Tensor, Tensor?, float, Tensor, Tensor?)"/>, or null to recompute it.</param>
    /// <exception cref="ArgumentException">A shape, device or aliasing mismatch; names the argument.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="eps"/> is negative, infinite or NaN.</exception>
    public static void Backward(Tensor x, Tensor? weight, Tensor dy, float eps, Tensor dx, Tensor? dWeight = null,
        Tensor? rstd = null) =>
        Backward(x, weight, dy, eps, dx, dWeight, rstd, null);

    /// <summary>
    /// <see cref="Forward(Tensor, Tensor?, float, Tensor, Tensor?)"/> with an explicit launch configuration (null: the
    /// device's) and, when <paramref name="epsScale"/> [R] is given, eps·epsScale[r] added in row r instead of eps:
    /// the model's decay-normalised head norm (docs/MATH.md §4).
    /// </summary>
    internal static void Forward(Tensor x, Tensor? weight, float eps, Tensor y, Tensor? rstd,
        NormalizationOptions? options, Tensor? epsScale = null) =>
        RowNormalization.Forward<RmsNormalization>(x, weight, bias: null, eps, y, mean: null, rstd, options, epsScale);

    /// <summary><see cref="Backward(Tensor, Tensor?, Tensor, float, Tensor, Tensor?, Tensor?)"/> with an explicit
    /// launch configuration and the per-row eps of <see cref="Forward(Tensor, Tensor?, float, Tensor, Tensor?, NormalizationOptions?, Tensor?)"/>
    /// (used when rstd is recomputed).</summary>
    internal static void Backward(Tensor x, Tensor? weight, Tensor dy, float eps, Tensor dx, Tensor? dWeight,
        Tensor? rstd, NormalizationOptions? options, Tensor? epsScale = null) =>
        RowNormalization.Backward<RmsNormalization>(x, weight, dy, eps, dx, dWeight, dBias: null, mean: null, rstd,
            options, epsScale);
}
