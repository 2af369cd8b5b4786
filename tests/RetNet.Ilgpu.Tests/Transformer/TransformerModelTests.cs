using RetNet.Ilgpu.Generation;
using RetNet.Ilgpu.IO;
using RetNet.Ilgpu.Model;
using RetNet.Ilgpu.Tests.Model;
using RetNet.Ilgpu.Tests.Support;
using RetNet.Ilgpu.Verification.Cases;

namespace RetNet.Ilgpu.Tests.Transformer;

/// <summary>
/// The baseline Transformer against its float64 reference: logits, prefill and KV-cache steps, gradients (central
/// differences of the reference loss), its config and folder format, and the errors a user can hit.
/// </summary>
[Collection(DeviceCollection.Name)]
public sealed class TransformerModelTests(DeviceFixture fixture)
{
    private const double LogitTolerance = 2e-4, GradientTolerance = 2e-3;

    private readonly RetNetDevice device = fixture.Device;

    /// <summary>A micro config: d 32, 2 heads (head dim 16), FFN 40, 2 layers, vocab 40.</summary>
    private static TransformerConfig Micro(string activation = "swish", bool tied = false, int heads = 2) => new()
    {
        EmbedDim = 16 * heads, Heads = heads, FfnEmbedDim = 40, Layers = 2, VocabSize = 40, ActivationFn = activation,
        ShareInputOutputEmbed = tied,
    };

    /// <summary>The initialisation with the norm weights moved off 1, so that they matter.</summary>
    private static IReadOnlyDictionary<string, HostTensor> Weights(TransformerConfig config, int seed) =>
        ModelCases.WithNormWeightsOffOne(config.InitialWeights(seed), seed + 7);

    public static TheoryData<string> Layouts => ["swish", "gelu-tied", "one-head", "three-heads"];

    private static TransformerConfig Layout(string name) => name switch
    {
        "gelu-tied" => Micro("gelu", tied: true),
        "one-head" => Micro(heads: 1),
        "three-heads" => Micro(heads: 3) with { NoScaleEmbedding = true },
        _ => Micro(),
    };

    [Theory, MemberData(nameof(Layouts))]
    public void Logits_match_the_float64_reference_and_the_check_rejects_a_leaking_mask(string layout)
    {
        var config = Layout(layout);
        var weights = Weights(config, seed: 3);
        var tokens = ModelTestSupport.Tokens(seed: 9, batch: 2, seqLen: 19, config.VocabSize);
        using var model = LanguageModel.FromWeights(device, config, weights);
        using var logits = model.Forward(tokens);
        var actual = logits.ToHost();

        Numerics.AssertClose($"{layout} logits", actual, TransformerReference.Forward(config, weights, tokens),
            LogitTolerance);
        Numerics.AssertRejected(Numerics.Check($"{layout} logits against a leaking mask", actual,
            TransformerReference.Forward(config, weights, tokens, leak: true), LogitTolerance));
        Numerics.AssertRejected(Numerics.Check($"{layout} zeros", new float[actual.Length],
            TransformerReference.Forward(config, weights, tokens), LogitTolerance));
    }

