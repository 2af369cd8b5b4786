namespace RetNet.Ilgpu.Verification;

/// <summary>The verdict of <see cref="ToleranceRule.Compare"/> on one output.</summary>
/// <param name="Passed">True when max |actual − expected| ≤ <paramref name="Bound"/> and nothing is NaN.</param>
/// <param name="MaxDifference">max |actual − expected|; +∞ when either side has a NaN or the counts differ.</param>
/// <param name="WorstIndex">Where <paramref name="MaxDifference"/> is (the first NaN if any); −1 when the counts differ
/// or nothing differs.</param>
/// <param name="MaxReference">max |expected| over the elements read (up to the first NaN).</param>
/// <param name="Scale">max(<paramref name="MaxReference"/>, floor): what the bound is relative to.</param>
/// <param name="Bound">tolerance · <paramref name="Scale"/>, at least <see cref="ToleranceRule.SmallestNormal"/>
/// unless the tolerance is 0.</param>
public readonly record struct ToleranceVerdict(bool Passed, double MaxDifference, int WorstIndex, double MaxReference,
    double Scale, double Bound)
{
    /// <summary>
    /// max |actual − expected| / max(max |expected|, floor): the error relative to the reference's scale, 0 for an exact
    /// match, +∞ for a NaN or a count mismatch.
    /// </summary>
    public double RelativeError => !double.IsFinite(MaxDifference) ? double.PositiveInfinity
        : MaxDifference == 0 ? 0
        : MaxDifference / Math.Max(Scale, ToleranceRule.SmallestNormal);
}

/// <summary>
/// The project's one tolerance rule, used by <c>retnet verify</c>, the tests and the properties alike:
/// <c>max_i |actual_i − expected_i| ≤ tolerance · max(max_i |expected_i|, floor)</c>, and no NaN on either side.
/// </summary>
/// <remarks>
/// <para>
/// The bound scales with the reference itself, so a result a thousand times smaller is held to a bound a thousand times
/// smaller: fp32 rounding is relative, and an absolute term (say <c>1 + max |expected|</c>) would let every output below
/// ~1e-4 pass whatever it held, zeros included. The error is measured against the largest magnitude rather than
/// element by element because an element that cancels to near zero legitimately carries the rounding error of its
/// larger terms.
/// </para>
/// <para>
/// The floor is for results whose own magnitude says nothing about the rounding they carry: a reference that is all
/// zeros or cancels as a whole, or is smaller than fp32 can represent. It must be derived from the inputs (typically the
/// same function evaluated on |inputs|, the classic bound on a sum's rounding error), never a constant, so that it
/// scales with them and a kernel that writes zeros still fails whenever the inputs imply a non-negligible output. A
/// floor of 0 holds the result to the reference's own scale alone; a reference of exact zeros then demands exact zeros.
/// </para>
/// <para>
/// The one absolute term is fp32's own limit, <see cref="SmallestNormal"/> (~1.2e-38): a reference that small (say γ^T
/// of a tiny decay over a long sequence) is not representable, and a kernel's 0 is the right fp32 answer. A tolerance
/// of 0 demands equality.
/// </para>
/// </remarks>
public static class ToleranceRule
{
    /// <summary>The fp32 tolerance of the project, relative to the reference's largest magnitude.</summary>
    public const double DefaultTolerance = 1e-4;

    /// <summary>
    /// 2^−126, the smallest normal fp32 magnitude: below it fp32 has no relative precision left, and GPUs flush such
    /// values to zero, so no bound is tighter than this (except a tolerance of 0, which demands equality).
    /// </summary>
    public const double SmallestNormal = 1.1754943508222875e-38;

    /// <summary>Holds <paramref name="actual"/> to <paramref name="expected"/> by the rule.</summary>
    /// <param name="actual">The values under test.</param>
    /// <param name="expected">The reference values, usually double precision.</param>
    /// <param name="tolerance">The relative tolerance; 0 demands equality.</param>
    /// <param name="floor">The least magnitude the bound is relative to, from the inputs' scale; 0 for none.</param>
    public static ToleranceVerdict Compare(IReadOnlyList<float> actual, IReadOnlyList<double> expected,
        double tolerance = DefaultTolerance, double floor = 0)
    {
        ArgumentNullException.ThrowIfNull(actual);
        ArgumentNullException.ThrowIfNull(expected);
        if (actual.Count != expected.Count)
            return new(false, double.PositiveInfinity, -1, 0, 0, 0);
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
        return new(double.IsFinite(maxDiff) && maxDiff <= bound, maxDiff, worst, maxRef, scale, bound);
    }
}
