using System.Globalization;
using RetNet.Ilgpu.Verification;
using RetNet.Ilgpu.Verification.Cases;

namespace RetNet.Ilgpu.Tests.Support;

/// <summary>
/// The verdict of <see cref="Numerics.Check(string, IReadOnlyList{float}, IReadOnlyList{double}, double, double)"/>: whether the values
/// are close, and a message that says why.
/// </summary>
/// <param name="Passed">True when max |actual − expected| ≤ <paramref name="Bound"/> and nothing is NaN.</param>
/// <param name="Message">The worst element, both values, the difference and how the bound was formed.</param>
/// <param name="MaxDifference">max |actual − expected|; +∞ when either side has a NaN or the counts differ.</param>
/// <param name="Bound">tolerance · max(max |expected|, floor), at least <see cref="Numerics.SmallestNormal"/>.</param>
public readonly record struct Closeness(bool Passed, string Message, double MaxDifference, double Bound)
{
    /// <inheritdoc/>
    public override string ToString() => Message;
}

/// <summary>
/// Random test data and the project's tolerance rule, as assertions with messages: both are the shared ones of
/// <c>retnet verify</c> (<see cref="CaseInputs"/>, <see cref="ToleranceRule"/>), so tests, properties and verification
/// draw the same inputs and judge them alike.
/// </summary>
public static class Numerics
{
    /// <summary>
    /// The fp32 tolerance of the project, relative to the reference's largest magnitude (see
    /// <see cref="Check(string, IReadOnlyList{float}, IReadOnlyList{double}, double, double)"/>).
    /// </summary>
    public const double DefaultTolerance = ToleranceRule.DefaultTolerance;

    /// <summary>2^−126, the smallest normal fp32 magnitude (<see cref="ToleranceRule.SmallestNormal"/>).</summary>
    public const double SmallestNormal = ToleranceRule.SmallestNormal;

    /// <summary>Uniform values in [−scale, scale), reproducible from the seed: <see cref="CaseInputs.Uniform"/>.</summary>
    public static float[] Uniform(int seed, int count, float scale = 1f) => CaseInputs.Uniform(seed, count, scale);

    /// <summary>
    /// The project's one tolerance rule, <see cref="ToleranceRule"/> (its remarks give the reasons):
    /// <c>max_i |actual_i − expected_i| ≤ tolerance · max(max_i |expected_i|, floor)</c>, and no NaN on either side;
    /// no bound is tighter than fp32's smallest normal, and a tolerance of 0 demands equality. The floor must be derived
    /// from the inputs' scale, never a constant.
    /// </summary>
    /// <param name="what">Names the compared quantity in the message.</param>
    /// <param name="actual">The values under test.</param>
    /// <param name="expected">The reference values, usually double precision.</param>
    /// <param name="tolerance">The relative tolerance; 0 demands equality.</param>
    /// <param name="floor">The least magnitude the bound is relative to, from the inputs' scale; 0 for none.</param>
    public static Closeness Check(string what, IReadOnlyList<float> actual, IReadOnlyList<double> expected,
        double tolerance = DefaultTolerance, double floor = 0)
    {
        if (actual.Count != expected.Count)
            return new(false, $"{what}: {actual.Count} values; expected {expected.Count}.", double.PositiveInfinity, 0);
        var verdict = ToleranceRule.Compare(actual, expected, tolerance, floor);
        var (worst, maxRef, scale, bound) = (verdict.WorstIndex, verdict.MaxReference, verdict.Scale, verdict.Bound);
        var scaleText = bound > tolerance * scale
            ? $"{tolerance:G2} · {Format(scale)} raised to fp32's smallest normal"
            : floor > maxRef
                ? $"{tolerance:G2} · floor {Format(floor)} (max |expected| {Format(maxRef)})"
                : $"{tolerance:G2} · max |expected| {Format(maxRef)}";
        var message =
            $"{what}: max |Δ| = {Format(verdict.MaxDifference)} at [{worst}] " +
            $"(got {(worst >= 0 ? Format(actual[worst]) : "-")}, " +
            $"expected {(worst >= 0 ? Format(expected[worst]) : "-")}); {(verdict.Passed ? "within" : "exceeds")} bound " +
            $"{Format(bound)} = {scaleText}.";
        return new(verdict.Passed, message, verdict.MaxDifference, bound);
    }

    /// <summary>
    /// <see cref="Check(string, IReadOnlyList{float}, IReadOnlyList{double}, double, double)"/> for a float reference (another fp32 result,
    /// compared the same way).
    /// </summary>
    public static Closeness Check(string what, IReadOnlyList<float> actual, IReadOnlyList<float> expected,
        double tolerance = DefaultTolerance, double floor = 0) =>
        Check(what, actual, expected.Select(v => (double)v).ToArray(), tolerance, floor);

    /// <summary>
    /// Asserts the project's tolerance rule,
    /// <see cref="Check(string, IReadOnlyList{float}, IReadOnlyList{double}, double, double)"/>:
    /// max |actual − expected| ≤ tolerance · max(max |expected|, floor), naming the first worst element.
    /// </summary>
    public static void AssertClose(string what, IReadOnlyList<float> actual, IReadOnlyList<double> expected,
        double tolerance = DefaultTolerance, double floor = 0)
    {
        var result = Check(what, actual, expected, tolerance, floor);
        Assert.True(result.Passed, result.Message);
    }

    /// <summary><see cref="AssertClose(string, IReadOnlyList{float}, IReadOnlyList{double}, double, double)"/> for a float reference.</summary>
    public static void AssertClose(string what, IReadOnlyList<float> actual, IReadOnlyList<float> expected,
        double tolerance = DefaultTolerance, double floor = 0) =>
        AssertClose(what, actual, expected.Select(v => (double)v).ToArray(), tolerance, floor);

    /// <summary>
    /// Asserts that a verdict of <see cref="Check(string, IReadOnlyList{float}, IReadOnlyList{double}, double, double)"/>
    /// is a rejection: the negative control of a comparison, a wrong result the check must not let through.
    /// </summary>
    public static void AssertRejected(Closeness verdict) =>
        Assert.False(verdict.Passed, $"the check accepted what it must reject: {verdict.Message}");

    private static string Format(double value) => value.ToString("G4", CultureInfo.InvariantCulture);
}
