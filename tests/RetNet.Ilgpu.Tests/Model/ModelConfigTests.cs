using RetNet.Ilgpu.Model;

namespace RetNet.Ilgpu.Tests.Model;

public sealed class ModelConfigTests
{
    [Fact]
    public void Json_uses_torchscale_names_and_ignores_unknown_fields()
    {
        const string json = """
            { "decoder_embed_dim": 64, "decoder_value_embed_dim": 128, "decoder_retention_heads": 2,
              "decoder_ffn_embed_dim": 128, "decoder_layers": 2, "vocab_size": 256, "activation_fn": "swish",
              "dropout": 0.1, "moe_freq": 0, "no_scale_embedding": false, "share_decoder_input_output_embed": true }
            """;
        var config = RetNetConfig.FromJson(json);
        Assert.Equal(64, config.EmbedDim);
        Assert.Equal(32, config.KeyHeadDim);
        Assert.Equal(64, config.ValueHeadDim);
        Assert.True(config.ShareInputOutputEmbed);
        Assert.Equal(8f, config.EmbedScale);
        Assert.Equal(1e-6, config.LayerNormEps);
        Assert.Contains("\"decoder_value_embed_dim\": 128", config.ToJson());
        Assert.Equal(config, RetNetConfig.FromJson(config.ToJson()));
    }

    [Fact]
    public void Presets_are_valid_with_key_head_dim_256_for_torchscales_sizes()
    {
        foreach (var name in RetNetConfig.PresetNames)
            RetNetConfig.Preset(name).Validate();
        foreach (var name in new[] { "base", "medium", "xl", "3b", "7b", "13b", "65b" })
            Assert.Equal(256, RetNetConfig.Preset(name).KeyHeadDim);
        Assert.Equal(6912, RetNetConfig.Preset("7b").ValueEmbedDim);
        Assert.Throws<ArgumentException>(() => RetNetConfig.Preset("huge"));
    }

    [Theory]
    [InlineData("""{ "decoder_embed_dim": 64, "decoder_value_embed_dim": 128, "decoder_retention_heads": 3, "decoder_ffn_embed_dim": 128, "decoder_layers": 2, "vocab_size": 256 }""", "not divisible")]
    [InlineData("""{ "decoder_embed_dim": 6, "decoder_value_embed_dim": 8, "decoder_retention_heads": 2, "decoder_ffn_embed_dim": 8, "decoder_layers": 2, "vocab_size": 256 }""", "odd")]
    [InlineData("""{ "decoder_embed_dim": 64, "decoder_value_embed_dim": 127, "decoder_retention_heads": 2, "decoder_ffn_embed_dim": 128, "decoder_layers": 0, "vocab_size": 256 }""", "decoder_layers is 0")]
    [InlineData("""{ "decoder_embed_dim": 64, "decoder_value_embed_dim": 128, "decoder_retention_heads": 2, "decoder_ffn_embed_dim": 128, "decoder_layers": 2, "vocab_size": 256, "activation_fn": "relu" }""", "activation_fn")]
    [InlineData("""{ "decoder_embed_dim": 64, "decoder_value_embed_dim": 128, "decoder_retention_heads": 2, "decoder_ffn_embed_dim": 128, "decoder_layers": 2, "vocab_size": 256, "layernorm_eps": -1 }""", "layernorm_eps")]
    [InlineData("""{ "decoder_embed_dim": 64, "decoder_retention_heads": 2 }""", "lacks decoder_value_embed_dim")]
    [InlineData("""{ "decoder_embed_dim": "x", "decoder_value_embed_dim": 128, "decoder_retention_heads": 2, "decoder_ffn_embed_dim": 128, "decoder_layers": 2, "vocab_size": 256 }""", "malformed")]
    [InlineData("""{ "decoder_embed_dim": 64,""", "malformed")]
    [InlineData("""[1, 2]""", "not an object")]
    public void Bad_configs_are_rejected_with_the_field_named(string json, string expected)
    {
        var error = Assert.Throws<ArgumentException>(() => RetNetConfig.FromJson(json));
        Assert.Contains(expected, error.Message);
    }
}
