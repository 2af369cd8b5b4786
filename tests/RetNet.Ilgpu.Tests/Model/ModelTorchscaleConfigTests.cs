using System.Text.Json.Nodes;
using RetNet.Ilgpu.IO;
using RetNet.Ilgpu.Model;
using RetNet.Ilgpu.Tests.Support;

namespace RetNet.Ilgpu.Tests.Model;

/// <summary>torchscale's configuration fields, presets and checkpoint buffers.</summary>
[Collection(DeviceCollection.Name)]
public sealed class ModelTorchscaleConfigTests(DeviceFixture fixture)
{
    private readonly RetNetDevice device = fixture.Device;

    /// <summary>Every field of torchscale's RetNetConfig at its default, as <c>vars(RetNetConfig())</c> lists them.</summary>
    private const string TorchscaleDefaults = """
        { "decoder_embed_dim": 32, "decoder_value_embed_dim": 64, "decoder_retention_heads": 2,
          "decoder_ffn_embed_dim": 48, "decoder_layers": 2, "decoder_normalize_before": true, "activation_fn": "gelu",
          "dropout": 0.0, "drop_path_rate": 0.0, "activation_dropout": 0.0, "no_scale_embedding": true,
          "layernorm_embedding": false, "moe_freq": 0, "moe_top1_expert": false, "moe_expert_count": 0,
          "moe_gating_use_fp32": true, "moe_eval_capacity_token_fraction": 0.25, "moe_second_expert_policy": "random",
          "moe_normalize_gate_prob_before_dropping": false, "use_xmoe": false, "rel_pos_buckets": 0,
          "max_rel_pos": 0, "deepnorm": false, "subln": true, "multiway": false,
          "share_decoder_input_output_embed": false, "max_target_positions": 1024, "no_output_layer": false,
          "layernorm_eps": 1e-06, "chunkwise_recurrent": false, "recurrent_chunk_size": 512, "vocab_size": 40,
          "checkpoint_activations": false, "fsdp": false, "ddp_rank": 0, "xpos_rel_pos": false,
          "xpos_scale_base": 512, "encoder_normalize_before": true }
        """;

    [Fact]
    public void A_full_torchscale_config_at_its_defaults_is_accepted()
    {
        var config = RetNetConfig.FromJson(TorchscaleDefaults);
        Assert.True(config.NormalizeBefore);
        Assert.False(config.Deepnorm);
        Assert.False(config.LayerNormEmbedding);
        Assert.Equal(1f, config.ResidualScale);
    }

    [Theory]
    [InlineData("moe_freq", "2", "mixture-of-experts")]
    [InlineData("use_xmoe", "true", "X-MoE")]
    [InlineData("multiway", "true", "multiway")]
    [InlineData("no_output_layer", "true", "without output projection")]
    [InlineData("xpos_rel_pos", "true", "xPos")]
    public void A_field_that_would_change_the_computation_is_refused_by_name(string field, string value, string feature)
    {
        var json = JsonNode.Parse(TorchscaleDefaults)!.AsObject();
        json[field] = JsonNode.Parse(value);
        var error = Assert.Throws<ArgumentException>(() => RetNetConfig.FromJson(json.ToJsonString()));
        Assert.Contains($"{field} is {value}", error.Message);
        Assert.Contains(feature, error.Message);
    }

    [Fact]
    public void Every_refused_field_is_listed_at_once()
    {
        var json = JsonNode.Parse(TorchscaleDefaults)!.AsObject();
        json["moe_freq"] = 1;
        json["multiway"] = true;
        json["no_output_layer"] = true;
        var message = Assert.Throws<ArgumentException>(() => RetNetConfig.FromJson(json.ToJsonString())).Message;
        Assert.Contains("moe_freq is 1", message);
        Assert.Contains("multiway is true", message);
        Assert.Contains("no_output_layer is true", message);
    }

