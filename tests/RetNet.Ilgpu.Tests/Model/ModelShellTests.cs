using RetNet.Ilgpu.Generation;
using RetNet.Ilgpu.IO;
using RetNet.Ilgpu.Model;
using RetNet.Ilgpu.Tests.Robustness;
using RetNet.Ilgpu.Tests.Support;

namespace RetNet.Ilgpu.Tests.Model;

/// <summary>
/// The decoder shell's laws, for every architecture at once: the same calls work whatever the token mixer, a state
/// continued in parts equals one prefill of the whole, what a plan keeps does not change the gradients, a state forgets
/// positions only where that means something, and non-finite values are refused where they first appear.
/// </summary>
[Collection(DeviceCollection.Name)]
public sealed class ModelShellTests(DeviceFixture fixture)
{
    private readonly RetNetDevice device = fixture.Device;

    /// <summary>A RetNet and a Transformer of the same size, small enough for the simulator lane.</summary>
    public static TheoryData<string> Architectures => ["retnet", "transformer"];

    private static ModelConfig Config(string architecture) => architecture == "retnet"
        ? ModelTestSupport.Micro(heads: 2, layers: 2)
        : new TransformerConfig { EmbedDim = 32, Heads = 2, FfnEmbedDim = 48, Layers = 2, VocabSize = 40 };

    private LanguageModel Model(string architecture, int seed = 1)
    {
        var config = Config(architecture);
        return LanguageModel.FromWeights(device, config, ModelTestSupport.WithNormsOffOne(config.InitialWeights(seed), seed));
    }

    [Theory]
    [MemberData(nameof(Architectures))]
    public void A_state_continued_in_parts_gives_the_logits_of_one_prefill_of_the_whole(string architecture)
    {
        using var model = Model(architecture);
        int[] whole = [3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8];
        var (expected, one) = model.Prefill([whole], chunkSize: 4);
        using (one)
        {
            using var parts = model.CreateState(1);
            model.Extend(parts, [whole[..5]], chunkSize: 4);
            var logits = model.Extend(parts, [whole[5..]], chunkSize: 4);
            Assert.Equal([whole.Length], parts.Positions);
            Numerics.AssertClose($"{architecture} in parts", logits[0], expected[0].Select(v => (double)v).ToArray(),
                ModelTestSupport.ParityTolerance);
            // Negative control: the second part alone, from an empty state, is another sequence.
            using var fresh = model.CreateState(1);
            var alone = model.Extend(fresh, [whole[5..]], chunkSize: 4);
            Numerics.AssertRejected(Numerics.Check($"{architecture} second part alone", alone[0],
                expected[0].Select(v => (double)v).ToArray(), ModelTestSupport.ParityTolerance));
        }
    }

    [Theory]
    [MemberData(nameof(Architectures))]
    public void Keeping_only_block_inputs_gives_bit_identical_gradients_in_less_memory(string architecture)
    {
        var windows = ModelTestSupport.Tokens(seed: 6, batch: 2, seqLen: 13, vocab: 40);
        IReadOnlyDictionary<string, HostTensor> Run(ActivationPlan keep, out long bytes)
        {
            using var model = Model(architecture, seed: 3);
            using var gradients = model.CreateGradients();
            model.ForwardBackward(windows, gradients, ForwardMode.Chunkwise(4), keep: keep);
            bytes = model.TrainingWorkspaceBytes;
            return gradients.ToHost();
        }
        var kept = Run(ActivationPlan.KeepEverything, out var keptBytes);
        var recomputed = Run(ActivationPlan.KeepBlockInputs, out var recomputedBytes);
        foreach (var (name, gradient) in kept)
            Assert.True(gradient.Data.AsSpan().SequenceEqual(recomputed[name].Data), $"{architecture} {name}");
        Assert.True(recomputedBytes < keptBytes, $"{architecture}: {recomputedBytes} ≥ {keptBytes} bytes");
        // Negative control: the gradients are not all zero, so equality is not the product of nothing computed.
        Assert.Contains(kept.Values, g => g.Data.Any(v => v != 0));
        using var inference = Model(architecture);
        using var unused = inference.CreateGradients();
        Assert.Throws<ArgumentException>(() =>
            inference.ForwardBackward(windows, unused, keep: ActivationPlan.KeepNothing));
    }

    [Fact]
    public void A_kv_cache_forgets_positions_and_a_retention_state_refuses_to()
    {
        int[] prompt = [5, 6, 7, 8, 9, 10];
        using (var retnet = Model("retnet"))
        {
            var (_, state) = retnet.Prefill([prompt]);
            using (state)
            {
                Assert.False(state.CanTruncate);
                Assert.Null(state.Capacity);
                Assert.Throws<NotSupportedException>(() => state.Truncate(3));
                Assert.Equal([prompt.Length], state.Positions);
            }
        }
        using var transformer = Model("transformer");
        var (_, cache) = transformer.Prefill([prompt]);
        using (cache)
        {
            Assert.True(cache.CanTruncate);
            cache.Truncate(3);
            var rolledBack = transformer.Step([11], cache);
            var (expected, fresh) = transformer.Prefill([[.. prompt[..3], 11]]);
            fresh.Dispose();
            Numerics.AssertClose("after a rollback", rolledBack[0], expected[0].Select(v => (double)v).ToArray(),
                ModelTestSupport.ParityTolerance);
            // Negative control: without the rollback the step sees all six positions.
            var (full, again) = transformer.Prefill([[.. prompt, 11]]);
            again.Dispose();
            Numerics.AssertRejected(Numerics.Check("without a rollback", rolledBack[0],
                full[0].Select(v => (double)v).ToArray(), ModelTestSupport.ParityTolerance));
        }
    }