    [Fact]
    public void Prefill_then_steps_equal_the_full_forward_for_prompts_of_different_lengths()
    {
        var config = Micro();
        var weights = Weights(config, seed: 5);
        var tokens = ModelTestSupport.Tokens(seed: 2, batch: 2, seqLen: 15, config.VocabSize);
        using var model = LanguageModel.FromWeights(device, config, weights);
        var expected = TransformerReference.Forward(config, weights, tokens);
        int vocab = config.VocabSize, seqLen = tokens.GetLength(1);
        int[] promptLengths = [4, 9];

        var (logits, cache) = model.Prefill(
            [ModelTestSupport.Row(tokens, 0, promptLengths[0]), ModelTestSupport.Row(tokens, 1, promptLengths[1])]);
        using (cache)
        {
            for (var b = 0; b < 2; b++)
                Numerics.AssertClose($"prefill {b}", logits[b], Slice(expected, b, promptLengths[b] - 1), LogitTolerance);
            Assert.Equal(promptLengths, cache.Positions);
            // Sequence 0 catches up to sequence 1's length first; then both step together (the cache grows).
            for (var step = 0; step < seqLen - promptLengths[0]; step++)
            {
                var next = new int[2];
                for (var b = 0; b < 2; b++)
                    next[b] = tokens[b, Math.Min(cache.Positions[b], seqLen - 1)];
                var position = cache.Positions.ToArray();
                var stepLogits = model.Step(next, cache);
                for (var b = 0; b < 2; b++)
                    if (position[b] < seqLen && tokens[b, position[b]] == next[b])
                        Numerics.AssertClose($"step at {position[b]} of {b}", stepLogits[b], Slice(expected, b, position[b]),
                            LogitTolerance);
                if (step == 0)
                    Numerics.AssertRejected(Numerics.Check("a step against the previous position", stepLogits[0],
                        Slice(expected, 0, position[0] - 1), LogitTolerance));
            }
            Assert.True(cache.Capacity >= cache.Positions.Max());
        }

        double[] Slice(double[] all, int b, int t) => all.AsSpan((b * seqLen + t) * vocab, vocab).ToArray();
    }

    [Fact]
    public void Reorder_select_and_truncate_move_whole_sequences()
    {
        var config = Micro();
        var weights = Weights(config, seed: 8);
        var tokens = ModelTestSupport.Tokens(seed: 6, batch: 2, seqLen: 8, config.VocabSize);
        using var model = LanguageModel.FromWeights(device, config, weights);
        var (_, cache) = model.Prefill([ModelTestSupport.Row(tokens, 0, 6), ModelTestSupport.Row(tokens, 1, 3)], 8);
        using (cache)
        {
            using var swapped = cache.Select([1, 0, 1]);
            Assert.Equal([3, 6, 3], swapped.Positions);
            var fromSwapped = model.Step([7, 7, 7], swapped);
            var fromOriginal = model.Step([7, 7], cache);
            Numerics.AssertClose("selected sequence 1", fromSwapped[0], fromOriginal[1], 0);
            Numerics.AssertClose("selected sequence 0", fromSwapped[1], fromOriginal[0], 0);
            Numerics.AssertClose("a repeated index", fromSwapped[2], fromOriginal[1], 0);

            cache.Reorder([1]);
            Assert.Equal(1, cache.Batch);
            Assert.Equal([4], cache.Positions);
            cache.Truncate(2);
            Assert.Equal([2], cache.Positions);
            var again = model.Step([tokens[1, 2]], cache);
            var reference = TransformerReference.Forward(config, weights, tokens);
            Numerics.AssertClose("after a rollback to position 2", again[0],
                reference.AsSpan((8 + 2) * config.VocabSize, config.VocabSize).ToArray(), LogitTolerance);

            Assert.Throws<ArgumentException>(() => cache.Reorder([1]));
            Assert.Throws<ArgumentException>(() => cache.Select([]));
            Assert.Throws<ArgumentOutOfRangeException>(() => cache.Truncate(-1));
        }
    }

    [Theory, MemberData(nameof(Layouts))]
    public void Gradients_match_central_differences_of_the_float64_reference(string layout)
    {
        var config = Layout(layout);
        var weights = Weights(config, seed: 17);
        var windows = ModelTestSupport.Tokens(seed: 4, batch: 2, seqLen: 7, config.VocabSize);
        using var model = LanguageModel.FromWeights(device, config, weights);
        using var gradients = ModelGradients.Zeros(model);
        var loss = model.ForwardBackward(windows, gradients);
        Assert.True(Math.Abs(loss - TransformerReference.Loss(config, weights, windows)) <= 1e-5 * loss,
            $"{layout}: loss {loss} vs the float64 reference");

        foreach (var (name, gradient) in gradients.ToHost())
            GradientCheck.Measure(weights[name].Data, () => TransformerReference.Loss(config, weights, windows))
                .AssertAgreesAndRejectsWrongGradients($"{layout} d{name}", gradient.Data, GradientTolerance);

        // The += rule: a second pass adds the same gradients again.
        var once = gradients.ToHost();
        model.ForwardBackward(windows, gradients);
        var twice = gradients.ToHost();
        foreach (var (name, g) in once)
            Numerics.AssertClose($"{layout} d{name} twice", twice[name].Data, g.Data.Select(v => 2.0 * v).ToArray(),
                1e-5);
    }

