using RetNet.Ilgpu.Tensors;

namespace RetNet.Ilgpu.Tests.Tensors;

/// <summary>
/// The vectorised finite check of logits (<see cref="FiniteValues"/>): a NaN, +∞ or −∞ anywhere (in a full vector, in
/// the tail past the last one, first, last) is found at its index; finite values as large as float.MaxValue, as small
/// as the smallest subnormal and −0 pass. Negative control: the same arrays with the bad value put back to finite pass.
/// </summary>
public sealed class FiniteValuesTests
{
    public static TheoryData<int> Lengths => [1, 7, 8, 9, 16, 256, 259];

    [Theory, MemberData(nameof(Lengths))]
    public void Every_non_finite_value_is_found_at_its_index_wherever_it_is(int length)
    {
        var random = new Random(length);
        var values = Enumerable.Range(0, length).Select(_ => (float)(random.NextDouble() * 20 - 10)).ToArray();
        Assert.True(FiniteValues.All(values));
        Assert.Equal(-1, FiniteValues.First(values));
        foreach (var bad in new[] { float.NaN, float.PositiveInfinity, float.NegativeInfinity })
        {
            for (var at = 0; at < length; at++)
            {
                var kept = values[at];
                values[at] = bad;
                Assert.False(FiniteValues.All(values), $"{bad} at {at} of {length}");
                Assert.Equal(at, FiniteValues.First(values));
                values[at] = kept;
                // Negative control: put back, the values pass again.
                Assert.True(FiniteValues.All(values));
            }
        }
    }

    [Fact]
    public void Extreme_finite_values_pass_and_the_first_of_two_bad_values_is_named()
    {
        float[] extremes = [float.MaxValue, -float.MaxValue, float.Epsilon, -0f, 0f, 1e-38f, -3e38f, 1f, 2f];
        Assert.True(FiniteValues.All(extremes));
        Assert.True(FiniteValues.All([]));
        var twice = Enumerable.Repeat(1f, 20).ToArray();
        twice[13] = float.NaN;
        twice[5] = float.PositiveInfinity;
        Assert.Equal(5, FiniteValues.First(twice));
    }
}
