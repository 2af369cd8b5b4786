namespace RetNet.Ilgpu.Kernels.Optimizer;

/// <summary>Double-precision reference of the AdamW update (<see cref="Training.AdamW"/>), used by the tests.</summary>
public static class AdamWReference
{
    /// <summary>
    /// Applies step <paramref name="step"/> (counted from 1) of AdamW with decoupled weight decay to
    /// <paramref name="parameter"/>, <paramref name="expAvg"/> and <paramref name="expAvgSq"/> in place:
    /// g = scale·grad; p ← p·(1 − lr·wd); m ← β1·m + (1 − β1)·g; v ← β2·v + (1 − β2)·g²;
    /// p ← p − (lr / (1 − β1^t))·m / (√v / √(1 − β2^t) + ε). <paramref name="weightDecay"/> is 0 for tensors that do
    /// not decay.
    /// </summary>
    /// <exception cref="ArgumentException">The arrays differ in length.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="step"/> is below 1.</exception>
    public static void Step(double[] parameter, double[] expAvg, double[] expAvgSq, IReadOnlyList<float> gradient,
        long step, double learningRate, double beta1, double beta2, double epsilon, double weightDecay,
        double gradientScale = 1.0)
    {
        ArgumentNullException.ThrowIfNull(parameter);
        ArgumentNullException.ThrowIfNull(expAvg);
        ArgumentNullException.ThrowIfNull(expAvgSq);
        ArgumentNullException.ThrowIfNull(gradient);
        if (expAvg.Length != parameter.Length || expAvgSq.Length != parameter.Length || gradient.Count != parameter.Length)
            throw new ArgumentException(
                $"Argument 'gradient' has {gradient.Count} elements, 'expAvg' {expAvg.Length}, 'expAvgSq' " +
                $"{expAvgSq.Length}; expected {parameter.Length} like 'parameter'.", nameof(gradient));
        ArgumentOutOfRangeException.ThrowIfLessThan(step, 1);
        var biasCorrection1 = 1 - Math.Pow(beta1, step);
        var biasCorrection2 = 1 - Math.Pow(beta2, step);
        for (var i = 0; i < parameter.Length; i++)
        {
            var g = gradientScale * gradient[i];
            parameter[i] *= 1 - learningRate * weightDecay;
            expAvg[i] = beta1 * expAvg[i] + (1 - beta1) * g;
            expAvgSq[i] = beta2 * expAvgSq[i] + (1 - beta2) * g * g;
            var denominator = Math.Sqrt(expAvgSq[i]) / Math.Sqrt(biasCorrection2) + epsilon;
            parameter[i] -= learningRate / biasCorrection1 * expAvg[i] / denominator;
        }
    }
}
