using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;
using RetNet.Ilgpu.IO;
using RetNet.Ilgpu.Tensors;

namespace RetNet.Ilgpu.Model;

/// <summary>
/// The shape of the baseline decoder-only Transformer ("Transformer++": pre-norm RMSNorm blocks, causal multi-head
/// softmax attention with rotary positions, the same gated FFN as RetNet, no biases), in config.json with
/// <c>"model_type": "transformer"</c> (docs/TRANSFORMER.md). Built to be compared with a RetNet of (nearly) the same
/// parameter count: <see cref="Matching"/>.
/// </summary>
public sealed record TransformerConfig : ModelConfig
{
    /// <inheritdoc/>
    [JsonIgnore]
    public override string Architecture => ModelType;

    /// <inheritdoc/>
    [JsonIgnore]
    public override string Convention => "retnet-ilgpu";

    /// <inheritdoc/>
    [JsonIgnore]
    public override string Summary =>
        $"{Layers} layers, d={EmbedDim}, heads={Heads}, ffn={FfnEmbedDim}, vocab={VocabSize}";

    /// <summary>The value of <c>model_type</c> that marks a Transformer config.json.</summary>
    public const string ModelType = "transformer";

    /// <summary>A config with the Transformer's defaults: a swish FFN and √d-scaled embeddings, as the RetNet presets
    /// have them.</summary>
    public TransformerConfig()
    {
        ActivationFn = "swish";
        NoScaleEmbedding = false;
    }

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

    /// <summary>When true the output projection is the embedding table.</summary>
    [JsonPropertyName("share_input_output_embed")]
    public bool ShareInputOutputEmbed { get; init; }

    /// <summary>The head dimension d / heads.</summary>
    [JsonIgnore]
    public int HeadDim => Heads > 0 ? EmbedDim / Heads : 0;

    /// <summary>The factor applied to the embeddings: √d, or 1 with <see cref="ModelConfig.NoScaleEmbedding"/>.</summary>
    [JsonIgnore]
    public float EmbedScale => NoScaleEmbedding ? 1f : (float)Math.Sqrt(EmbedDim);

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
    public override void Validate()
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
        ValidateShared(problems);
        if (Heads > 0 && EmbedDim > 0 && EmbedDim % Heads != 0)
            problems.Add($"embed_dim {EmbedDim} is not divisible by attention_heads {Heads}");
        else if (Heads > 0 && EmbedDim > 0 && HeadDim % 2 != 0)
            problems.Add($"the head dim embed_dim / attention_heads = {HeadDim} is odd; the rotation needs it even");
        if (problems.Count > 0)
            throw new ArgumentException($"Invalid Transformer config: {string.Join("; ", problems)}.", "config");
    }

    private static readonly JsonSerializerOptions JsonOptions = new() { WriteIndented = true };

    private static readonly string[] RequiredFields =
        ["model_type", "embed_dim", "attention_heads", "ffn_embed_dim", "layers", "vocab_size"];

    /// <summary>The config as JSON.</summary>
    public override string ToJson() => JsonSerializer.Serialize(this, JsonOptions);

    /// <summary>Parses a config: the six fields of <see cref="RequiredFields"/> are required, unknown fields are
    /// refused (a Transformer config is this library's own format), and the result is validated.</summary>
    /// <exception cref="ArgumentException">The JSON is malformed, a field is missing, unknown or of the wrong type, or
    /// <see cref="Validate"/> fails.</exception>
    public static new TransformerConfig FromJson(string json)
    {
        ArgumentNullException.ThrowIfNull(json);
        TransformerConfig? config;
        try
        {
            var node = JsonNode.Parse(json, documentOptions: DocumentOptions) as JsonObject
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
    public static new TransformerConfig Load(string path) => LoadFile(path, FromJson);

    /// <summary>Names and shapes of every weight (docs/TRANSFORMER.md): embed_tokens.weight [V, d]; per layer i,
    /// layers.i.attention_layer_norm.weight [d], layers.i.attention.{q,k,v,out}_proj.weight [d, d],
    /// layers.i.final_layer_norm.weight [d], layers.i.ffn.fc1.weight and gate.weight [ffn, d], layers.i.ffn.fc2.weight
    /// [d, ffn]; layer_norm.weight [d]; output_projection.weight [V, d] unless tied.</summary>
    public override IReadOnlyList<(string Name, int[] Shape)> ExpectedWeights() => Spec().Weights();

    /// <summary>
    /// Initial weights, reproducible from <paramref name="seed"/>: norms 1; q, k, v uniform in ±2^(−2.5)·√(6/(in+out))
    /// and the out projection in ±0.5·√(6/(in+out)) (the same Xavier gains RetNet's projections get); the FFN uniform
    /// in ±1/√in; embeddings and the output projection normal with σ = 1/√d.
    /// </summary>
    public override IReadOnlyDictionary<string, HostTensor> InitialWeights(int seed)
    {
        var random = new Random(seed);
        var result = new Dictionary<string, HostTensor>();
        foreach (var (name, shape) in ExpectedWeights())
        {
            var data = new float[ShapeCheck.ElementCount(shape)];
            if (shape.Length == 1)
                Array.Fill(data, 1f);
            else if (name.Contains(".attention.out_proj", StringComparison.Ordinal))
                WeightLayout.Uniform(random, data, 0.5 * Math.Sqrt(6.0 / (shape[0] + shape[1])));
            else if (name.Contains(".attention.", StringComparison.Ordinal))
                WeightLayout.Uniform(random, data, Math.Pow(2, -2.5) * Math.Sqrt(6.0 / (shape[0] + shape[1])));
            else if (name.StartsWith("layers.", StringComparison.Ordinal))
                WeightLayout.Uniform(random, data, 1 / Math.Sqrt(shape[1]));
            else
                WeightLayout.Normal(random, data, 1 / Math.Sqrt(EmbedDim));
            result.Add(name, new HostTensor(shape, data));
        }
        return result;
    }

    internal override DecoderSpec Spec()
    {
        Validate();
        return new DecoderSpec(VocabSize, EmbedDim, Layers, FfnEmbedDim, LayerNormEps, ActivationFn == "gelu",
            EmbedScale, ResidualScale: 1f, PreNorm: true, EmbeddingNorm: false, ShareInputOutputEmbed,
            ParameterNames.Torchscale with { NormsFirst = true }, new AttentionSpec(EmbedDim, Heads));
    }

    /// <summary>Checks that <paramref name="weights"/> are the tensors this config needs, with their shapes (a tied
    /// output projection may also appear under its own name, and is dropped).</summary>
    internal override ResolvedWeights Resolve(IReadOnlyDictionary<string, HostTensor> weights) =>
        ResolveExactly(weights, ShareInputOutputEmbed ? ["output_projection.weight"] : []);

    internal override (IReadOnlyDictionary<string, HostTensor> Extra, IReadOnlyDictionary<string, string> Metadata)
        SaveExtras(IReadOnlyDictionary<string, HostTensor> parameters) =>
        (new Dictionary<string, HostTensor>(),
            new Dictionary<string, string> { ["format"] = "pt", ["model_type"] = ModelType });
}