    [Fact]
    public void Deepnorm_post_norm_and_layernorm_embedding_are_read_and_written()
    {
        var json = JsonNode.Parse(TorchscaleDefaults)!.AsObject();
        json["deepnorm"] = true;
        json["decoder_normalize_before"] = false;
        json["layernorm_embedding"] = true;
        var config = RetNetConfig.FromJson(json.ToJsonString());
        Assert.True(config.Deepnorm);
        Assert.False(config.NormalizeBefore);
        Assert.True(config.LayerNormEmbedding);
        Assert.Equal(Math.Pow(4, 0.25), config.ResidualScale, 6);
        Assert.Equal(config, RetNetConfig.FromJson(config.ToJson()));
        var names = WeightLayout.Expected(config).Select(e => e.Name).ToList();
        Assert.Contains("layernorm_embedding.weight", names);
        Assert.DoesNotContain("layer_norm.weight", names);
        Assert.Contains("layer_norm.weight", WeightLayout.Expected(ModelTestSupport.Micro()).Select(e => e.Name));
    }

    [Theory]
    [InlineData("base", 512, 864, 864, 6, 2)]
    [InlineData("medium", 1024, 1728, 1728, 16, 4)]
    [InlineData("xl", 2048, 3456, 3456, 24, 8)]
    [InlineData("3b", 2560, 4280, 4280, 32, 10)]
    [InlineData("7b", 4096, 6912, 6912, 32, 16)]
    [InlineData("13b", 5120, 8560, 8560, 40, 20)]
    [InlineData("65b", 8192, 13824, 13824, 64, 32)]
    public void Presets_are_torchscales_registered_sizes(string name, int d, int value, int ffn, int layers, int heads)
    {
        var config = RetNetConfig.Preset(name);
        Assert.Equal((d, value, ffn, layers, heads),
            (config.EmbedDim, config.ValueEmbedDim, config.FfnEmbedDim, config.Layers, config.RetentionHeads));
        Assert.Equal(256, config.KeyHeadDim);
        Assert.Equal(50257, config.VocabSize);
        Assert.Equal("swish", config.ActivationFn);
        Assert.False(config.NoScaleEmbedding);
        Assert.True(config.NormalizeBefore);
    }

    [Fact]
    public void Deepnorm_initialisation_shrinks_exactly_fc1_fc2_out_proj_and_v_proj()
    {
        var plain = ModelTestSupport.Micro(layers: 3);
        var deep = plain with { Deepnorm = true };
        var a = WeightLayout.Initialize(plain, 9);
        var b = WeightLayout.Initialize(deep, 9);
        var divisor = (float)Math.Pow(24, 0.25);
        foreach (var (name, tensor) in a)
        {
            var shrunk = name.EndsWith("fc1.weight", StringComparison.Ordinal) || name.EndsWith("fc2.weight", StringComparison.Ordinal) ||
                         name.EndsWith("out_proj.weight", StringComparison.Ordinal) || name.EndsWith("v_proj.weight", StringComparison.Ordinal);
            for (var i = 0; i < tensor.Data.Length; i++)
                Assert.Equal(shrunk ? tensor.Data[i] / divisor : tensor.Data[i], b[name].Data[i]);
        }
    }

