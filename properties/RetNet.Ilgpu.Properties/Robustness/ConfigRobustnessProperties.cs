using System.Text.Json.Nodes;
using FsCheck;
using FsCheck.Fluent;
using RetNet.Ilgpu.Model;

namespace RetNet.Ilgpu.Properties.Robustness;

/// <summary>One config.json text and what was done to a valid one to make it.</summary>
public sealed record ConfigText(string Description, string Json)
{
    /// <inheritdoc/>
    public override string ToString() => $"{Description}: {(Json.Length > 300 ? Json[..300] + "…" : Json)}";
}

/// <summary>
/// <see cref="RetNetConfig.FromJson"/> and <see cref="TransformerConfig.FromJson"/> on valid configs with one field
/// set to a wrong type, a negative, zero, huge or non-finite value, removed, or joined by an unknown field, and on
/// texts that are not JSON objects at all: each returns a config that validates and survives a JSON round trip, or
/// throws an <see cref="ArgumentException"/>; <see cref="TransformerConfig.IsTransformerJson"/> never throws.
/// </summary>
public sealed class ConfigRobustnessProperties
{
    private static readonly string[] Values =
    [
        .. SafetensorsMutations.BadNumbers, "0", "1", "2", "3", "64", "-64", "0.5", "1e-6", "-1e-6", "1e308", "-1e308",
        "\"swish\"", "\"gelu\"", "\"paper\"", "\"torchscale\"", "\"retnet\"", "\"transformer\"", "\"\"", "\"NaN\"",
        "\"-Infinity\"", "\"64\"", "false", "[0.5]", "[0.5,0.9]", "[0.9,0.99]", "[0.5,2]", "[null,0.5]", "[\"0.9\",0.5]",
        "[1e400,0.5]", "[0,1]", "[-0.5,0.5]", "{\"a\":1}", "[[0.5],[0.5]]", $"\"{new string('x', 5000)}\"",
    ];

    private static readonly string[] ExtraFields =
    [
        "retention_decay", "retention_decay_schedule", "model_type", "moe_freq", "use_xmoe", "multiway",
        "no_output_layer", "xpos_rel_pos", "dropout", "chunkwise_recurrent", "unknown_field", "", "__proto__",
        "decoder_embed_dim", "embed_dim",
    ];

    private static readonly string[] NotObjects =
    [
        "", " ", "null", "[]", "1", "\"config\"", "true", "{", "}", "{\"vocab_size\":}", "{'vocab_size':1}", "[{}]",
        "{\"a\":1,}", "\uFEFF{}", "{\"a\":\"\\uZZZZ\"}",
    ];

    private static Arbitrary<ConfigText> Texts(Func<Random, JsonObject> valid) =>
        Fuzz.Seeds.Generator.Select(seed =>
        {
            var random = new Random(seed);
            var config = valid(random);
            var text = config.ToJsonString();
            string Pick(string[] values) => values[random.Next(values.Length)];
            switch (random.Next(12))
            {
                case 0:
                    return new ConfigText("unchanged", text);
                case 1:
                {
                    var field = config.ElementAt(random.Next(config.Count)).Key;
                    config.Remove(field);
                    return new ConfigText($"without {field}", config.ToJsonString());
                }
                case 2:
                {
                    var field = Pick(ExtraFields);
                    config[field] = JsonNode.Parse(Pick(Values));
                    return new ConfigText($"{field} added", config.ToJsonString());
                }
                case 3:
                    return new ConfigText("not a JSON object", Pick(NotObjects));
                case 4:
                {
                    var cut = random.Next(text.Length);
                    return new ConfigText($"truncated to {cut} chars", text[..cut]);
                }
                case 5:
                {
                    var depth = random.Next(60, 3000);
                    return new ConfigText($"a field nested {depth} deep",
                        text[..^1] + ",\"deep\":" + new string('[', depth) + new string(']', depth) + "}");
                }
                case 6:
                {
                    var field = config.ElementAt(random.Next(config.Count)).Key;
                    return new ConfigText($"{field} twice", text[..^1] + $",\"{field}\":{Pick(Values)}}}");
                }
                default:
                {
                    var field = config.ElementAt(random.Next(config.Count)).Key;
                    var value = Pick(Values);
                    config[field] = JsonNode.Parse(value);
                    return new ConfigText($"{field} = {value}", config.ToJsonString());
                }
            }
        }).ToArbitrary();

    /// <summary>A valid RetNet config of random small sizes, sometimes with explicit decays.</summary>
    private static JsonObject ValidRetNet(Random random)
    {
        var heads = random.Next(1, 5);
        var config = JsonNode.Parse(new RetNetConfig
        {
            EmbedDim = 2 * heads * random.Next(1, 5), ValueEmbedDim = heads * random.Next(1, 5), RetentionHeads = heads,
            FfnEmbedDim = random.Next(1, 40), Layers = random.Next(1, 4), VocabSize = random.Next(1, 300),
            ActivationFn = random.Next(2) == 0 ? "swish" : "gelu",
            RetentionDecay = random.Next(3) == 0 ? Enumerable.Range(0, heads).Select(_ => 0.5 + random.NextDouble() / 3).ToArray() : null,
        }.ToJson())!.AsObject();
        if (random.Next(2) == 0)
            config["model_type"] = "retnet";
        return config;
    }

    /// <summary>A valid Transformer config of random small sizes.</summary>
    private static JsonObject ValidTransformer(Random random)
    {
        var heads = random.Next(1, 5);
        return JsonNode.Parse(new TransformerConfig
        {
            EmbedDim = 2 * heads * random.Next(1, 5), Heads = heads, FfnEmbedDim = random.Next(1, 40),
            Layers = random.Next(1, 4), VocabSize = random.Next(1, 300),
        }.ToJson())!.AsObject();
    }

    [Fact]
    public void Config_readers_return_a_valid_config_or_an_argument_error_for_any_mutation_of_a_RetNet_config() =>
        Fuzz.Check(Prop.ForAll(Texts(ValidRetNet), text => Holds(text, mustAcceptRetNet: text.Description == "unchanged")),
            ciCases: 150);

    [Fact]
    public void Config_readers_return_a_valid_config_or_an_argument_error_for_any_mutation_of_a_Transformer_config() =>
        Fuzz.Check(Prop.ForAll(Texts(ValidTransformer), text => Holds(text, mustAcceptTransformer: text.Description == "unchanged")),
            ciCases: 150);

    private static bool Holds(ConfigText text, bool mustAcceptRetNet = false, bool mustAcceptTransformer = false)
    {
        static bool IsArgumentError(Exception e) => e is ArgumentException;
        var retnet = Fuzz.ReturnsValidOrThrowsTyped(() => RetNetConfig.FromJson(text.Json), config =>
        {
            config.Validate();
            Assert.Equal(config.ToJson(), RetNetConfig.FromJson(config.ToJson()).ToJson());
        }, IsArgumentError);
        var transformer = Fuzz.ReturnsValidOrThrowsTyped(() => TransformerConfig.FromJson(text.Json), config =>
        {
            config.Validate();
            Assert.Equal(config.ToJson(), TransformerConfig.FromJson(config.ToJson()).ToJson());
        }, IsArgumentError);
        var any = Fuzz.ReturnsValidOrThrowsTyped(() => ModelConfig.FromJson(text.Json), config => config.Validate(),
            IsArgumentError);
        Assert.False(retnet && transformer, "both readers accepted the same config");
        Assert.Equal(retnet || transformer, any);
        return (retnet || !mustAcceptRetNet) && (transformer || !mustAcceptTransformer);
    }
}
