using RetNet.Ilgpu.Training;

namespace RetNet.Ilgpu.Tests.Training;

public sealed class LearningRateScheduleTests
{
    private const double Peak = 1e-3;
    private const double Minimum = 1e-4;

    // Warm-up 10 steps, then 100 decay steps: step 35 is a quarter of the decay, 60 half of it, 110 its end.
    private static LearningRateSchedule Schedule(ScheduleKind kind, double power = 1.0) =>
        new(Peak, WarmupSteps: 10, TotalSteps: 110, kind, MinLearningRateRatio: 0.1, Power: power);

    public static TheoryData<ScheduleKind, double, double, double> Kinds => new()
    {
        // kind, power, fraction of (peak − min) above min at a quarter and at half of the decay
        { ScheduleKind.Cosine, 1.0, 0.5 * (1 + Math.Cos(Math.PI / 4)), 0.5 },
        { ScheduleKind.Linear, 1.0, 0.75, 0.5 },
        { ScheduleKind.Polynomial, 2.0, 0.5625, 0.25 },
        { ScheduleKind.Polynomial, 1.0, 0.75, 0.5 },
    };

    [Theory, MemberData(nameof(Kinds))]
    public void Warm_up_then_decay_reach_the_expected_rates(ScheduleKind kind, double power, double quarter,
        double half)
    {
        var schedule = Schedule(kind, power);
        AssertRate(Peak / 10, schedule.At(1));
        AssertRate(Peak * 5 / 10, schedule.At(5));
        AssertRate(Peak, schedule.At(10));
        AssertRate(Minimum + (Peak - Minimum) * quarter, schedule.At(35));
        AssertRate(Minimum + (Peak - Minimum) * half, schedule.At(60));
        AssertRate(Minimum, schedule.At(110));
        AssertRate(Minimum, schedule.At(1000));
    }

    [Fact]
    public void Constant_holds_the_peak_after_warm_up()
    {
        var schedule = Schedule(ScheduleKind.Constant);
        AssertRate(Peak / 10, schedule.At(1));
        AssertRate(Peak, schedule.At(10));
        AssertRate(Peak, schedule.At(60));
        AssertRate(Peak, schedule.At(110));
    }

    [Fact]
    public void Kinds_differ_at_the_probed_steps_so_a_schedule_ignoring_its_kind_fails()
    {
        // Negative control for the checks above: the quarter-point values are pairwise far apart.
        var rates = new[]
        {
            Schedule(ScheduleKind.Cosine).At(35), Schedule(ScheduleKind.Linear).At(35),
            Schedule(ScheduleKind.Polynomial, 2.0).At(35), Schedule(ScheduleKind.Constant).At(35),
        };
        for (var a = 0; a < rates.Length; a++)
            for (var b = a + 1; b < rates.Length; b++)
                Assert.True(Math.Abs(rates[a] - rates[b]) > 1e-5, $"kinds {a} and {b} both give {rates[a]}");
    }

    [Fact]
    public void No_warm_up_starts_the_decay_at_step_one()
    {
        var schedule = new LearningRateSchedule(Peak, 0, 100, ScheduleKind.Linear);
        AssertRate(Minimum + (Peak - Minimum) * 0.99, schedule.At(1));
        AssertRate(Minimum, schedule.At(100));
        var allWarmUp = new LearningRateSchedule(Peak, 100, 100, ScheduleKind.Cosine);
        AssertRate(Peak, allWarmUp.At(100));
        AssertRate(Minimum, allWarmUp.At(101));
    }

    [Fact]
    public void Invalid_schedules_and_steps_are_rejected_naming_the_argument()
    {
        AssertInvalid(Schedule(ScheduleKind.Cosine) with { PeakLearningRate = 0 }, "PeakLearningRate");
        AssertInvalid(Schedule(ScheduleKind.Cosine) with { PeakLearningRate = double.NaN }, "PeakLearningRate");
        AssertInvalid(Schedule(ScheduleKind.Cosine) with { TotalSteps = 0, WarmupSteps = 0 }, "TotalSteps");
        AssertInvalid(Schedule(ScheduleKind.Cosine) with { WarmupSteps = 111 }, "WarmupSteps");
        AssertInvalid(Schedule(ScheduleKind.Cosine) with { WarmupSteps = -1 }, "WarmupSteps");
        AssertInvalid(Schedule(ScheduleKind.Cosine) with { MinLearningRateRatio = 1.5 }, "MinLearningRateRatio");
        AssertInvalid(Schedule(ScheduleKind.Polynomial) with { Power = 0 }, "Power");
        AssertInvalid(Schedule((ScheduleKind)99), "Kind");
        Assert.Equal("step",
            Assert.Throws<ArgumentOutOfRangeException>(() => Schedule(ScheduleKind.Cosine).At(0)).ParamName);
        Schedule(ScheduleKind.Cosine).Validate();
    }

    [Fact]
    public void Kinds_parse_case_insensitively_and_unknown_names_list_the_choices()
    {
        Assert.Equal(ScheduleKind.Cosine, LearningRateSchedule.Parse("cosine"));
        Assert.Equal(ScheduleKind.Linear, LearningRateSchedule.Parse("Linear"));
        Assert.Equal(ScheduleKind.Polynomial, LearningRateSchedule.Parse(" POLYNOMIAL "));
        Assert.Equal(ScheduleKind.Constant, LearningRateSchedule.Parse("constant"));
        var error = Assert.Throws<ArgumentException>(() => LearningRateSchedule.Parse("poly"));
        Assert.Equal("kind", error.ParamName);
        Assert.Contains("'poly'", error.Message);
        Assert.Contains("cosine, linear, polynomial or constant", error.Message);
    }

    private static void AssertRate(double expected, double actual) =>
        Assert.True(Math.Abs(expected - actual) <= 1e-12 * Peak, $"expected {expected:G17}, got {actual:G17}");

    private static void AssertInvalid(LearningRateSchedule schedule, string parameter)
    {
        Assert.Equal(parameter, Assert.Throws<ArgumentOutOfRangeException>(schedule.Validate).ParamName);
        Assert.Equal(parameter, Assert.Throws<ArgumentOutOfRangeException>(() => schedule.At(1)).ParamName);
    }
}
