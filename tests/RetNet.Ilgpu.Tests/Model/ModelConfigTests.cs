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

    private const string Valid =
        """{ "decoder_embed_dim": 64, "decoder_value_embed_dim": 128, "decoder_retention_heads": 2, "decoder_ffn_embed_dim": 128, "decoder_layers": 2, "vocab_size": 256""";

    // The law of the robustness properties (properties/RetNet.Ilgpu.Properties/Robustness): a config reader returns a
    // valid config or throws an ArgumentException with a clear message, ModelConfig.FromJson (which the CLI calls on
    // every model folder to tell the architecture) included. A field named twice broke it: JsonObject threw "An item
    // with the same key has already been added" from the model_type check, and from FromJson with that message.

    [Theory]
    [InlineData(Valid + """, "vocab_size": 512 }""", "vocab_size")]
    [InlineData(Valid + """, "activation_fn": "gelu", "activation_fn": "swish" }""", "activation_fn")]
    public void Returns_a_valid_config_or_an_argument_error_naming_a_field_given_twice(string json, string field)
    {
        var error = Assert.Throws<ArgumentException>(() => RetNetConfig.FromJson(json));
        Assert.Contains("malformed", error.Message);
        Assert.Contains(field, error.Message);
        Assert.Throws<ArgumentException>(() => ModelConfig.FromJson(json));
        Assert.Throws<ArgumentException>(() => TransformerConfig.FromJson(json));
    }

    [Theory]
    [InlineData(""", "moe_freq": 1e400 }""", "moe_freq")]
    [InlineData(""", "decoder_layers": 1e400 }""", "malformed")]
    [InlineData(""", "layernorm_eps": 1e400 }""", "layernorm_eps is")]
    [InlineData(""", "retention_decay": [1e400, 0.5] }""", "retention_decay has")]
    public void Returns_a_valid_config_or_an_argument_error_for_a_number_beyond_double(string tail, string expected)
    {
        var json = Valid.Replace("\"decoder_layers\": 2, ", tail.Contains("decoder_layers") ? "" : "\"decoder_layers\": 2, ",
            StringComparison.Ordinal) + tail;
        var error = Assert.Throws<ArgumentException>(() => RetNetConfig.FromJson(json));
        Assert.Contains(expected, error.Message);
    }
}
