using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;
using RetNet.Ilgpu.IO;

namespace RetNet.Ilgpu.Model;

/// <summary>
/// The shape of a RetNet language model, with torchscale's RetNetConfig field names in JSON (RETNET-SPEC.md §3–4).
/// The key head dimension is d / heads and the value head dimension value_dim / heads; decays follow torchscale's
/// schedule γ_h = 1 − 2^(−5−h). Fields torchscale has but this inference model does not use (dropout, moe_*, …) are
/// ignored when reading.
/// </summary>
public sealed record RetNetConfig
{
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

    /// <summary>V, the vocabulary size (<c>vocab_size</c>).</summary>
    [JsonPropertyName("vocab_size")]
    public int VocabSize { get; init; }

    /// <summary>eps of every RMSNorm, the per-head norm included (<c>layernorm_eps</c>, torchscale's default 1e-6).</summary>
    [JsonPropertyName("layernorm_eps")]
    public double LayerNormEps { get; init; } = 1e-6;

    /// <summary>The FFN activation, "swish" (SiLU) or "gelu" (exact erf GELU) (<c>activation_fn</c>, default "gelu").</summary>
    [JsonPropertyName("activation_fn")]
    public string ActivationFn { get; init; } = "gelu";

    /// <summary>When true the embeddings are not multiplied by √d (<c>no_scale_embedding</c>, torchscale's default true).</summary>
    [JsonPropertyName("no_scale_embedding")]
    public bool NoScaleEmbedding { get; init; } = true;

    /// <summary>When true the output projection is the embedding table (<c>share_decoder_input_output_embed</c>).</summary>
    [JsonPropertyName("share_decoder_input_output_embed")]
    public bool ShareInputOutputEmbed { get; init; }

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

    /// <summary>The factor applied to the embeddings: √d, or 1 with <see cref="NoScaleEmbedding"/>.</summary>
    [JsonIgnore]
    public float EmbedScale => NoScaleEmbedding ? 1f : (float)Math.Sqrt(EmbedDim);

    /// <summary>The preset names <see cref="Preset"/> accepts: the paper's sizes and small ones for tests and demos.</summary>
    public static IReadOnlyList<string> PresetNames { get; } =
        ["tiny", "small", "base", "medium", "xl", "3b", "7b", "13b"];

    /// <summary>
    /// A named configuration. The paper's sizes (base … 13b: d / value dim / heads / layers of RETNET-SPEC.md §3, FFN
    /// 2d, key head dim 256, GPT-2's vocabulary of 50257, embeddings scaled, swish FFN as in the paper) and two small
    /// ones: "tiny" (d 64, value 128, 2 heads, 2 layers, FFN 128, vocab 256) for tests and "small" (d 128, value 256,
    /// 2 heads, 2 layers, FFN 256, vocab 256) for the decode benchmark and the demo on the CPU accelerator.
    /// </summary>
    /// <exception cref="ArgumentException">The name is not one of <see cref="PresetNames"/>.</exception>
    public static RetNetConfig Preset(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        return name.ToLowerInvariant() switch
        {
            "tiny" => Small(64, 128, 2, 2, 128),
            "small" => Small(128, 256, 2, 2, 256),
            "base" => Paper(512, 864, 2, 6),
            "medium" => Paper(1024, 1728, 4, 16),
            "xl" => Paper(2048, 3456, 8, 24),
            "3b" => Paper(2560, 4280, 10, 32),
            "7b" => Paper(4096, 6912, 16, 32),
            "13b" => Paper(5120, 8560, 20, 40),
            _ => throw new ArgumentException(
                $"Argument 'name' is '{name}'; expected one of {string.Join(", ", PresetNames)}.", nameof(name)),
        };
    }

    private static RetNetConfig Small(int d, int value, int heads, int layers, int ffn) => new()
    {
        EmbedDim = d, ValueEmbedDim = value, RetentionHeads = heads, Layers = layers, FfnEmbedDim = ffn,
        VocabSize = 256, ActivationFn = "swish", NoScaleEmbedding = false,
    };

    private static RetNetConfig Paper(int d, int value, int heads, int layers) => new()
    {
        EmbedDim = d, ValueEmbedDim = value, RetentionHeads = heads, Layers = layers, FfnEmbedDim = 2 * d,
        VocabSize = 50257, ActivationFn = "swish", NoScaleEmbedding = false,
    };

    /// <summary>Checks every field; the message of the exception lists all problems found.</summary>
    /// <exception cref="ArgumentException">A size is not positive, d or the value dim is not divisible by the heads,
    /// the key head dim is odd, eps is negative or not finite, the activation is unknown, or there are more than 47
    /// heads (γ rounds to 1).</exception>
    public void Validate()
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
        Positive("vocab_size", VocabSize);
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
        if (!double.IsFinite(LayerNormEps) || LayerNormEps < 0)
            problems.Add($"layernorm_eps is {LayerNormEps.ToString("R", CultureInfo.InvariantCulture)}; expected finite and ≥ 0");
        if (ActivationFn is not ("swish" or "gelu"))
            problems.Add($"activation_fn is '{ActivationFn}'; expected \"swish\" or \"gelu\"");
        if (problems.Count > 0)
            throw new ArgumentException($"Invalid RetNet config: {string.Join("; ", problems)}.", "config");
    }

    private static readonly JsonSerializerOptions JsonOptions = new() { WriteIndented = true };

    private static readonly string[] RequiredFields =
    [
        "decoder_embed_dim", "decoder_value_embed_dim", "decoder_retention_heads", "decoder_ffn_embed_dim",
        "decoder_layers", "vocab_size",
    ];

    /// <summary>The config as torchscale-style JSON.</summary>
    public string ToJson() => JsonSerializer.Serialize(this, JsonOptions);

    /// <summary>
    /// Parses torchscale-style JSON: the six size fields are required, the others default to torchscale's values,
    /// unknown fields are ignored. The result is validated.
    /// </summary>
    /// <exception cref="ArgumentException">The JSON is malformed, a size field is missing, a field has the wrong type,
    /// or <see cref="Validate"/> fails.</exception>
    public static RetNetConfig FromJson(string json)
    {
        ArgumentNullException.ThrowIfNull(json);
        RetNetConfig? config;
        try
        {
            var node = JsonNode.Parse(json) as JsonObject
                ?? throw new ArgumentException("The RetNet config JSON is not an object.", nameof(json));
            var missing = RequiredFields.Where(f => !node.ContainsKey(f)).ToList();
            if (missing.Count > 0)
                throw new ArgumentException(
                    $"The RetNet config JSON lacks {string.Join(", ", missing)}.", nameof(json));
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

    /// <summary>Reads a config.json file (see <see cref="FromJson"/>).</summary>
    /// <exception cref="ArgumentException">The content is not a valid config; the message names the file.</exception>
    public static RetNetConfig Load(string path)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(path);
        try
        {
            return FromJson(File.ReadAllText(path));
        }
        catch (ArgumentException e)
        {
            throw new ArgumentException($"{path}: {e.Message}", nameof(path), e);
        }
    }

    /// <summary>Writes the config as JSON, atomically.</summary>
    public void Save(string path) => AtomicFile.WriteAllText(path, ToJson());
}
