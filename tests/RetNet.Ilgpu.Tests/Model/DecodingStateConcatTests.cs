using RetNet.Ilgpu.Model;
using RetNet.Ilgpu.Tests.Support;

namespace RetNet.Ilgpu.Tests.Model;

/// <summary>
/// <see cref="DecodingState.Concat"/>, the join of continuous batching: sequences prefilled apart and then joined
/// decode exactly as if they had been prefilled as one batch, for both token mixers.
/// </summary>
[Collection(DeviceCollection.Name)]
public sealed class DecodingStateConcatTests(DeviceFixture fixture)
{
    private readonly RetNetDevice device = fixture.Device;

    public static TheoryData<string> Architectures => ["retnet", "transformer"];

    private static ModelConfig Config(string architecture) => architecture == "retnet"
        ? ModelTestSupport.Micro()
        : new TransformerConfig { EmbedDim = 32, Heads = 2, FfnEmbedDim = 40, Layers = 2, VocabSize = 40 };

    [Theory, MemberData(nameof(Architectures))]
    public void Joined_states_step_to_the_same_logit_bits_as_one_batch_prefill(string architecture)
    {
        using var model = LanguageModel.Create(device, Config(architecture), seed: 3);
        var tokens = ModelTestSupport.Tokens(seed: 5, batch: 3, seqLen: 21, model.VocabSize);
        // Lengths past a KV cache's first capacity (16), so the joined caches have different widths.
        int[] a = ModelTestSupport.Row(tokens, 0, 21), b = ModelTestSupport.Row(tokens, 1, 3),
            c = ModelTestSupport.Row(tokens, 2, 9);

        var together = model.Prefill([a, b, c]);
        using var batch = together.State;
        var apart = new[] { model.Prefill([a]), model.Prefill([b, c]) };
        using var joined = DecodingState.Concat([apart[0].State, apart[1].State]);
        foreach (var part in apart)
            part.State.Dispose();
        Assert.Equal([21, 3, 9], joined.Positions);

        for (var step = 0; step < 3; step++)
        {
            int[] next = [step + 1, step + 2, step + 3];
            var expected = model.Step(next, batch);
            var actual = model.Step(next, joined);
            for (var s = 0; s < 3; s++)
                Assert.Equal(expected[s], actual[s]);
        }

        // Negative control: the parts joined in the other order put another sequence in row 0.
        var again = new[] { model.Prefill([a]), model.Prefill([b, c]) };
        using var swapped = DecodingState.Concat([again[1].State, again[0].State]);
        foreach (var part in again)
            part.State.Dispose();
        var first = model.Step([1, 2, 3], swapped);
        using var fresh = model.Prefill([a, b, c]).State;
        Assert.NotEqual(model.Step([1, 2, 3], fresh)[0], first[0]);
    }

    [Fact]
    public void States_of_different_models_or_none_are_refused_naming_the_argument()
    {
        using var retnet = LanguageModel.Create(device, Config("retnet"), seed: 1);
        using var twin = LanguageModel.Create(device, Config("retnet"), seed: 1);
        using var mine = retnet.CreateState(1);
        using var theirs = twin.CreateState(2);
        Assert.Equal("states", Assert.Throws<ArgumentException>(() => DecodingState.Concat([mine, theirs])).ParamName);
        Assert.Equal("states", Assert.Throws<ArgumentException>(() => DecodingState.Concat([])).ParamName);
        using var one = DecodingState.Concat([mine, mine]);
        Assert.Equal(2, one.Batch);
    }
}
