using RetNet.Ilgpu.Generation;
using RetNet.Ilgpu.Model;
using RetNet.Ilgpu.Tests.Support;

namespace RetNet.Ilgpu.Tests.Model;

[Collection(DeviceCollection.Name)]
public sealed class ModelGenerationTests(DeviceFixture fixture)
{
    [Fact]
    public void Greedy_generation_through_the_decoder_follows_the_argmax_of_full_forwards()
    {
        var config = ModelTestSupport.Micro();
        using var model = LanguageModel.Create(fixture.Device, config, seed: 5);
        using var decoder = new ModelTokenDecoder(model, chunkSize: 3);
        int[] prompt = [3, 1, 4, 1, 5];

        var generated = Generator.Generate(decoder, prompt, new SamplingOptions { Temperature = 0, MaxTokens = 4 })
            .Select(t => t.TokenId).ToList();

        // The same continuation, one full parallel forward per token.
        var sequence = prompt.ToList();
        for (var i = 0; i < 4; i++)
        {
            var tokens = new int[1, sequence.Count];
            for (var t = 0; t < sequence.Count; t++)
                tokens[0, t] = sequence[t];
            using var logits = model.Forward(tokens, ForwardMode.Parallel);
            var last = logits.ToHost().AsSpan((sequence.Count - 1) * config.VocabSize, config.VocabSize);
            sequence.Add(Sampler.ArgMax(last));
        }
        Assert.Equal(sequence.Skip(prompt.Length), generated);
        Assert.Equal(prompt.Length + 3, decoder.State!.Positions[0]);
    }

    [Fact]
    public void Step_before_prefill_is_a_clear_error()
    {
        using var model = LanguageModel.Create(fixture.Device, ModelTestSupport.Micro(), seed: 1);
        using var decoder = new ModelTokenDecoder(model);
        var error = Assert.Throws<InvalidOperationException>(() => decoder.Step([1]));
        Assert.Contains("prefill", error.Message);
    }
}
