using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;
using RetNet.Ilgpu.IO;
using RetNet.Ilgpu.Model;

namespace RetNet.Ilgpu.Transformer;

/// <summary>
/// The shape of the baseline decoder-only Transformer ("Transformer++": pre-norm RMSNorm blocks, causal multi-head
/// softmax attention with rotary positions, the same gated FFN as RetNet, no biases), in config.json with
/// <c>"model_type": "transformer"</c> (docs/TRANSFORMER.md). Built to be compared with a RetNet of (nearly) the same
/// parameter count: <see cref="Matching"/>.
/// </summary>
public sealed record TransformerConfig
{
    /// <summary>The value of <c>model_type</c> that marks a Transformer config.json.</summary>
    public const string ModelType = "transformer";

    /// <summary>Always <see cref="ModelType"/>; written so that a folder says which model it holds.</summary>
    [JsonPropertyName("model_type")]
    public string Type { get; init; } = ModelType;

    /// <summary>d, the model width.</summary>
    [JsonPropertyName("embed_dim")]
    public int EmbedDim { get; init; }

    /// <summary>Attention heads; the head dimension is d / heads (even, for the rotation).</summary>
    [JsonPropertyName("attention_heads")]
    public int Heads { get; init; }

    /// <summary>The hidden width of the gated FFN.</summary>
    [JsonPropertyName("ffn_embed_dim")]
    public int FfnEmbedDim { get; init; }

    /// <summary>The number of blocks.</summary>
    [JsonPropertyName("layers")]
    public int Layers { get; init; }

    /// <summary>V, the vocabulary size.</summary>
    [JsonPropertyName("vocab_size")]
    public int VocabSize { get; init; }

    /// <summary>eps of every RMSNorm.</summary>
    [JsonPropertyName("layernorm_eps")]
    public double LayerNormEps { get; init; } = 1e-6;

    /// <summary>The FFN activation, "swish" or "gelu".</summary>
    [JsonPropertyName("activation_fn")]
    public string ActivationFn { get; init; } = "swish";

    /// <summary>Embeddings multiplied by √d (as the RetNet presets do) unless true.</summary>
    [JsonPropertyName("no_scale_embedding")]
    public bool NoScaleEmbedding { get; init; }

    /// <summary>When true the output projection is the embedding table.</summary>
    [JsonPropertyName("share_input_output_embed")]
    public bool ShareInputOutputEmbed { get; init; }

    /// <summary>The head dimension d / heads.</summary>
    [JsonIgnore]
    public int HeadDim => Heads > 0 ? EmbedDim / Heads : 0;

    /// <summary>The factor applied to the embeddings: √d, or 1 with <see cref="NoScaleEmbedding"/>.</summary>
    [JsonIgnore]
    public float EmbedScale => NoScaleEmbedding ? 1f : (float)Math.Sqrt(EmbedDim);

    /// <summary>The parameters of a model of this shape.</summary>
    [JsonIgnore]
    public long ParameterCount =>
        (long)VocabSize * EmbedDim * (ShareInputOutputEmbed ? 1 : 2) + EmbedDim +
        (long)Layers * (4L * EmbedDim * EmbedDim + 3L * EmbedDim * FfnEmbedDim + 2L * EmbedDim);

    /// <summary>
    /// The Transformer to compare with <paramref name="retnet"/>: the same width, heads, layers, vocabulary, eps,
    /// activation and embedding treatment, and the FFN widened so the parameter counts match as closely as a whole
    /// FFN width allows. RetNet's retention holds 2d² + 3d·d_v weights per layer (q, k: d×d; v, g, out: d×d_v),
    /// attention 4d² (q, k, v, out), so the FFN grows by (3d·d_v − 2d²) / 3d = d_v − 2d/3.
    /// </summary>
    /// <exception cref="ArgumentException"><paramref name="retnet"/> is invalid, or its heads do not split d evenly
    /// into an even head dimension.</exception>
    public static TransformerConfig Matching(RetNetConfig retnet)
    {
        ArgumentNullException.ThrowIfNull(retnet);
        retnet.Validate();
        var d = retnet.EmbedDim;
        var extra = (3.0 * d * retnet.ValueEmbedDim - 2.0 * d * d) / (3.0 * d);
        var config = new TransformerConfig
        {
            EmbedDim = d,
            Heads = retnet.RetentionHeads,
            FfnEmbedDim = Math.Max(1, (int)Math.Round(retnet.FfnEmbedDim + extra)),
            Layers = retnet.Layers,
            VocabSize = retnet.VocabSize,
            LayerNormEps = retnet.LayerNormEps,
            ActivationFn = retnet.ActivationFn,
            NoScaleEmbedding = retnet.NoScaleEmbedding,
            ShareInputOutputEmbed = retnet.ShareInputOutputEmbed,
        };
        config.Validate();
        return config;
    }

    /// <summary><see cref="Matching"/> of the RetNet preset of that name.</summary>
    /// <exception cref="ArgumentException">The name is not a RetNet preset.</exception>
    public static TransformerConfig Preset(string name) => Matching(RetNetConfig.Preset(name));

