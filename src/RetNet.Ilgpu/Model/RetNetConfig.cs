using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;
using RetNet.Ilgpu.IO;

namespace RetNet.Ilgpu.Model;

/// <summary>
/// The shape of a RetNet language model, with torchscale's RetNetConfig field names in JSON (docs/MATH.md §6–7).
/// The key head dimension is d / heads and the value head dimension value_dim / heads; decays follow torchscale's
/// schedule γ_h = 1 − 2^(−5−h) unless chosen otherwise. torchscale fields that cannot change what the model computes
/// (dropout, fsdp, …) are accepted and ignored; those that would change it and are not implemented (moe_freq,
/// multiway, no_output_layer, …) are refused by name (<see cref="FromJson"/>).
/// </summary>
/// <remarks>
/// Start from a preset and change what you need: <c>RetNetConfig.Preset("tiny") with { Layers = 4 }</c>. The presets
/// use a swish FFN and √d-scaled embeddings, as torchscale's registered architectures do; a bare
/// <c>new RetNetConfig { … }</c> takes the defaults of torchscale's RetNetConfig class instead (a GELU FFN, unscaled
/// embeddings, <see cref="ModelConfig.ActivationFn"/> and <see cref="ModelConfig.NoScaleEmbedding"/>), which train differently.
/// </remarks>
public sealed record RetNetConfig : ModelConfig
{
    /// <inheritdoc/>
    [JsonIgnore]
    public override string Architecture => "retnet";

    /// <inheritdoc/>
    [JsonIgnore]
    public override string Convention => "torchscale";

    /// <inheritdoc/>
    [JsonIgnore]
    public override string Summary => $"{Layers} layers, d={EmbedDim}, heads={RetentionHeads}, " +
                                      $"value dim={ValueEmbedDim}, ffn={FfnEmbedDim}, vocab={VocabSize}";

    /// <summary>d, the model width (<c>decoder_embed_dim</c>).</summary>
    [JsonPropertyName("decoder_embed_dim")]
    public int EmbedDim { get; init; }

    /// <summary>The total value width over all heads (<c>decoder_value_embed_dim</c>).</summary>
    [JsonPropertyName("decoder_value_embed_dim")]
    public int ValueEmbedDim { get; init; }

    /// <summary>H, the retention heads (<c>decoder_retention_heads</c>).</summary>
    [JsonPropertyName("decoder_retention_heads")]
    public int RetentionHeads { get; init; }

    /// <summary>The hidden width of the gated FFN (<c>decoder_ffn_embed_dim</c>).</summary>
    [JsonPropertyName("decoder_ffn_embed_dim")]
    public int FfnEmbedDim { get; init; }

    /// <summary>The number of blocks (<c>decoder_layers</c>).</summary>
    [JsonPropertyName("decoder_layers")]
    public int Layers { get; init; }

    /// <summary>When true the output projection is the embedding table (<c>share_decoder_input_output_embed</c>).</summary>
    [JsonPropertyName("share_decoder_input_output_embed")]
    public bool ShareInputOutputEmbed { get; init; }

    /// <summary>
    /// Pre-norm blocks (true, torchscale's default): x = α·x + f(RMSNorm(x)), then a final layer_norm. False gives
    /// post-norm blocks x = RMSNorm(α·x + f(x)) and no final norm (<c>decoder_normalize_before</c>).
    /// </summary>
    [JsonPropertyName("decoder_normalize_before")]
    public bool NormalizeBefore { get; init; } = true;

    /// <summary>
    /// DeepNet's residual scaling (<c>deepnorm</c>): every residual is multiplied by α = (2·layers)^(1/4) before the
    /// branch is added, and initialisation divides fc1, fc2, out_proj and v_proj by (8·layers)^(1/4).
    /// </summary>
    [JsonPropertyName("deepnorm")]
    public bool Deepnorm { get; init; }

    /// <summary>An RMSNorm (weight <c>layernorm_embedding.weight</c>) right after the scaled embedding
    /// (<c>layernorm_embedding</c>).</summary>
    [JsonPropertyName("layernorm_embedding")]
    public bool LayerNormEmbedding { get; init; }

    /// <summary>
    /// The per-head decay schedule when <see cref="RetentionDecay"/> is absent: "torchscale" (γ_h = 1 − 2^(−5−h), the
    /// default) or "paper" (γ = 1 − exp(linspace(log 1/32, log 1/512, H))). Not a torchscale field.
    /// </summary>
    [JsonPropertyName("retention_decay_schedule")]
    public string DecayScheduleName { get; init; } = "torchscale";