    [Fact]
    public void The_matching_config_has_the_retnet_presets_parameter_count_within_one_ffn_column()
    {
        foreach (var name in new[] { "tiny", "small", "base", "7b" })
        {
            var retnet = RetNetConfig.Preset(name);
            var transformer = TransformerConfig.Matching(retnet);
            Assert.Equal(retnet.EmbedDim, transformer.EmbedDim);
            Assert.Equal(retnet.RetentionHeads, transformer.Heads);
            Assert.Equal(retnet.Layers, transformer.Layers);
            var difference = Math.Abs(transformer.ParameterCount() - retnet.ParameterCount());
            // Rounding the FFN width moves 3·d·layers weights per column, at most half a column each way.
            Assert.True(difference <= 1.5 * retnet.EmbedDim * retnet.Layers,
                $"{name}: transformer {transformer.ParameterCount()}, retnet {retnet.ParameterCount()}");
        }
        var tiny = TransformerConfig.Preset("tiny");
        using var model = LanguageModel.Create(device, tiny);
        // Counted by hand: embedding and output [V, d], per layer q, k, v, out [d, d], the FFN's three [ffn, d] and
        // two norms [d], the final norm [d].
        long d = tiny.EmbedDim, layers = tiny.Layers;
        Assert.Equal(2 * tiny.VocabSize * d + d + layers * (4 * d * d + 3 * d * tiny.FfnEmbedDim + 2 * d),
            model.ParameterCount);
    }

