namespace RetNet.Ilgpu.Tests.Support;

/// <summary>Random test data and the project's tolerance rule.</summary>
public static class Numerics
{
    /// <summary>The fp32 tolerance of the project: max |a − b| ≤ this · (1 + max |reference|).</summary>
    public const double DefaultTolerance = 1e-4;

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
    /// Asserts max |actual − expected| ≤ tolerance · (1 + max |expected|), naming the first worst element. NaN in
    /// either side fails.
    /// </summary>
    public static void AssertClose(string what, IReadOnlyList<float> actual, IReadOnlyList<double> expected,
        double tolerance = DefaultTolerance)
    {
        Assert.True(actual.Count == expected.Count,
            $"{what}: {actual.Count} values; expected {expected.Count}.");
        double maxRef = 0, maxDiff = 0;
        var worst = -1;
        for (var i = 0; i < expected.Count; i++)
        {
            maxRef = Math.Max(maxRef, Math.Abs(expected[i]));
            var diff = Math.Abs(actual[i] - expected[i]);
            if (double.IsNaN(diff) || diff > maxDiff)
            {
                maxDiff = double.IsNaN(diff) ? double.PositiveInfinity : diff;
                worst = i;
                if (double.IsNaN(diff))
                    break;
            }
        }
        var bound = tolerance * (1 + maxRef);
        Assert.True(maxDiff <= bound,
            $"{what}: max |Δ| = {maxDiff:G4} at [{worst}] (got {(worst >= 0 ? actual[worst] : 0)}, expected " +
            $"{(worst >= 0 ? expected[worst] : 0)}); bound {bound:G4} = {tolerance:G2}·(1 + {maxRef:G4}).");
    }

    /// <summary><see cref="AssertClose(string, IReadOnlyList{float}, IReadOnlyList{double}, double)"/> for a float reference.</summary>
    public static void AssertClose(string what, IReadOnlyList<float> actual, IReadOnlyList<float> expected,
        double tolerance = DefaultTolerance) =>
        AssertClose(what, actual, expected.Select(v => (double)v).ToArray(), tolerance);
}
