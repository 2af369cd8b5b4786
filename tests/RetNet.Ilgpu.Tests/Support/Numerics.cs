using System.Globalization;

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

/// <summary>Random test data and the project's tolerance rule.</summary>
public static class Numerics
{
    /// <summary>
    /// The fp32 tolerance of the project, relative to the reference's largest magnitude (see
    /// <see cref="Check(string, IReadOnlyList{float}, IReadOnlyList{double}, double, double)"/>).
    /// </summary>
    public const double DefaultTolerance = 1e-4;

    /// <summary>
    /// 2^−126, the smallest normal fp32 magnitude: below it fp32 has no relative precision left, and GPUs flush such
    /// values to zero, so no bound is tighter than this (except a tolerance of 0, which demands equality).
    /// </summary>
    public const double SmallestNormal = 1.1754943508222875e-38;

    /// <summary>Uniform values in [−scale, scale), reproducible from the seed.</summary>
    public static float[] Uniform(int seed, int count, float scale = 1f)
    {
        var random = new Random(seed);
        var values = new float[count];
        for (var i = 0; i < count; i++)
            values[i] = (float)((random.NextDouble() * 2 - 1) * scale);
        return values;
    }

    /// <summary>
    /// The project's one tolerance rule:
    /// <c>max_i |actual_i − expected_i| ≤ tolerance · max(max_i |expected_i|, floor)</c>, and no NaN on either side.
    /// <para>
    /// The bound scales with the reference itself, so a result a thousand times smaller is held to a bound a thousand
    /// times smaller: fp32 rounding is relative, and an absolute term (the former <c>1 + max |expected|</c>) made every
    /// output below ~1e-4 pass whatever it held, zeros included. The error is measured against the largest magnitude
    /// rather than element by element because an element that cancels to near zero legitimately carries the rounding
    /// error of its larger terms.
    /// </para>
    /// <para>
    /// <paramref name="floor"/> is for results whose own magnitude says nothing about the rounding they carry: a
    /// reference that is all zeros or cancels as a whole, or is smaller than fp32 can represent. It must be derived from
    /// the inputs — typically the largest magnitude the inputs could produce, such as the same function evaluated on
    /// |inputs| (Σ|terms|, the classic bound on a sum's rounding error) — never a constant, so that it scales with them
    /// and a kernel that writes zeros still fails whenever the inputs imply a non-negligible output. The default, 0,
    /// holds the result to the reference's own scale alone; a reference of exact zeros then demands exact zeros.
    /// </para>
    /// <para>
    /// The one absolute term is fp32's own limit, <see cref="SmallestNormal"/> (~1.2e-38): a reference that small (say
    /// γ^T of a tiny decay over a long sequence) is not representable, and a kernel's 0 is the right fp32 answer.
    /// </para>
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
        double maxRef = 0, maxDiff = 0;
        var worst = -1;
        for (var i = 0; i < expected.Count; i++)
        {
            maxRef = Math.Max(maxRef, Math.Abs(expected[i]));
            var diff = Math.Abs(actual[i] - expected[i]);
            if (double.IsNaN(diff))
            {
                maxDiff = double.PositiveInfinity;
                worst = i;
                break;
            }
            if (diff > maxDiff)
            {
                maxDiff = diff;
                worst = i;
            }
        }
        if (double.IsNaN(maxRef))
            maxRef = double.PositiveInfinity;
        var scale = Math.Max(maxRef, floor);
        var bound = Math.Max(tolerance * scale, tolerance == 0 ? 0 : SmallestNormal);
        var passed = double.IsFinite(maxDiff) && maxDiff <= bound;
        var scaleText = bound > tolerance * scale
            ? $"{tolerance:G2} · {Format(scale)} raised to fp32's smallest normal"
            : floor > maxRef
                ? $"{tolerance:G2} · floor {Format(floor)} (max |expected| {Format(maxRef)})"
                : $"{tolerance:G2} · max |expected| {Format(maxRef)}";
        var message =
            $"{what}: max |Δ| = {Format(maxDiff)} at [{worst}] (got {(worst >= 0 ? Format(actual[worst]) : "-")}, " +
            $"expected {(worst >= 0 ? Format(expected[worst]) : "-")}); {(passed ? "within" : "exceeds")} bound " +
            $"{Format(bound)} = {scaleText}.";
        return new(passed, message, maxDiff, bound);
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