    [Fact]
    public void A_saved_cache_resumes_decoding_exactly_and_a_foreign_file_is_refused()
    {
        var config = Micro();
        using var model = LanguageModel.Create(device, config, seed: 6);
        var path = Path.Combine(Path.GetTempPath(), $"retnet-kv-{Guid.NewGuid():N}.safetensors");
        try
        {
            var (_, cache) = model.Prefill([[1, 2, 3, 4], [5, 6]]);
            using (cache)
            {
                cache.Save(path);
                var expected = model.Step([7, 8], cache);
                using var loaded = DecodingState.Load(path, model, capacity: 3);
                Assert.Equal([4, 2], loaded.Positions);
                Assert.Equal(4, loaded.Capacity);
                var actual = model.Step([7, 8], loaded);
                for (var b = 0; b < 2; b++)
                    Numerics.AssertClose($"resumed sequence {b}", actual[b], expected[b], 0);
            }
            using var other = LanguageModel.Create(device, config with { Layers = 1 });
            var error = Assert.Throws<InvalidDataException>(() => DecodingState.Load(path, other));
            Assert.Contains("layers.1.keys", error.Message);
            var retnetState = Path.Combine(Path.GetTempPath(), $"retnet-state-{Guid.NewGuid():N}.safetensors");
            try
            {
                using var retnet = LanguageModel.Create(device, ModelTestSupport.Micro());
                using var state = retnet.CreateState(1);
                state.Save(retnetState);
                Assert.Throws<InvalidDataException>(() => DecodingState.Load(retnetState, model));
            }
            finally
            {
                File.Delete(retnetState);
            }
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public void A_saved_folder_loads_to_the_same_logits_and_says_it_holds_a_transformer()
    {
        var config = Micro(tied: true);
        var folder = Path.Combine(Path.GetTempPath(), $"retnet-transformer-{Guid.NewGuid():N}");
        try
        {
            var tokens = ModelTestSupport.Tokens(seed: 1, batch: 1, seqLen: 5, config.VocabSize);
            float[] before;
            using (var model = LanguageModel.Create(device, config, seed: 4))
            {
                model.Save(folder);
                using var logits = model.Forward(tokens);
                before = logits.ToHost();
            }
            var json = File.ReadAllText(Path.Combine(folder, "config.json"));
            Assert.IsType<TransformerConfig>(ModelConfig.FromJson(json));
            Assert.Equal(config, TransformerConfig.FromJson(json));
            using (var loaded = LanguageModel.Load(device, folder))
            {
                using var logits = loaded.Forward(tokens);
                Numerics.AssertClose("reloaded", logits.ToHost(), before, 0);
            }
            // Negative control: torchscale's reader refuses the folder's config, naming its type.
            var error = Assert.Throws<ArgumentException>(() => RetNetConfig.FromJson(json));
            Assert.Contains("model_type \"transformer\"", error.Message);
        }
        finally
        {
            if (Directory.Exists(folder))
                Directory.Delete(folder, recursive: true);
        }
    }

    [Fact]
    public void Bad_configs_weights_and_tokens_are_refused_with_the_field_named()
    {
        var error = Assert.Throws<ArgumentException>(() => (Micro() with { Heads = 3 }).Validate());
        Assert.Contains("embed_dim 32 is not divisible by attention_heads 3", error.Message);
        error = Assert.Throws<ArgumentException>(() => (Micro() with { EmbedDim = 30, Heads = 2 }).Validate());
        Assert.Contains("odd", error.Message);
        error = Assert.Throws<ArgumentException>(() => TransformerConfig.FromJson(
            """{"model_type": "transformer", "embed_dim": 32, "attention_heads": 2, "ffn_embed_dim": 8, "layers": 1, "vocab_size": 5, "dropout": 0.1}"""));
        Assert.Contains("unknown fields dropout", error.Message);
        error = Assert.Throws<ArgumentException>(() => TransformerConfig.FromJson(
            """{"model_type": "transformer", "embed_dim": 32, "attention_heads": 2, "layers": 1, "vocab_size": 5}"""));
        Assert.Contains("lacks ffn_embed_dim", error.Message);
        error = Assert.Throws<ArgumentException>(() => TransformerConfig.FromJson(
            """{"model_type": "transformer", "embed_dim": "wide", "attention_heads": 2, "ffn_embed_dim": 8, "layers": 1, "vocab_size": 5}"""));
        Assert.Contains("embed_dim", error.Message);

        var config = Micro();
        var weights = new Dictionary<string, HostTensor>(Weights(config, seed: 1));
        weights.Remove("layers.1.ffn.gate.weight");
        weights["layers.0.attention.q_proj.weight"] = new HostTensor([3, 3], new float[9]);
        var mismatch = Assert.Throws<CheckpointMismatchException>(() =>
            LanguageModel.FromWeights(device, config, weights));
        Assert.Contains("layers.1.ffn.gate.weight", mismatch.Message);
        Assert.Contains("layers.0.attention.q_proj.weight", mismatch.Message);

        var poisoned = Weights(config, seed: 1);
        poisoned["layers.1.attention.v_proj.weight"].Data[5] = float.NaN;
        error = Assert.Throws<ArgumentException>(() => LanguageModel.FromWeights(device, config, poisoned));
        Assert.Contains("layers.1.attention.v_proj.weight", error.Message);

        using var model = LanguageModel.Create(device, config);
        error = Assert.Throws<ArgumentException>(() => model.Forward(new int[,] { { 1, 40 } }));
        Assert.Contains("id 40", error.Message);
        Assert.Throws<ArgumentException>(() => model.Forward(new int[0, 3]));
        var (_, cache) = model.Prefill([[1, 2]]);
        using (cache)
        {
            error = Assert.Throws<ArgumentException>(() => model.Step([1, 2], cache));
            Assert.Contains("one per sequence", error.Message);
        }
        Assert.Throws<ArgumentException>(() => model.Prefill([[]]));
    }

    [Fact]
    public void The_generator_drives_the_transformer_through_its_kv_cache()
    {
        var config = Micro();
        using var model = LanguageModel.Create(device, config, seed: 2);
        using var decoder = new ModelTokenDecoder(model);
        var tokens = Generator.Generate(decoder, [[1, 2, 3]], new SamplingOptions { MaxTokens = 12, Temperature = 0 })
            .ToList();
        Assert.Equal(12, tokens.Count);
        Assert.Equal(3 + 11, decoder.State!.Positions[0]); // the last sampled token is never fed back
        Assert.Throws<InvalidOperationException>(() => new ModelTokenDecoder(model).Step([1]));
    }
}
