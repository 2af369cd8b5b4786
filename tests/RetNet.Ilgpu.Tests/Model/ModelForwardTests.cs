using RetNet.Ilgpu.Model;
using RetNet.Ilgpu.Tests.Support;

namespace RetNet.Ilgpu.Tests.Model;

[Collection(DeviceCollection.Name)]
public sealed class ModelForwardTests(DeviceFixture fixture)
{
    private readonly RetNetDevice device = fixture.Device;

    public static TheoryData<string, bool, bool> Configs => new()
    {
        { "swish", false, true },
        { "gelu", true, false },
        { "swish", true, true },
        { "gelu", false, false },
    };

    [Theory]
    [MemberData(nameof(Configs))]
    public void Logits_of_every_form_match_the_float64_torchscale_forward(string activation, bool tied, bool scale)
    {
        var config = ModelTestSupport.Micro(activation, tied, scale);
        var weights = ModelTestSupport.Weights(config, seed: 11);
        var tokens = ModelTestSupport.Tokens(seed: 5, batch: 2, seqLen: 7, config.VocabSize);
        var expected = ModelReference.Forward(config, weights, tokens);
        using var model = LanguageModel.FromWeights(device, config, weights);
        ModelTestSupport.AssertEveryFormMatches(model, tokens, expected, $"{activation} tied={tied} scaled={scale}", 3);
    }

    public static TheoryData<string> Variants => ["postnorm", "deepnorm-postnorm", "deepnorm-prenorm", "layernorm-embedding"];

    private static RetNetConfig Variant(string name) => name switch
    {
        "postnorm" => ModelTestSupport.Micro() with { NormalizeBefore = false, LayerNormEps = 1e-5 },
        "deepnorm-postnorm" => ModelTestSupport.Micro("gelu", layers: 3) with { NormalizeBefore = false, Deepnorm = true },
        "deepnorm-prenorm" => ModelTestSupport.Micro(heads: 4) with { Deepnorm = true },
        _ => ModelTestSupport.Micro("gelu", tied: true) with { LayerNormEmbedding = true },
    };

    [Theory]
    [MemberData(nameof(Variants))]
    public void Post_norm_deepnorm_and_layernorm_embedding_match_the_float64_forward_in_every_form(string variant)
    {
        var config = Variant(variant);
        var weights = ModelTestSupport.Weights(config, seed: 21);
        var tokens = ModelTestSupport.Tokens(seed: 6, batch: 2, seqLen: 9, config.VocabSize);
        var expected = ModelReference.Forward(config, weights, tokens);
        using var model = LanguageModel.FromWeights(device, config, weights);
        ModelTestSupport.AssertEveryFormMatches(model, tokens, expected, variant, 4);
        var prefill = model.Prefill([ModelTestSupport.Row(tokens, 0, 4)]);
        using var state = prefill.State;
        AssertRow(expected.Select(v => (float)v).ToArray(), config.VocabSize, 9, 0, 3, prefill.Logits[0], "prefill");
        var step = model.Step([tokens[0, 4]], state);
        AssertRow(expected.Select(v => (float)v).ToArray(), config.VocabSize, 9, 0, 4, step[0], "step");
    }

    [Fact]
    public void The_forward_check_rejects_a_reference_without_the_decay_normalisation()
    {
        // eps 1e-5 with unscaled embeddings: the case where leaving the factor out matters most.
        var config = ModelTestSupport.Micro("gelu", scaleEmbedding: false) with { LayerNormEps = 1e-5 };
        var weights = ModelTestSupport.Weights(config, seed: 11);
        var tokens = ModelTestSupport.Tokens(seed: 5, batch: 2, seqLen: 7, config.VocabSize);
        using var model = LanguageModel.FromWeights(device, config, weights);
        using var logits = model.Forward(tokens, ForwardMode.Parallel);
        Numerics.AssertClose("with the decay normalisation", logits.ToHost(),
            ModelReference.Forward(config, weights, tokens), ModelTestSupport.ParityTolerance);
        Numerics.AssertRejected(Numerics.Check("a reference without the decay normalisation", logits.ToHost(),
            ModelReference.Forward(config, weights, tokens, decayNormalisation: false), ModelTestSupport.ParityTolerance));
    }

    [Fact]
    public void Prefill_then_steps_equal_the_full_forward()
    {
        var config = ModelTestSupport.Micro();
        using var model = LanguageModel.FromWeights(device, config, ModelTestSupport.Weights(config, 3));
        var tokens = ModelTestSupport.Tokens(seed: 9, batch: 2, seqLen: 8, config.VocabSize);
        using var full = model.Forward(tokens, ForwardMode.Parallel);
        var expected = full.ToHost();
        var prefill = model.Prefill([ModelTestSupport.Row(tokens, 0, 5), ModelTestSupport.Row(tokens, 1, 5)], chunkSize: 2);
        using var state = prefill.State;
        AssertRow(expected, config.VocabSize, 8, 0, 4, prefill.Logits[0], "prefill b0");
        AssertRow(expected, config.VocabSize, 8, 1, 4, prefill.Logits[1], "prefill b1");
        for (var t = 5; t < 8; t++)
        {
            var logits = model.Step([tokens[0, t], tokens[1, t]], state);
            AssertRow(expected, config.VocabSize, 8, 0, t, logits[0], $"step b0 t{t}");
            AssertRow(expected, config.VocabSize, 8, 1, t, logits[1], $"step b1 t{t}");
        }
        Assert.Equal([8, 8], state.Positions);
        // Measured: the bytes of the state's tensors; expected: layers · B · H · Dk · Dv floats.
        Assert.Equal(4L * config.Layers * 2 * config.RetentionHeads * config.KeyHeadDim * config.ValueHeadDim, state.Bytes);
    }