    /// <summary>Checks every field; the message lists every problem found.</summary>
    /// <exception cref="ArgumentException">A size is not positive, the heads do not divide d into an even head
    /// dimension, eps is negative or not finite, the activation or model type is unknown.</exception>
    public void Validate()
    {
        var problems = new List<string>();
        void Positive(string field, int value)
        {
            if (value <= 0)
                problems.Add($"{field} is {value}; expected > 0");
        }
        if (Type != ModelType)
            problems.Add($"model_type is '{Type}'; expected \"{ModelType}\"");
        Positive("embed_dim", EmbedDim);
        Positive("attention_heads", Heads);
        Positive("ffn_embed_dim", FfnEmbedDim);
        Positive("layers", Layers);
        Positive("vocab_size", VocabSize);
        if (Heads > 0 && EmbedDim > 0 && EmbedDim % Heads != 0)
            problems.Add($"embed_dim {EmbedDim} is not divisible by attention_heads {Heads}");
        else if (Heads > 0 && EmbedDim > 0 && HeadDim % 2 != 0)
            problems.Add($"the head dim embed_dim / attention_heads = {HeadDim} is odd; the rotation needs it even");
        if (!double.IsFinite(LayerNormEps) || LayerNormEps < 0)
            problems.Add($"layernorm_eps is {LayerNormEps.ToString("R", CultureInfo.InvariantCulture)}; expected finite and ≥ 0");
        if (ActivationFn is not ("swish" or "gelu"))
            problems.Add($"activation_fn is '{ActivationFn}'; expected \"swish\" or \"gelu\"");
        if (problems.Count > 0)
            throw new ArgumentException($"Invalid Transformer config: {string.Join("; ", problems)}.", "config");
    }

    private static readonly JsonSerializerOptions JsonOptions = new() { WriteIndented = true };

    private static readonly string[] RequiredFields =
        ["model_type", "embed_dim", "attention_heads", "ffn_embed_dim", "layers", "vocab_size"];

    /// <summary>The config as JSON.</summary>
    public string ToJson() => JsonSerializer.Serialize(this, JsonOptions);

    /// <summary>True when <paramref name="json"/> is an object whose <c>model_type</c> is "transformer" (a folder
    /// written by <see cref="TransformerModel.Save"/>); RetNet configs have no model_type.</summary>
    public static bool IsTransformerJson(string json)
    {
        try
        {
            return JsonNode.Parse(json, documentOptions: RetNetConfig.DocumentOptions) is JsonObject node && node["model_type"] is JsonValue value &&
                   value.GetValueKind() == JsonValueKind.String && value.GetValue<string>() == ModelType;
        }
        catch (JsonException)
        {
            return false;
        }
    }

    /// <summary>Parses a config: the six fields of <see cref="RequiredFields"/> are required, unknown fields are
    /// refused (a Transformer config is this library's own format), and the result is validated.</summary>
    /// <exception cref="ArgumentException">The JSON is malformed, a field is missing, unknown or of the wrong type, or
    /// <see cref="Validate"/> fails.</exception>
    public static TransformerConfig FromJson(string json)
    {
        ArgumentNullException.ThrowIfNull(json);
        TransformerConfig? config;
        try
        {
            var node = JsonNode.Parse(json, documentOptions: RetNetConfig.DocumentOptions) as JsonObject
                ?? throw new ArgumentException("The Transformer config JSON is not an object.", nameof(json));
            var missing = RequiredFields.Where(f => !node.ContainsKey(f)).ToList();
            if (missing.Count > 0)
                throw new ArgumentException($"The Transformer config JSON lacks {string.Join(", ", missing)}.",
                    nameof(json));
            var known = typeof(TransformerConfig).GetProperties()
                .Select(p => p.GetCustomAttributes(typeof(JsonPropertyNameAttribute), false)
                    .OfType<JsonPropertyNameAttribute>().FirstOrDefault()?.Name)
                .Where(n => n is not null).ToHashSet();
            var unknown = node.Select(p => p.Key).Where(k => !known.Contains(k)).ToList();
            if (unknown.Count > 0)
                throw new ArgumentException(
                    $"The Transformer config JSON has unknown fields {string.Join(", ", unknown)}; expected only " +
                    $"{string.Join(", ", known)}.", nameof(json));
            config = node.Deserialize<TransformerConfig>(JsonOptions);
        }
        catch (JsonException e)
        {
            throw new ArgumentException($"The Transformer config JSON is malformed: {e.Message}", nameof(json), e);
        }
        catch (InvalidOperationException e)
        {
            throw new ArgumentException($"The Transformer config JSON has a field of the wrong type: {e.Message}",
                nameof(json), e);
        }
        if (config is null)
            throw new ArgumentException("The Transformer config JSON is null.", nameof(json));
        config.Validate();
        return config;
    }

    /// <summary>Reads a config.json file (see <see cref="FromJson"/>).</summary>
    /// <exception cref="ArgumentException">The content is not a valid config; the message names the file.</exception>
    public static TransformerConfig Load(string path)
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
