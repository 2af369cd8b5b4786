using RetNet.Ilgpu.Generation;

namespace RetNet.Ilgpu.Tests.Generation;

public sealed class GenerationGeneratorTests
{
    private const int Vocabulary = 10;

    private static int[] Tokens(IEnumerable<GeneratedToken> tokens) => tokens.Select(t => t.TokenId).ToArray();

    [Fact]
    public void Greedy_generation_follows_the_argmax_chain_for_max_tokens()
    {
        var decoder = GenerationBigramDecoder.Successor(Vocabulary);
        var tokens = Generator.Generate(decoder, [7, 3], new SamplingOptions { Temperature = 0, MaxTokens = 5 })
            .ToArray();

        Assert.Equal([4, 5, 6, 7, 8], tokens.Select(t => t.TokenId));
        Assert.Equal([0, 1, 2, 3, 4], tokens.Select(t => t.Index));
        Assert.All(tokens, t => Assert.Equal(0, t.Sequence));
        Assert.Equal(1, decoder.PrefillCalls);
        // No step after the last token: its logits would be thrown away.
        Assert.Equal(4, decoder.StepCalls);
        Assert.Equal([[4], [5], [6], [7]], decoder.StepInputs);
    }

    [Fact]
    public void A_stop_token_ends_the_sequence_and_is_not_emitted()
    {
        var decoder = GenerationBigramDecoder.Successor(Vocabulary);
        var options = new SamplingOptions { Temperature = 0, MaxTokens = 50, StopTokens = new HashSet<int> { 6, 9 } };
        var result = Generator.Complete(decoder, [[2]], options);

        Assert.Equal([3, 4, 5], result[0].Tokens);
        Assert.Equal(FinishReason.StopToken, result[0].Reason);
        Assert.Equal(3, decoder.StepCalls);
    }

    [Fact]
    public void Max_tokens_is_the_finish_reason_when_no_stop_token_comes()
    {
        var result = Generator.Complete(GenerationBigramDecoder.Successor(Vocabulary), [[0]],
            new SamplingOptions { Temperature = 0, MaxTokens = 12 });
        Assert.Equal(12, result[0].Tokens.Count);
        Assert.Equal(FinishReason.MaxTokens, result[0].Reason);
    }

    [Fact]
    public void A_stop_token_sampled_first_gives_an_empty_output()
    {
        var result = Generator.Complete(GenerationBigramDecoder.Successor(Vocabulary), [[4]],
            new SamplingOptions { Temperature = 0, StopTokens = new HashSet<int> { 5 } });
        Assert.Empty(result[0].Tokens);
        Assert.Equal(FinishReason.StopToken, result[0].Reason);
    }

    [Fact]
    public void Tokens_stream_before_generation_completes()
    {
        var decoder = GenerationBigramDecoder.Successor(Vocabulary);
        var stream = Generator.Generate(decoder, [1], new SamplingOptions { Temperature = 0, MaxTokens = 100 });
        Assert.Equal(0, decoder.PrefillCalls);

        using var enumerator = stream.GetEnumerator();
        Assert.True(enumerator.MoveNext());
        Assert.Equal(2, enumerator.Current.TokenId);
        Assert.Equal((1, 0), (decoder.PrefillCalls, decoder.StepCalls));
        Assert.True(enumerator.MoveNext());
        Assert.Equal(3, enumerator.Current.TokenId);
        Assert.Equal(1, decoder.StepCalls);
        Assert.True(enumerator.MoveNext());
        Assert.Equal(2, decoder.StepCalls);
    }

    [Fact]
    public void A_batch_stops_each_sequence_on_its_own()
    {
        var decoder = GenerationBigramDecoder.Successor(Vocabulary);
        var options = new SamplingOptions { Temperature = 0, MaxTokens = 6, StopTokens = new HashSet<int> { 5 } };
        IReadOnlyList<IReadOnlyList<int>> prompts = [[0, 1], [3], [5, 8, 6]];
        var streamed = Generator.Generate(decoder, prompts, options).ToArray();
        var result = Generator.Complete(GenerationBigramDecoder.Successor(Vocabulary), prompts, options);

        Assert.Equal([2, 3, 4], result[0].Tokens);
        Assert.Equal(FinishReason.StopToken, result[0].Reason);
        Assert.Equal([4], result[1].Tokens);
        Assert.Equal(FinishReason.StopToken, result[1].Reason);
        Assert.Equal([7, 8, 9, 0, 1, 2], result[2].Tokens);
        Assert.Equal(FinishReason.MaxTokens, result[2].Reason);

        // Streaming order: step by step, sequences in order, stopped ones skipped.
        Assert.Equal([(0, 2), (1, 4), (2, 7), (0, 3), (2, 8), (0, 4), (2, 9), (2, 0), (2, 1), (2, 2)],
            streamed.Select(t => (t.Sequence, t.TokenId)));
        Assert.Equal([0, 0, 0, 1, 1, 2, 2, 3, 4, 5], streamed.Select(t => t.Index));
        // Finished rows keep receiving their last token.
        Assert.Equal([[2, 4, 7], [3, 4, 8], [4, 4, 9], [4, 4, 0], [4, 4, 1]], decoder.StepInputs);
    }

