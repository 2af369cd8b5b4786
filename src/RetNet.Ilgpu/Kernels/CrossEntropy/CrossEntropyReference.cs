namespace RetNet.Ilgpu.Kernels.CrossEntropy;

/// <summary>Double-precision reference of <see cref="CrossEntropy"/>, used by the tests.</summary>
public static class CrossEntropyReference
{
    /// <summary>
    /// Mean softmax cross-entropy over rows whose target is not <paramref name="ignoreIndex"/>, and its gradient
    /// scaled by <paramref name="gradientScale"/>: (softmax − onehot) · gradientScale / count, 0 for ignored rows.
    /// Loss 0 and a zero gradient when every row is ignored.
    /// </summary>
    /// <param name="logits">Row-major [N, V].</param>
    /// <param name="targets">[N], each in [0, V) or the ignore index.</param>
    /// <param name="classes">V.</param>
    /// <param name="ignoreIndex">Target value of rows to skip.</param>
    /// <param name="gradientScale">Factor of the gradient only.</param>
    /// <exception cref="ArgumentException">A target is out of range or a length disagrees.</exception>
    public static (double Loss, double[] DLogits) ForwardBackward(IReadOnlyList<double> logits,
        IReadOnlyList<int> targets, int classes, int ignoreIndex = CrossEntropy.DefaultIgnoreIndex,
        double gradientScale = 1)
    {
        Check(logits, targets, classes, ignoreIndex);
        var count = targets.Count(t => t != ignoreIndex);
        var gradient = new double[logits.Count];
        var total = 0.0;
        for (var n = 0; n < targets.Count; n++)
        {
            if (targets[n] == ignoreIndex)
                continue;
            var logSumExp = LogSumExp(logits, n * classes, classes);
            total += logSumExp - logits[n * classes + targets[n]];
            for (var c = 0; c < classes; c++)
            {
                var p = Math.Exp(logits[n * classes + c] - logSumExp);
                gradient[n * classes + c] = (p - (c == targets[n] ? 1 : 0)) * gradientScale / count;
            }
        }
        return (count == 0 ? 0 : total / count, gradient);
    }

    /// <summary>The mean loss alone (for finite differences of the gradient).</summary>
    /// <exception cref="ArgumentException">A target is out of range or a length disagrees.</exception>
    public static double Loss(IReadOnlyList<double> logits, IReadOnlyList<int> targets, int classes,
        int ignoreIndex = CrossEntropy.DefaultIgnoreIndex) =>
        ForwardBackward(logits, targets, classes, ignoreIndex).Loss;

    private static double LogSumExp(IReadOnlyList<double> logits, int start, int count)
    {
        var max = double.NegativeInfinity;
        for (var c = 0; c < count; c++)
            max = Math.Max(max, logits[start + c]);
        var sum = 0.0;
        for (var c = 0; c < count; c++)
            sum += Math.Exp(logits[start + c] - max);
        return max + Math.Log(sum);
    }

    private static void Check(IReadOnlyList<double> logits, IReadOnlyList<int> targets, int classes, int ignoreIndex)
    {
        if (logits.Count != targets.Count * classes)
            throw new ArgumentException(
                $"Argument 'logits' has {logits.Count} elements; expected N · V = {targets.Count} · {classes}.",
                nameof(logits));
        for (var n = 0; n < targets.Count; n++)
        {
            if (targets[n] != ignoreIndex && (targets[n] < 0 || targets[n] >= classes))
                throw new ArgumentException(
                    $"Argument 'targets' has {targets[n]} at position {n}; expected a class in [0, {classes}) or " +
                    $"{ignoreIndex}.", nameof(targets));
        }
    }
}