    [Fact]
    public void A_batch_of_prompts_of_different_lengths_decodes_like_each_prompt_alone()
    {
        var config = ModelTestSupport.Micro();
        using var model = LanguageModel.FromWeights(device, config, ModelTestSupport.Weights(config, 4));
        int[] shortPrompt = [1, 2, 3], longPrompt = [7, 8, 9, 10, 11, 12];
        var batch = model.Prefill([shortPrompt, longPrompt]);
        using var batchState = batch.State;
        var batchSteps = model.Step([5, 6], batchState);
        foreach (var (prompt, b, next) in new[] { (shortPrompt, 0, 5), (longPrompt, 1, 6) })
        {
            var alone = model.Prefill([prompt]);
            using var aloneState = alone.State;
            Numerics.AssertClose($"prefill {b}", batch.Logits[b], alone.Logits[0]);
            Numerics.AssertClose($"step {b}", batchSteps[b], model.Step([next], aloneState)[0]);
        }
        Assert.Equal([4, 7], batchState.Positions);
    }

    [Fact]
    public void Clone_is_independent_and_reorder_moves_every_part_of_the_state()
    {
        var config = ModelTestSupport.Micro();
        using var model = LanguageModel.FromWeights(device, config, ModelTestSupport.Weights(config, 6));
        var prefill = model.Prefill([[1, 2], [3, 4, 5, 6]]);
        using var state = prefill.State;
        using var clone = state.Clone();
        var original = model.Step([9, 10], state);
        var again = model.Step([9, 10], clone);
        Numerics.AssertClose("clone b0", again[0], original[0]);
        Numerics.AssertClose("clone b1", again[1], original[1]);

        clone.Reorder([1, 1, 0]);
        Assert.Equal([5, 5, 3], clone.Positions);
        var next = model.Step([11, 12, 13], clone);
        var reference0 = model.Step([13, 11], state);
        Numerics.AssertClose("reordered b0 = old b1", next[0], reference0[1]);
        Numerics.AssertClose("reordered b2 = old b0", next[2], reference0[0]);
        Assert.Equal(3, clone.Batch);
        Assert.Throws<ArgumentException>(() => clone.Reorder([3]));
    }

    [Fact]
    public void A_saved_state_reloads_and_continues_identically()
    {
        var config = ModelTestSupport.Micro();
        using var model = LanguageModel.FromWeights(device, config, ModelTestSupport.Weights(config, 8));
        var path = Path.Combine(Path.GetTempPath(), $"retnet-state-{Guid.NewGuid():N}.safetensors");
        try
        {
            var prefill = model.Prefill([[1, 2, 3], [4]]);
            using var state = prefill.State;
            state.Save(path);
            using var loaded = DecodingState.Load(path, model);
            Assert.Equal(state.Positions, loaded.Positions);
            var a = model.Step([7, 8], state);
            var b = model.Step([7, 8], loaded);
            Assert.Equal(a[0], b[0]);
            Assert.Equal(a[1], b[1]);

            using var other = LanguageModel.Create(device, ModelTestSupport.Micro(heads: 1), seed: 1);
            var error = Assert.Throws<InvalidDataException>(() => DecodingState.Load(path, other));
            Assert.Contains("layers.0.retention_state", error.Message);
        }
        finally
        {
            File.Delete(path);
        }
    }

    /// <summary>
    /// The law of the robustness properties (properties/RetNet.Ilgpu.Properties/Robustness): a state file loads or
    /// throws a typed exception. Positions beyond int32 in the metadata escaped as an OverflowException.
    /// </summary>
    [Theory]
    [InlineData("99999999999999999999")]
    [InlineData("1,2147483648")]
    public void A_state_loads_fitting_the_model_or_throws_a_typed_error_for_positions_beyond_int32(string positions)
    {
        var config = ModelTestSupport.Micro(heads: 1, layers: 1);
        using var model = LanguageModel.Create(device, config, seed: 1);
        var path = Path.Combine(Path.GetTempPath(), $"retnet-state-{Guid.NewGuid():N}.safetensors");
        try
        {
            Ilgpu.IO.Safetensors.Write(path,
                new Dictionary<string, Ilgpu.IO.HostTensor>
                {
                    ["layers.0.retention_state"] = new([1, config.RetentionHeads, config.KeyHeadDim, config.ValueHeadDim],
                        new float[config.RetentionHeads * config.KeyHeadDim * config.ValueHeadDim]),
                },
                new Dictionary<string, string> { ["format"] = "retnet-decoding-state", ["positions"] = positions });
            var error = Assert.Throws<InvalidDataException>(() => DecodingState.Load(path, model));
            Assert.Contains("are not non-negative integers", error.Message);
        }
        finally
        {
            File.Delete(path);
        }
    }

    private static void AssertRow(float[] full, int vocab, int seqLen, int b, int t, float[] row, string what) =>
        Numerics.AssertClose(what, row, full.AsSpan((b * seqLen + t) * vocab, vocab).ToArray());
}
