namespace RetNet.Ilgpu.Verification;

/// <summary>
/// The project's one tolerance rule (the tests' <c>Numerics.Check</c> states it with its reasons):
/// max_i |actual_i − expected_i| ≤ tolerance · max(max_i |expected_i|, floor), no NaN on either side, and no bound
/// tighter than fp32's smallest normal. The floor, derived from the inputs, is for results that cancel as a whole.
/// </summary>
internal static class ToleranceRule
{
    /// <summary>2^−126, the smallest normal fp32 magnitude: below it fp32 has no relative precision left.</summary>
    public const double SmallestNormal = 1.1754943508222875e-38;

    /// <summary>
    /// Whether <paramref name="actual"/> passes, and its error relative to max(max |expected|, floor): +∞ for a NaN or
    /// a length mismatch, 0 for an exact match of an all-zero reference.
    /// </summary>
    public static (bool Passed, double RelativeError) Compare(IReadOnlyList<float> actual,
        IReadOnlyList<double> expected, double tolerance, double floor)
    {
        if (actual.Count != expected.Count)
            return (false, double.PositiveInfinity);
        double maxRef = 0, maxDiff = 0;
        for (var i = 0; i < expected.Count; i++)
        {
            maxRef = Math.Max(maxRef, Math.Abs(expected[i]));
            var diff = Math.Abs(actual[i] - expected[i]);
            if (double.IsNaN(diff))
                return (false, double.PositiveInfinity);
            maxDiff = Math.Max(maxDiff, diff);
        }
        if (double.IsNaN(maxRef))
            return (false, double.PositiveInfinity);
        var scale = Math.Max(maxRef, floor);
        var bound = Math.Max(tolerance * scale, tolerance == 0 ? 0 : SmallestNormal);
        var passed = double.IsFinite(maxDiff) && maxDiff <= bound;
        var relative = maxDiff == 0 ? 0 : maxDiff / Math.Max(scale, SmallestNormal);
        return (passed, relative);
    }
}