    [Fact]
    public void Matching_buffers_are_accepted_without_notice_and_saved_with_the_model()
    {
        var config = ModelTestSupport.Micro(tied: true);
        var weights = new Dictionary<string, HostTensor>(ModelTestSupport.Weights(config, 3));
        foreach (var (name, buffer) in WeightLayout.Buffers(config))
            weights.Add("decoder." + name, buffer);
        using var model = LanguageModel.FromWeights(device, config, weights);
        Assert.Empty(model.Notices);
        Assert.Same(config, model.Config);

        var folder = Path.Combine(Path.GetTempPath(), $"retnet-buffers-{Guid.NewGuid():N}");
        try
        {
            model.Save(folder);
            var saved = Safetensors.Read(Path.Combine(folder, "model.safetensors")).Tensors;
            Assert.Equal(WeightLayout.Buffers(config)[WeightLayout.DecayBuffer].Data, saved[WeightLayout.DecayBuffer].Data);
            Assert.Equal([config.KeyHeadDim], saved[WeightLayout.AngleBuffer].Shape);
            Assert.Equal(saved["embed_tokens.weight"].Data, saved["output_projection.weight"].Data);
            using var loaded = LanguageModel.Load(device, folder);
            Assert.Empty(loaded.Notices);
            Assert.Equal(config, loaded.Config);
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }

    [Fact]
    public void A_decay_buffer_with_other_decays_is_used_and_said()
    {
        var config = ModelTestSupport.Micro();
        var weights = new Dictionary<string, HostTensor>(ModelTestSupport.Weights(config, 4))
        {
            [WeightLayout.DecayBuffer] = new([2], [(float)Math.Log(0.9), (float)Math.Log(0.99)]),
        };
        using var model = LanguageModel.FromWeights(device, config, weights);
        var notice = Assert.Single(model.Notices);
        Assert.Contains("retnet_rel_pos.decay", notice);
        Assert.Contains("head 0", notice);
        Assert.Equal(0.9, Assert.IsType<RetNetConfig>(model.Config).RetentionDecay![0], 6);
        Assert.Equal(0.99, ((RetNetConfig)model.Config).RetentionDecay![1], 6);

        var tokens = ModelTestSupport.Tokens(seed: 3, batch: 1, seqLen: 9, config.VocabSize);
        using var logits = model.Forward(tokens, ForwardMode.Chunkwise(4));
        Numerics.AssertClose("with the buffer's decays", logits.ToHost(),
            ModelReference.Forward((RetNetConfig)model.Config, weights, tokens), ModelTestSupport.ParityTolerance);
        Numerics.AssertRejected(Numerics.Check("with the schedule's decays", logits.ToHost(),
            ModelReference.Forward(config, weights, tokens), ModelTestSupport.ParityTolerance));
    }

    [Fact]
    public void Torchscales_fp32_decay_buffer_of_many_heads_matches_its_schedule()
    {
        // log(1 − 2^(−5−h)) formed in fp32 is exactly 0 from h = 20 on: still the torchscale schedule, no notice.
        var config = ModelTestSupport.Micro(heads: 24) with { EmbedDim = 48, ValueEmbedDim = 48 };
        var decay = Enumerable.Range(0, 24).Select(h => MathF.Log(1f - MathF.Pow(2f, -5 - h))).ToArray();
        Assert.Equal(0f, decay[20]);
        var weights = new Dictionary<string, HostTensor>(WeightLayout.Initialize(config, 1))
        {
            [WeightLayout.DecayBuffer] = new([24], decay),
        };
        using var model = LanguageModel.FromWeights(device, config, weights);
        Assert.Empty(model.Notices);
        Assert.Null(Assert.IsType<RetNetConfig>(model.Config).RetentionDecay);
    }

    [Fact]
    public void Buffers_that_do_not_fit_the_config_are_refused_clearly()
    {
        var config = ModelTestSupport.Micro();
        var weights = ModelTestSupport.Weights(config, 5);
        var angles = WeightLayout.Buffers(config)[WeightLayout.AngleBuffer].Data.ToArray();
        angles[5] *= 1.1f;
        var wrongAngle = new Dictionary<string, HostTensor>(weights) { [WeightLayout.AngleBuffer] = new([angles.Length], angles) };
        var error = Assert.Throws<ArgumentException>(() => LanguageModel.FromWeights(device, config, wrongAngle));
        Assert.Contains("retnet_rel_pos.angle[5]", error.Message);

        var wrongShapes = new Dictionary<string, HostTensor>(weights)
        {
            [WeightLayout.AngleBuffer] = new([3], [1f, 1f, 1f]),
            [WeightLayout.DecayBuffer] = new([5], new float[5]),
        };
        var mismatch = Assert.Throws<CheckpointMismatchException>(() => LanguageModel.FromWeights(device, config, wrongShapes));
        Assert.Equal(2, mismatch.WrongShape.Count);
        Assert.Contains("retnet_rel_pos.decay: expected [2], got [5]", mismatch.Message);

        var noDecay = new Dictionary<string, HostTensor>(weights) { [WeightLayout.DecayBuffer] = new([2], [0f, -0.1f]) };
        Assert.Contains("γ = 1", Assert.Throws<ArgumentException>(() => LanguageModel.FromWeights(device, config, noDecay)).Message);
    }
}