    [Fact]
    public void Seeded_generation_is_reproducible_and_each_batch_row_samples_as_it_would_alone()
    {
        var options = new SamplingOptions { Temperature = 2, Seed = 11, MaxTokens = 30 };
        IReadOnlyList<IReadOnlyList<int>> prompts = [[1], [4, 2]];
        var batch = Generator.Complete(GenerationBigramDecoder.Successor(Vocabulary), prompts, options);
        var again = Generator.Complete(GenerationBigramDecoder.Successor(Vocabulary), prompts, options);
        var alone0 = Tokens(Generator.Generate(GenerationBigramDecoder.Successor(Vocabulary), prompts[0], options));
        var alone1 = Tokens(Generator.Generate(GenerationBigramDecoder.Successor(Vocabulary), prompts[1],
            new SamplingOptions { Temperature = 2, Seed = 12, MaxTokens = 30 }));
        var otherSeed = Tokens(Generator.Generate(GenerationBigramDecoder.Successor(Vocabulary), prompts[0],
            new SamplingOptions { Temperature = 2, Seed = 5, MaxTokens = 30 }));

        Assert.Equal(batch[0].Tokens, again[0].Tokens);
        Assert.Equal(batch[1].Tokens, again[1].Tokens);
        Assert.Equal(alone0, batch[0].Tokens);
        Assert.Equal(alone1, batch[1].Tokens);
        Assert.NotEqual(alone0, otherSeed);
    }

    [Fact]
    public void Bad_prompts_and_stop_tokens_are_rejected_on_the_call()
    {
        var decoder = GenerationBigramDecoder.Successor(Vocabulary);
        var options = new SamplingOptions();
        Assert.Equal("prompts", Assert.Throws<ArgumentException>(() => Generator.Generate(decoder,
            Array.Empty<IReadOnlyList<int>>(), options)).ParamName);
        var empty = Assert.Throws<ArgumentException>(() => Generator.Generate(decoder, [[1], []], options));
        Assert.Equal("prompts", empty.ParamName);
        Assert.Contains("Prompt 1 is empty", empty.Message);
        var outside = Assert.Throws<ArgumentException>(() => Generator.Generate(decoder, [1, 10], options));
        Assert.Contains("token id 10 at position 1", outside.Message);
        Assert.Contains("[0, 10)", outside.Message);
        Assert.Throws<ArgumentException>(() => Generator.Generate(decoder, [-1], options));
        var stop = Assert.Throws<ArgumentException>(() => Generator.Generate(decoder, [1],
            new SamplingOptions { StopTokens = new HashSet<int> { 10 } }));
        Assert.Equal("options", stop.ParamName);
        Assert.Contains("Stop token 10", stop.Message);
        Assert.Equal(0, decoder.PrefillCalls);
    }

    [Fact]
    public void A_decoder_returning_logits_of_the_wrong_shape_is_reported()
    {
        var decoder = new WrongShapeDecoder();
        var error = Assert.Throws<InvalidOperationException>(() =>
            Generator.Generate(decoder, [1], new SamplingOptions()).ToArray());
        Assert.Contains("ITokenDecoder.Prefill returned 3 logits for sequence 0; expected 4", error.Message);
    }

    [Fact]
    public void Nan_logits_from_the_decoder_stop_generation_with_a_clear_error()
    {
        var poisoned = new GenerationBigramDecoder(Enumerable.Range(0, Vocabulary)
            .Select(t => t == 3 ? Enumerable.Repeat(float.NaN, Vocabulary).ToArray() : Successor(t)).ToArray());
        var error = Assert.Throws<ArgumentException>(() =>
            Generator.Generate(poisoned, [1], SamplingOptions.Greedy).ToArray());
        Assert.Contains("NaN", error.Message);

        static float[] Successor(int t)
        {
            var row = new float[Vocabulary];
            row[(t + 1) % Vocabulary] = 1;
            return row;
        }
    }

    private sealed class WrongShapeDecoder : ITokenDecoder
    {
        public int VocabularySize => 4;

        public float[][] Prefill(IReadOnlyList<IReadOnlyList<int>> prompts) => [new float[3]];

        public float[][] Step(IReadOnlyList<int> nextTokens) => [new float[4]];
    }
}
