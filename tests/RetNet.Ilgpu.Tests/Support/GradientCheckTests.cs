namespace RetNet.Ilgpu.Tests.Support;

/// <summary>The gradient check itself, on a loss whose gradient is known exactly.</summary>
public sealed class GradientCheckTests
{
    [Theory]
    [InlineData(1)]
    [InlineData(12)]
    [InlineData(13)]
    [InlineData(1280)]
    public void Samples_are_distinct_sorted_in_range_and_include_the_first_and_last_entry(int length)
    {
        var indices = GradientCheck.SampleIndices(length);
        Assert.Equal(Math.Min(length, GradientCheck.SampleCount), indices.Length);
        Assert.Equal(indices.Order().Distinct(), indices);
        Assert.Equal(0, indices[0]);
        Assert.Equal(length - 1, indices[^1]);
    }

    [Fact]
    public void The_exact_gradient_passes_and_wrong_ones_are_rejected_even_where_the_samples_see_only_zeros()
    {
        // L = Σ c_i w_i³ / 3 over a tensor whose gradient c_i w_i² is zero except in one stretch that no sampled entry
        // hits: only the directional comparison can see a wrong value there.
        const int length = 200;
        var sampled = GradientCheck.SampleIndices(length).ToHashSet();
        var live = Enumerable.Range(0, length).Where(i => !sampled.Contains(i) && !sampled.Contains(i + 1))
            .Take(5).ToHashSet();
        var w = Numerics.Uniform(3, length);
        var c = Enumerable.Range(0, length).Select(i => live.Contains(i) ? 1.0 + i % 3 : 0.0).ToArray();
        double Loss() => Enumerable.Range(0, length).Sum(i => c[i] * Math.Pow(w[i], 3) / 3);
        var gradient = Enumerable.Range(0, length).Select(i => (float)(c[i] * w[i] * w[i])).ToArray();

        var check = GradientCheck.Measure(w, Loss);

        Assert.All(check.Entries, e => Assert.Equal(0.0, e));
        Assert.True(check.Floor > 0);
        check.AssertAgreesAndRejectsWrongGradients("cubic", gradient, 2e-3);
        Assert.Equal(Numerics.Uniform(3, length), w);
        // The directions weigh every entry alike, so they see an error of the tensor's scale, not 1% of one entry.
        var largest = live.MaxBy(i => Math.Abs(gradient[i]));
        var wrong = (float[])gradient.Clone();
        wrong[largest] *= 2;
        Numerics.AssertRejected(check.Check("one unsampled entry doubled", wrong, 2e-3));
    }
}
