using RetNet.Ilgpu.Retention;

namespace RetNet.Ilgpu.Tests.Retention;

public sealed class RetentionDecayScheduleTests
{
    [Fact]
    public void Torchscale_schedule_is_one_minus_two_to_the_minus_five_minus_h()
    {
        var decay = DecaySchedule.Torchscale(4);
        Assert.Equal([1 - 1.0 / 32, 1 - 1.0 / 64, 1 - 1.0 / 128, 1 - 1.0 / 256], decay.Gammas);
        Assert.Equal(1 - Math.Pow(2, -51), DecaySchedule.Torchscale(47).Gammas[46]);
    }

    [Fact]
    public void Paper_schedule_spans_one_thirty_second_to_one_five_hundred_twelfth_log_uniformly()
    {
        var decay = DecaySchedule.Paper(5);
        Assert.Equal(1 - 1.0 / 32, decay.Gammas[0], 15);
        Assert.Equal(1 - 1.0 / 512, decay.Gammas[4], 15);
        // Log-uniform: 1 − γ halves every step from 1/32 to 1/512 over four steps.
        Assert.Equal(1.0 / 64, 1 - decay.Gammas[1], 15);
        Assert.Equal([1 - 1.0 / 32], DecaySchedule.Paper(1).Gammas);
    }

    [Fact]
    public void Explicit_values_are_kept_in_double_even_within_1e_minus_7_of_one()
    {
        var decay = DecaySchedule.FromValues(0.5, 1 - 1e-9);
        Assert.Equal([0.5, 1 - 1e-9], decay.Gammas);
        Assert.Equal(2, decay.Heads);
        Assert.Equal([0.25], DecaySchedule.FromValues(0.25f).Gammas);
    }

    [Theory]
    [InlineData(0.0)]
    [InlineData(1.0)]
    [InlineData(-0.5)]
    [InlineData(1.5)]
    [InlineData(double.NaN)]
    [InlineData(double.PositiveInfinity)]
    public void Values_outside_the_open_unit_interval_or_not_finite_are_rejected(double gamma)
    {
        var error = Assert.Throws<ArgumentOutOfRangeException>(() => DecaySchedule.FromValues(0.9, gamma));
        Assert.Equal("gammas", error.ParamName);
        Assert.Contains("γ[1]", error.Message);
        Assert.Contains("(0, 1)", error.Message);
    }

    [Fact]
    public void Empty_schedules_and_impossible_head_counts_are_rejected()
    {
        Assert.Equal("gammas", Assert.Throws<ArgumentException>(() => DecaySchedule.FromValues(Array.Empty<double>())).ParamName);
        Assert.Equal("heads", Assert.Throws<ArgumentOutOfRangeException>(() => DecaySchedule.Torchscale(0)).ParamName);
        Assert.Equal("heads", Assert.Throws<ArgumentOutOfRangeException>(() => DecaySchedule.Torchscale(48)).ParamName);
        Assert.Equal("heads", Assert.Throws<ArgumentOutOfRangeException>(() => DecaySchedule.Paper(0)).ParamName);
    }
}