    [Theory]
    [MemberData(nameof(Architectures))]
    public void The_first_stage_with_a_non_finite_value_is_named_and_a_finite_model_has_none(string architecture)
    {
        var config = Config(architecture);
        var tokens = new int[,] { { 1, 2, 3, 4 } };
        using (var finite = Model(architecture))
            Assert.Null(finite.LocateNonFinite(tokens));
        // A finite but huge embedding (every scaled embedding overflows fp32: the checkpoint loads, its logits must not
        // pass), and a block's weights loaded NaN on purpose (allowNonFiniteWeights): each is named where it starts.
        foreach (var (name, poison, stage) in new[]
                 {
                     ("embed_tokens.weight", 3e38f, "the token embedding"),
                     ("layers.1.ffn.fc2.weight", float.NaN, "block 1 (layers.1"),
                 })
        {
            var weights = ModelTestSupport.WithNormsOffOne(config.InitialWeights(1), 1).ToDictionary();
            Array.Fill(weights[name].Data, poison);
            using var model = LanguageModel.FromWeights(device, config, weights, allowNonFiniteWeights: true);
            Assert.StartsWith(stage, model.LocateNonFinite(tokens));
            var refused = Assert.Throws<NonFiniteValuesException>(() => model.Forward(tokens));
            Assert.StartsWith(stage, refused.Stage);
            Assert.StartsWith(stage, Assert.Throws<NonFiniteValuesException>(() => model.Prefill([[1, 2, 3, 4]])).Stage);
            Assert.StartsWith(stage,
                Assert.Throws<NonFiniteValuesException>(() => model.Loss(new int[,] { { 1, 2, 3, 4, 5 } })).Stage);
        }
    }

    [Fact]
    public void Generation_stops_at_non_finite_logits_naming_the_block_with_the_sequence_that_made_them()
    {
        var config = Config("retnet");
        var weights = ModelTestSupport.WithNormsOffOne(config.InitialWeights(1), 1).ToDictionary();
        // Only token 7's embedding overflows: the prompt is finite, and the block that sees token 7 first is named.
        var dim = weights["embed_tokens.weight"].Shape[1];
        Array.Fill(weights["embed_tokens.weight"].Data, 3e38f, 7 * dim, dim);
        using var model = LanguageModel.FromWeights(device, config, weights);
        using var decoder = new ModelTokenDecoder(model);
        decoder.Prefill([[1, 2, 3]]);
        var refused = Assert.Throws<NonFiniteValuesException>(() => decoder.Step([7]));
        Assert.Equal(0, refused.Sequence);
        Assert.NotNull(refused.Stage);
        Assert.Contains("first appear in", refused.Message);
        // Negative control: a finite token continues normally.
        decoder.Prefill([[1, 2, 3]]);
        Assert.All(decoder.Step([8])[0], v => Assert.True(float.IsFinite(v)));
    }

    [Fact]
    public void Forward_on_the_command_line_refuses_to_write_non_finite_logits_and_exits_1()
    {
        var folder = Path.Combine(Path.GetTempPath(), $"retnet-huge-{Guid.NewGuid():N}");
        try
        {
            var config = ModelTestSupport.Micro();
            var weights = ModelTestSupport.Weights(config, seed: 2).ToDictionary();
            var fc2 = weights["layers.0.ffn.fc2.weight"].Data;
            var finite = (float[])fc2.Clone();
            Array.Fill(fc2, 3e38f);
            using (var model = LanguageModel.FromWeights(device, config, weights))
                model.Save(Path.Combine(folder, "model"));
            File.WriteAllText(Path.Combine(folder, "tokens.txt"), "1 2 3 4\n5 6 7 8\n");
            string[] Forward(string model) =>
            [
                "forward", "--model", Path.Combine(folder, model), "--tokens", Path.Combine(folder, "tokens.txt"),
                "--output", Path.Combine(folder, model + ".safetensors"), "--device", "cpu",
            ];
            var (code, _, output) = ChildProcess.Run(ChildProcess.RetnetDll, Forward("model"));
            Assert.Equal(1, code);
            Assert.Contains(output, line => line.StartsWith("error: Non-finite values", StringComparison.Ordinal) &&
                                            line.Contains("block 0 (layers.0", StringComparison.Ordinal));
            Assert.False(File.Exists(Path.Combine(folder, "model.safetensors")));
            // Negative control: the same model with its own finite weights writes its logits.
            finite.CopyTo(fc2, 0);
            using (var model = LanguageModel.FromWeights(device, config, weights))
                model.Save(Path.Combine(folder, "fine"));
            Assert.Equal(0, ChildProcess.Run(ChildProcess.RetnetDll, Forward("fine")).ExitCode);
            Assert.True(File.Exists(Path.Combine(folder, "fine.safetensors")));
        }
        finally
        {
            if (Directory.Exists(folder))
                Directory.Delete(folder, recursive: true);
        }
    }
}
