using RetNet.Ilgpu.Tensors;

namespace RetNet.Ilgpu.Kernels.Normalization;

/// <summary>
/// LayerNorm over the last dimension of x, viewed as rows [R, D] (any rank ≥ 1):
/// y = (x − mean)/√(var + eps) ⊙ weight + bias, weight and bias each optional. The variance is the biased one
/// (divided by D) and is taken about the mean in a second pass. Accumulation is fp32; results are identical run to
/// run. With eps = 0 a constant row divides by zero.
/// </summary>
public static class LayerNorm
{
    /// <summary>
    /// Writes y, and the row statistics mean [R] and rstd = 1/√(var + eps) [R] when they are given (saved for
    /// <see cref="Backward(Tensor, Tensor?, Tensor, float, Tensor, Tensor?, Tensor?, Tensor?, Tensor?)"/>; both or neither). y may be x itself (in place).
    /// </summary>
    /// <param name="x">Input [..., D].</param>
    /// <param name="weight">Scale [D], or null for none.</param>
    /// <param name="bias">Shift [D], or null for none.</param>
    /// <param name="eps">Added to the variance; finite and ≥ 0.</param>
    /// <param name="y">Output, the shape of x.</param>
    /// <param name="mean">Optional output [R], R = x.Length / D: the mean of each row.</param>
    /// <param name="rstd">Optional output [R]: the reciprocal standard deviation of each row.</param>
    /// <exception cref="ArgumentException">A shape, device or aliasing mismatch; names the argument.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="eps"/> is negative, infinite or NaN.</exception>
    public static void Forward(Tensor x, Tensor? weight, Tensor? bias, float eps, Tensor y, Tensor? mean = null,
        Tensor? rstd = null) =>
        Forward(x, weight, bias, eps, y, mean, rstd, null);

    /// <summary>
    /// Gradients of <see cref="Forward(Tensor, Tensor?, Tensor?, float, Tensor, Tensor?, Tensor?)"/> for the output gradient dy. With g = dy ⊙ weight and
    /// x̂ = (x − mean)·rstd: dx = rstd·(g − mean(g) − x̂·mean(g·x̂)), dWeight = Σ_rows dy ⊙ x̂, dBias = Σ_rows dy.
    /// Outputs are overwritten, not accumulated. Pass the mean and rstd saved by the forward pass; without them
    /// they are recomputed into temporaries and the call waits for the device before freeing them.
    /// </summary>
    /// <param name="x">The forward input [..., D].</param>
    /// <param name="weight">The forward scale [D], or null.</param>
    /// <param name="dy">Gradient of y, the shape of x.</param>
    /// <param name="eps">The forward eps (used when recomputing the statistics); finite and ≥ 0.</param>
    /// <param name="dx">Output gradient of x, the shape of x; distinct from every other argument.</param>
    /// <param name="dWeight">Output gradient of the weight [D], computed when given; requires a weight.</param>
    /// <param name="dBias">Output gradient of the bias [D], computed when given (it does not depend on the bias).</param>
    /// <param name="mean">The row means [R] saved by <see cref="Forward(Tensor, Tensor?, Tensor?, float, Tensor, Tensor?, Tensor?)"/>, or null (with rstd) to recompute.</param>
    /// <param name="rstd">The reciprocal standard deviations [R] saved by <see cref="Forward(Tensor, Tensor?, Tensor?, float, Tensor, Tensor?, Tensor?)"/>, or null.</param>
    /// <exception cref="ArgumentException">A shape, device or aliasing mismatch; names the argument.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="eps"/> is negative, infinite or NaN.</exception>
    public static void Backward(Tensor x, Tensor? weight, Tensor dy, float eps, Tensor dx, Tensor? dWeight = null,
        Tensor? dBias = null, Tensor? mean = null, Tensor? rstd = null) =>
        Backward(x, weight, dy, eps, dx, dWeight, dBias, mean, rstd, null);

    /// <summary><see cref="Forward(Tensor, Tensor?, Tensor?, float, Tensor, Tensor?, Tensor?)"/> with an explicit launch configuration (tests).</summary>
    internal static void Forward(Tensor x, Tensor? weight, Tensor? bias, float eps, Tensor y, Tensor? mean,
        Tensor? rstd, NormalizationOptions? options) =>
        RowNormalization.Forward<LayerNormalization>(x, weight, bias, eps, y, mean, rstd, options);

    /// <summary><see cref="Backward(Tensor, Tensor?, Tensor, float, Tensor, Tensor?, Tensor?, Tensor?, Tensor?)"/> with an explicit launch configuration (tests).</summary>
    internal static void Backward(Tensor x, Tensor? weight, Tensor dy, float eps, Tensor dx, Tensor? dWeight,
        Tensor? dBias, Tensor? mean, Tensor? rstd, NormalizationOptions? options) =>
        RowNormalization.Backward<LayerNormalization>(x, weight, dy, eps, dx, dWeight, dBias, mean, rstd, options);
}