    /// <summary>Explicit per-head decays γ_h, each in (0, 1); overrides <see cref="DecayScheduleName"/>. Not a torchscale field.</summary>
    [JsonPropertyName("retention_decay")]
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public double[]? RetentionDecay { get; init; }

    /// <summary>The decay of every head, from <see cref="RetentionDecay"/> or <see cref="DecayScheduleName"/>.</summary>
    /// <exception cref="ArgumentException">The config is invalid (see <see cref="Validate"/>).</exception>
    public Retention.DecaySchedule Decay()
    {
        Validate();
        return RetentionDecay is { } gammas
            ? Retention.DecaySchedule.FromValues(gammas)
            : DecayScheduleName == "paper"
                ? Retention.DecaySchedule.Paper(RetentionHeads)
                : Retention.DecaySchedule.Torchscale(RetentionHeads);
    }

    /// <summary>Dk = d / H, the key (and query) head dimension.</summary>
    [JsonIgnore]
    public int KeyHeadDim => RetentionHeads > 0 ? EmbedDim / RetentionHeads : 0;

    /// <summary>Dv = value_dim / H, the value head dimension.</summary>
    [JsonIgnore]
    public int ValueHeadDim => RetentionHeads > 0 ? ValueEmbedDim / RetentionHeads : 0;

    /// <summary>The factor applied to the embeddings: √d, or 1 with <see cref="ModelConfig.NoScaleEmbedding"/>.</summary>
    [JsonIgnore]
    public float EmbedScale => NoScaleEmbedding ? 1f : (float)Math.Sqrt(EmbedDim);

    /// <summary>α, the factor of every residual: (2·layers)^(1/4) with <see cref="Deepnorm"/>, else 1.</summary>
    [JsonIgnore]
    public float ResidualScale => Deepnorm ? (float)Math.Pow(2.0 * Layers, 0.25) : 1f;

    /// <summary>The preset names <see cref="Preset"/> accepts: torchscale's registered sizes and small ones for tests
    /// and demos.</summary>
    public static IReadOnlyList<string> PresetNames { get; } =
        ["tiny", "small", "base", "medium", "xl", "3b", "7b", "13b", "65b"];

    /// <summary>
    /// A named configuration. torchscale's registered sizes, exactly (d / value dim / FFN / layers / heads): base
    /// 512/864/864/6/2, medium 1024/1728/1728/16/4, xl 2048/3456/3456/24/8, 3b 2560/4280/4280/32/10, 7b
    /// 4096/6912/6912/32/16, 13b 5120/8560/8560/40/20, 65b 8192/13824/13824/64/32 (key head dim 256 throughout, FFN
    /// equal to the value dim), with GPT-2's vocabulary of 50257, scaled embeddings and a swish FFN as torchscale's
    /// retnet_base_architecture sets them. Two small ones: "tiny" (d 64, value 128, 2 heads, 2 layers, FFN 128,
    /// vocab 256) for tests and "small" (d 128, value 256, 2 heads, 2 layers, FFN 256, vocab 256) for the decode
    /// benchmark and the demo on the CPU accelerator.
    /// </summary>
    /// <exception cref="ArgumentException">The name is not one of <see cref="PresetNames"/>.</exception>
    public static RetNetConfig Preset(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        return name.ToLowerInvariant() switch
        {
            "tiny" => Small(64, 128, 2, 2, 128),
            "small" => Small(128, 256, 2, 2, 256),
            "base" => Torchscale(512, 864, 6, 2),
            "medium" => Torchscale(1024, 1728, 16, 4),
            "xl" => Torchscale(2048, 3456, 24, 8),
            "3b" => Torchscale(2560, 4280, 32, 10),
            "7b" => Torchscale(4096, 6912, 32, 16),
            "13b" => Torchscale(5120, 8560, 40, 20),
            "65b" => Torchscale(8192, 13824, 64, 32),
            _ => throw new ArgumentException(
                $"Argument 'name' is '{name}'; expected one of {string.Join(", ", PresetNames)}.", nameof(name)),
        };
    }

    private static RetNetConfig Small(int d, int value, int heads, int layers, int ffn) => new()
    {
        EmbedDim = d, ValueEmbedDim = value, RetentionHeads = heads, Layers = layers, FfnEmbedDim = ffn,
        VocabSize = 256, ActivationFn = "swish", NoScaleEmbedding = false,
    };

