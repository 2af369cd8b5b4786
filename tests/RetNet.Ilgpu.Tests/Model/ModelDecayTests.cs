using RetNet.Ilgpu.Model;
using RetNet.Ilgpu.Tests.Support;

namespace RetNet.Ilgpu.Tests.Model;

[Collection(DeviceCollection.Name)]
public sealed class ModelDecayTests(DeviceFixture fixture)
{
    public static TheoryData<string, double[]?> Decays => new()
    {
        { "paper", null },
        { "torchscale", new[] { 0.5, 0.999999 } },
    };

    [Theory, MemberData(nameof(Decays))]
    public void A_configured_decay_is_used_by_every_form(string schedule, double[]? explicitDecay)
    {
        var config = ModelTestSupport.Micro() with { DecayScheduleName = schedule, RetentionDecay = explicitDecay };
        var weights = ModelTestSupport.Weights(config, seed: 13);
        var tokens = ModelTestSupport.Tokens(seed: 2, batch: 2, seqLen: 7, config.VocabSize);
        var expected = ModelReference.Forward(config, weights, tokens);
        using var model = LanguageModel.FromWeights(fixture.Device, config, weights);
        ModelTestSupport.AssertEveryFormMatches(model, tokens, expected, schedule, 3);
        Assert.Equal(config, RetNetConfig.FromJson(config.ToJson()) with { RetentionDecay = config.RetentionDecay });
        Assert.Equal(explicitDecay, RetNetConfig.FromJson(config.ToJson()).RetentionDecay);
    }

    [Fact]
    public void Bad_decays_are_named_in_the_config_error()
    {
        var wrongCount = ModelTestSupport.Micro() with { RetentionDecay = [0.9] };
        Assert.Contains("retention_decay has 1 values; expected one per head (2)",
            Assert.Throws<ArgumentException>(wrongCount.Validate).Message);
        var outOfRange = ModelTestSupport.Micro() with { RetentionDecay = [0.9, 1.0] };
        Assert.Contains("expected 0 < γ < 1", Assert.Throws<ArgumentException>(outOfRange.Validate).Message);
        var unknown = ModelTestSupport.Micro() with { DecayScheduleName = "linear" };
        Assert.Contains("retention_decay_schedule is 'linear'", Assert.Throws<ArgumentException>(unknown.Validate).Message);
    }
}
