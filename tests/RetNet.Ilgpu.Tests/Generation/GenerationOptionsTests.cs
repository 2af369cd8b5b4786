using RetNet.Ilgpu.Generation;

namespace RetNet.Ilgpu.Tests.Generation;

public sealed class GenerationOptionsTests
{
    [Fact]
    public void Defaults_are_plain_sampling_at_temperature_one()
    {
        var options = new SamplingOptions();
        Assert.Equal(1.0, options.Temperature);
        Assert.Equal(0, options.TopK);
        Assert.Equal(1.0, options.TopP);
        Assert.Null(options.Seed);
        Assert.Equal(64, options.MaxTokens);
        Assert.Empty(options.StopTokens);
        Assert.False(options.IsGreedy);
        Assert.True(SamplingOptions.Greedy.IsGreedy);
        Assert.True(new SamplingOptions { TopK = 1 }.IsGreedy);
    }

    public static TheoryData<string, Func<SamplingOptions>> BadOptions => new()
    {
        { nameof(SamplingOptions.Temperature), () => new SamplingOptions { Temperature = -0.1 } },
        { nameof(SamplingOptions.Temperature), () => new SamplingOptions { Temperature = double.NaN } },
        { nameof(SamplingOptions.Temperature), () => new SamplingOptions { Temperature = double.PositiveInfinity } },
        { nameof(SamplingOptions.TopK), () => new SamplingOptions { TopK = -1 } },
        { nameof(SamplingOptions.TopP), () => new SamplingOptions { TopP = 0 } },
        { nameof(SamplingOptions.TopP), () => new SamplingOptions { TopP = 1.01 } },
        { nameof(SamplingOptions.TopP), () => new SamplingOptions { TopP = double.NaN } },
        { nameof(SamplingOptions.MaxTokens), () => new SamplingOptions { MaxTokens = 0 } },
        { nameof(SamplingOptions.StopTokens), () => new SamplingOptions { StopTokens = new HashSet<int> { 3, -2 } } },
    };

    [Theory, MemberData(nameof(BadOptions))]
    public void Bad_values_are_rejected_naming_the_property(string property, Func<SamplingOptions> create)
    {
        var error = Assert.ThrowsAny<ArgumentException>(create);
        Assert.Equal(property, error.ParamName);
        Assert.Contains(property, error.Message);
    }

    [Fact]
    public void Null_stop_tokens_are_rejected()
    {
        var error = Assert.Throws<ArgumentNullException>(() => new SamplingOptions { StopTokens = null! });
        Assert.Equal(nameof(SamplingOptions.StopTokens), error.ParamName);
    }

    [Fact]
    public void Stop_tokens_are_copied()
    {
        var stops = new HashSet<int> { 4 };
        var options = new SamplingOptions { StopTokens = stops };
        stops.Add(5);
        Assert.Equal([4], options.StopTokens);
    }

    [Fact]
    public void Options_are_a_record_derived_with_validation_and_compared_by_value()
    {
        var options = SamplingOptions.Greedy with { MaxTokens = 5, StopTokens = new HashSet<int> { 2, 1 } };
        Assert.Equal(0, options.Temperature);
        Assert.Equal(5, options.MaxTokens);
        Assert.Equal(options, new SamplingOptions { Temperature = 0, MaxTokens = 5, StopTokens = new HashSet<int> { 1, 2 } });
        Assert.Equal(options.GetHashCode(),
            new SamplingOptions { Temperature = 0, MaxTokens = 5, StopTokens = new HashSet<int> { 1, 2 } }.GetHashCode());
        Assert.NotEqual(options, options with { StopTokens = new HashSet<int> { 1 } });
        Assert.NotEqual(options, options with { Seed = 1 });
        var error = Assert.Throws<ArgumentOutOfRangeException>(() => options with { TopP = 2 });
        Assert.Equal(nameof(SamplingOptions.TopP), error.ParamName);
    }
}