    private static RetNetConfig Torchscale(int d, int value, int layers, int heads) => new()
    {
        EmbedDim = d, ValueEmbedDim = value, RetentionHeads = heads, Layers = layers, FfnEmbedDim = value,
        VocabSize = 50257, ActivationFn = "swish", NoScaleEmbedding = false,
    };

    /// <summary>Checks every field; the message of the exception lists all problems found.</summary>
    /// <exception cref="ArgumentException">A size is not positive, d or the value dim is not divisible by the heads,
    /// the key head dim is odd, eps is negative or not finite, the activation is unknown, or there are more than 47
    /// heads (γ rounds to 1).</exception>
    public override void Validate()
    {
        var problems = new List<string>();
        void Positive(string field, int value)
        {
            if (value <= 0)
                problems.Add($"{field} is {value}; expected > 0");
        }
        Positive("decoder_embed_dim", EmbedDim);
        Positive("decoder_value_embed_dim", ValueEmbedDim);
        Positive("decoder_retention_heads", RetentionHeads);
        Positive("decoder_ffn_embed_dim", FfnEmbedDim);
        Positive("decoder_layers", Layers);
        ValidateShared(problems);
        if (RetentionDecay is { } gammas)
        {
            if (gammas.Length != RetentionHeads)
                problems.Add($"retention_decay has {gammas.Length} values; expected one per head ({RetentionHeads})");
            foreach (var gamma in gammas.Where(g => !(double.IsFinite(g) && g > 0 && g < 1)))
                problems.Add($"retention_decay has {gamma.ToString("R", CultureInfo.InvariantCulture)}; expected 0 < γ < 1");
        }
        else if (DecayScheduleName is not ("torchscale" or "paper"))
            problems.Add($"retention_decay_schedule is '{DecayScheduleName}'; expected \"torchscale\" or \"paper\"");
        else if (DecayScheduleName == "torchscale" && RetentionHeads > 47)
            problems.Add($"decoder_retention_heads is {RetentionHeads}; expected ≤ 47 (γ = 1 − 2^(−5−h) rounds to 1 beyond)");
        if (RetentionHeads > 0 && EmbedDim > 0 && EmbedDim % RetentionHeads != 0)
            problems.Add($"decoder_embed_dim {EmbedDim} is not divisible by decoder_retention_heads {RetentionHeads}");
        else if (RetentionHeads > 0 && EmbedDim > 0 && KeyHeadDim % 2 != 0)
            problems.Add($"the key head dim decoder_embed_dim / decoder_retention_heads = {KeyHeadDim} is odd; " +
                         "the rotation needs it even");
        if (RetentionHeads > 0 && ValueEmbedDim > 0 && ValueEmbedDim % RetentionHeads != 0)
            problems.Add($"decoder_value_embed_dim {ValueEmbedDim} is not divisible by decoder_retention_heads {RetentionHeads}");
        if (problems.Count > 0)
            throw new ArgumentException($"Invalid RetNet config: {string.Join("; ", problems)}.", "config");
    }

    private static readonly JsonSerializerOptions JsonOptions = new() { WriteIndented = true };

    private static readonly string[] RequiredFields =
    [
        "decoder_embed_dim", "decoder_value_embed_dim", "decoder_retention_heads", "decoder_ffn_embed_dim",
        "decoder_layers", "vocab_size",
    ];

    /// <summary>
    /// torchscale fields that change what the model computes and are not implemented here, with what they would ask
    /// for. A value other than the default (0 or false; null counts as absent) is refused.
    /// </summary>
    private static readonly (string Field, string Feature)[] UnsupportedFields =
    [
        ("moe_freq", "mixture-of-experts FFN layers"),
        ("use_xmoe", "X-MoE routing"),
        ("multiway", "multiway (per-modality) projections and norms"),
        ("no_output_layer", "a decoder without output projection (features instead of logits)"),
        ("xpos_rel_pos", "xPos relative positions (torchscale's RetNetDecoder never applies them: RetNet rotates " +
                         "with its own theta shift and decays)"),
    ];

    /// <summary>The config as torchscale-style JSON.</summary>
    public override string ToJson() => JsonSerializer.Serialize(this, JsonOptions);

