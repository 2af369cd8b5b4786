namespace RetNet.Ilgpu.Training;

/// <summary>The shape of the decay after warm-up.</summary>
public enum ScheduleKind
{
    /// <summary>Half a cosine from the peak down to the minimum.</summary>
    Cosine,

    /// <summary>A straight line from the peak down to the minimum.</summary>
    Linear,

    /// <summary>(1 − progress)^Power between the peak and the minimum (fairseq's polynomial_decay; the RetNet paper's
    /// schedule). Power 1 is <see cref="Linear"/>.</summary>
    Polynomial,

    /// <summary>The peak, unchanged after warm-up.</summary>
    Constant,
}

/// <summary>
/// A learning-rate schedule: linear warm-up from PeakLearningRate / WarmupSteps at step 1 to PeakLearningRate at step
/// WarmupSteps, then a decay of the given kind to MinLearningRateRatio · PeakLearningRate at TotalSteps, held after.
/// </summary>
/// <param name="PeakLearningRate">The rate at the end of warm-up; finite, &gt; 0.</param>
/// <param name="WarmupSteps">Steps of linear warm-up, in [0, TotalSteps]; 0 starts at the peak.</param>
/// <param name="TotalSteps">The step at which the decay reaches its minimum; ≥ 1.</param>
/// <param name="Kind">The decay after warm-up.</param>
/// <param name="MinLearningRateRatio">The final rate as a fraction of the peak, in [0, 1].</param>
/// <param name="Power">The exponent of <see cref="ScheduleKind.Polynomial"/>; finite, &gt; 0.</param>
public sealed record LearningRateSchedule(double PeakLearningRate, int WarmupSteps, int TotalSteps, ScheduleKind Kind,
    double MinLearningRateRatio = 0.1, double Power = 1.0)
{
    /// <summary>The learning rate of step <paramref name="step"/>, counted from 1. Steps past
    /// <see cref="TotalSteps"/> keep the final rate.</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="step"/> is below 1, or the schedule is invalid
    /// (see <see cref="Validate"/>).</exception>
    public double At(int step)
    {
        Validate();
        if (step < 1)
            throw new ArgumentOutOfRangeException(nameof(step), step, "Expected a step ≥ 1 (steps count from 1).");
        if (step <= WarmupSteps)
            return PeakLearningRate * step / WarmupSteps;
        if (Kind == ScheduleKind.Constant)
            return PeakLearningRate;
        var minimum = MinLearningRateRatio * PeakLearningRate;
        var progress = TotalSteps == WarmupSteps
            ? 1.0
            : Math.Min(1.0, (double)(step - WarmupSteps) / (TotalSteps - WarmupSteps));
        var fraction = Kind switch
        {
            ScheduleKind.Cosine => 0.5 * (1 + Math.Cos(Math.PI * progress)),
            ScheduleKind.Linear => 1 - progress,
            _ => Math.Pow(1 - progress, Power),
        };
        return minimum + (PeakLearningRate - minimum) * fraction;
    }

    /// <summary>Rejects a schedule that is undefined or would give a negative or non-finite rate.</summary>
    /// <exception cref="ArgumentOutOfRangeException">A value is out of range; names it, the range and the value.</exception>
    public void Validate()
    {
        if (!(PeakLearningRate > 0 && double.IsFinite(PeakLearningRate)))
            throw new ArgumentOutOfRangeException(nameof(PeakLearningRate), PeakLearningRate,
                "Expected a finite PeakLearningRate > 0.");
        if (TotalSteps < 1)
            throw new ArgumentOutOfRangeException(nameof(TotalSteps), TotalSteps, "Expected TotalSteps ≥ 1.");
        if (WarmupSteps < 0 || WarmupSteps > TotalSteps)
            throw new ArgumentOutOfRangeException(nameof(WarmupSteps), WarmupSteps,
                $"Expected WarmupSteps in [0, TotalSteps = {TotalSteps}].");
        if (!Enum.IsDefined(Kind))
            throw new ArgumentOutOfRangeException(nameof(Kind), Kind,
                "Expected one of cosine, linear, polynomial, constant.");
        if (!(MinLearningRateRatio >= 0 && MinLearningRateRatio <= 1))
            throw new ArgumentOutOfRangeException(nameof(MinLearningRateRatio), MinLearningRateRatio,
                "Expected MinLearningRateRatio in [0, 1].");
        if (!(Power > 0 && double.IsFinite(Power)))
            throw new ArgumentOutOfRangeException(nameof(Power), Power, "Expected a finite Power > 0.");
    }

    /// <summary>Reads a schedule kind, case-insensitively: cosine, linear, polynomial or constant.</summary>
    /// <exception cref="ArgumentException">Any other text; the message lists the choices.</exception>
    public static ScheduleKind Parse(string kind)
    {
        ArgumentNullException.ThrowIfNull(kind);
        return kind.Trim().ToLowerInvariant() switch
        {
            "cosine" => ScheduleKind.Cosine,
            "linear" => ScheduleKind.Linear,
            "polynomial" => ScheduleKind.Polynomial,
            "constant" => ScheduleKind.Constant,
            _ => throw new ArgumentException(
                $"Argument 'kind' is '{kind}'; expected cosine, linear, polynomial or constant.", nameof(kind)),
        };
    }
}