    /// <summary>
    /// Parses torchscale-style JSON: the six size fields are required, the others default to torchscale's values.
    /// Fields that would change the computation but are not implemented (moe_freq ≠ 0, use_xmoe, multiway,
    /// no_output_layer, xpos_rel_pos) are refused, every one named; fields that cannot change it (dropout, fsdp,
    /// chunkwise_recurrent, …) and unknown fields are ignored. The result is validated.
    /// </summary>
    /// <exception cref="ArgumentException">The JSON is malformed, a size field is missing, a field has the wrong type,
    /// an unsupported field is set, or <see cref="Validate"/> fails.</exception>
    public static new RetNetConfig FromJson(string json)
    {
        ArgumentNullException.ThrowIfNull(json);
        RetNetConfig? config;
        try
        {
            var node = JsonNode.Parse(json, documentOptions: DocumentOptions) as JsonObject
                ?? throw new ArgumentException("The RetNet config JSON is not an object.", nameof(json));
            if (node["model_type"] is JsonValue type && type.GetValueKind() == JsonValueKind.String &&
                type.GetValue<string>() != "retnet")
                throw new ArgumentException(
                    $"The config is a {type.GetValue<string>()}'s (model_type \"{type.GetValue<string>()}\"), not a " +
                    "RetNet's; load it with the model of that type.", nameof(json));
            var missing = RequiredFields.Where(f => !node.ContainsKey(f)).ToList();
            if (missing.Count > 0)
                throw new ArgumentException(
                    $"The RetNet config JSON lacks {string.Join(", ", missing)}.", nameof(json));
            var unsupported = UnsupportedFields
                .Where(f => node[f.Field] is JsonValue value && !IsDefault(value))
                .Select(f => $"{f.Field} is {node[f.Field]!.ToJsonString()}: {f.Feature} is not implemented " +
                             "(expected 0, false or absent)")
                .ToList();
            if (unsupported.Count > 0)
                throw new ArgumentException(
                    $"The RetNet config sets fields that change the computation: {string.Join("; ", unsupported)}.",
                    nameof(json));
            config = node.Deserialize<RetNetConfig>(JsonOptions);
        }
        catch (JsonException e)
        {
            throw new ArgumentException($"The RetNet config JSON is malformed: {e.Message}", nameof(json), e);
        }
        if (config is null)
            throw new ArgumentException("The RetNet config JSON is null.", nameof(json));
        config.Validate();
        return config;
    }

    private static bool IsDefault(JsonValue value) =>
        value.GetValueKind() switch
        {
            JsonValueKind.False or JsonValueKind.Null => true,
            JsonValueKind.Number => value.GetValue<double>() == 0,
            _ => false,
        };

    /// <summary>Reads a config.json file (see <see cref="FromJson"/>).</summary>
    /// <exception cref="ArgumentException">The content is not a valid config; the message names the file.</exception>
    public static new RetNetConfig Load(string path) => LoadFile(path, FromJson);

    /// <inheritdoc/>
    public override IReadOnlyList<(string Name, int[] Shape)> ExpectedWeights() => WeightLayout.Expected(this);

    /// <inheritdoc/>
    public override IReadOnlyDictionary<string, HostTensor> InitialWeights(int seed) => WeightLayout.Initialize(this, seed);

    internal override DecoderSpec Spec()
    {
        Validate();
        return new DecoderSpec(VocabSize, EmbedDim, Layers, FfnEmbedDim, LayerNormEps, ActivationFn == "gelu",
            EmbedScale, ResidualScale, NormalizeBefore, LayerNormEmbedding, ShareInputOutputEmbed,
            ParameterNames.Torchscale,
            new RetentionSpec(EmbedDim,
                RetentionOptions.Torchscale(EmbedDim, ValueEmbedDim, RetentionHeads, LayerNormEps, Decay())));
    }

    internal override ResolvedWeights Resolve(IReadOnlyDictionary<string, HostTensor> weights) =>
        WeightLayout.Resolve(this, weights);

    /// <summary>What torchscale's state_dict holds besides the parameters, so that its strict load accepts a saved
    /// folder: a tied output projection under its own name too (PyTorch lists it under both), and the two
    /// buffers.</summary>
    internal override (IReadOnlyDictionary<string, HostTensor> Extra, IReadOnlyDictionary<string, string> Metadata)
        SaveExtras(IReadOnlyDictionary<string, HostTensor> parameters)
    {
        var extra = new Dictionary<string, HostTensor>();
        if (ShareInputOutputEmbed)
            extra.Add("output_projection.weight", parameters["embed_tokens.weight"]);
        foreach (var (name, buffer) in WeightLayout.Buffers(this))
            extra.Add(name, buffer);
        return (extra, new Dictionary<string, string> { ["format"] = "pt" });
    }
}
