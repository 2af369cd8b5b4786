using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;
using RetNet.Ilgpu.IO;
using RetNet.Ilgpu.Kernels.Rotation;
using RetNet.Ilgpu.Retention;
using RetNet.Ilgpu.Tensors;

namespace RetNet.Ilgpu.Model;

/// <summary>
/// A RetNet in flash-linear-attention's (fla's) Hugging Face convention, the format of the public pretrained RetNets
/// (fla-hub/retnet-1.3B-100B, fla-hub/retnet-2.7B-100B), with fla's config.json keys. It is a configuration of the one
/// decoder shell (docs/MATH.md §13): pre-norm RMSNorm blocks without biases, unscaled embeddings, a final norm;
/// retention with GPT-NeoX rotary embeddings, no decay or score normalisation, and a per-head RMSNorm whose weight
/// the heads share; a SwiGLU FFN down(silu(gate) ⊙ up).
/// </summary>
/// <remarks>
/// fla options that would change the computation and are not implemented here (short convolutions, feature maps,
/// hybrid attention layers, no output gate, norms without weights, attention residuals, another activation,
/// L2-warp) are refused by name (<see cref="FromJson"/>). Options that only choose among fla's kernels
/// (<c>attn_mode</c>, <c>fuse_norm</c>, <c>fuse_swiglu</c>, <c>fuse_cross_entropy</c>, …) compute the same function
/// and are kept for writing the config back. Both key sets fla has written load: the current one (<c>norm_eps</c>)
/// and the 2024 one (<c>rms_norm_eps</c>, no <c>num_kv_heads</c>, <c>feature_map</c>, <c>use_short_conv</c> or
/// <c>use_output_gate</c>).
/// </remarks>
public sealed record FlaRetNetConfig : ModelConfig
{
    /// <summary>The model_type of fla's RetNet configs.</summary>
    public const string ModelType = "retnet";

    /// <summary>Starts from fla's defaults: a swish FFN, unscaled embeddings.</summary>
    public FlaRetNetConfig()
    {
        ActivationFn = "swish";
        NoScaleEmbedding = true;
    }

    /// <inheritdoc/>
    [JsonIgnore]
    public override string Architecture => ModelType;

    /// <inheritdoc/>
    [JsonIgnore]
    public override string Convention => "fla";

    /// <inheritdoc/>
    [JsonIgnore]
    public override string Summary => $"{Layers} layers, d={HiddenSize}, heads={Heads}" +
                                      (KvHeadCount != Heads ? $" ({KvHeadCount} kv)" : "") +
                                      $", key dim={KeyDim}, value dim={ValueDim}, ffn={FfnDim}, vocab={VocabSize}";

    /// <summary>d, the model width (<c>hidden_size</c>).</summary>
    public int HiddenSize { get; init; }

    /// <summary>The number of blocks (<c>num_hidden_layers</c>).</summary>
    public int Layers { get; init; }

    /// <summary>H, the query heads (<c>num_heads</c>).</summary>
    public int Heads { get; init; }

    /// <summary>The key/value heads (<c>num_kv_heads</c>); null: one per query head.</summary>
    public int? KvHeads { get; init; }

    /// <summary>The key width over the heads as a multiple of d (<c>expand_k</c>).</summary>
    public double ExpandK { get; init; } = 1;

    /// <summary>The value width over the heads as a multiple of d (<c>expand_v</c>).</summary>
    public double ExpandV { get; init; } = 2;

    /// <summary>The FFN size ratio when <see cref="IntermediateSize"/> is null (<c>hidden_ratio</c>; null means 4, as
    /// fla's GatedMLP takes it).</summary>
    public int? HiddenRatio { get; init; } = 2;

    /// <summary>The FFN's hidden width (<c>intermediate_size</c>); null: from <see cref="HiddenRatio"/>.</summary>
    public int? IntermediateSize { get; init; }

    /// <summary>The output projection is the embedding table (<c>tie_word_embeddings</c>).</summary>
    public bool TieWordEmbeddings { get; init; }

    /// <summary>The head norm's weight is stored as <c>attn.g_norm_swish_gate.weight</c> (true, fla's default) or
    /// <c>attn.g_norm.weight</c> (<c>fuse_norm</c>).</summary>
    public bool FuseNorm { get; init; } = true;

    /// <summary>fla's retention kernel (<c>attn_mode</c>: chunk, fused_chunk, parallel, fused_recurrent); every one
    /// computes the same function, so it only travels back into a saved config.</summary>
    public string AttnMode { get; init; } = "chunk";

    /// <summary>The beginning-of-sequence token (<c>bos_token_id</c>).</summary>
    public int? BosTokenId { get; init; } = 1;

    /// <summary>The end-of-sequence token (<c>eos_token_id</c>).</summary>
    public int? EosTokenId { get; init; } = 2;

    /// <summary>The padding token (<c>pad_token_id</c>).</summary>
    public int? PadTokenId { get; init; }

    /// <summary>The training context (<c>max_position_embeddings</c>); retention has no position table, so it only
    /// travels back into a saved config.</summary>
    public int MaxPositionEmbeddings { get; init; } = 2048;

    /// <summary>σ of the initial weights (<c>initializer_range</c>).</summary>
    public double InitializerRange { get; init; } = 0.02;

    /// <summary>The dtype the weights were saved in (<c>torch_dtype</c>: float32, bfloat16, float16), informational;
    /// null when the config does not say.</summary>
    public string? TorchDtype { get; init; }

    /// <summary>The rotation's layout: fla's is <see cref="RotaryLayout.Halves"/>. Another layout is not fla's
    /// convention; it exists so that tests can show the fixtures reject it.</summary>
    [JsonIgnore]
    internal RotaryLayout Rotary { get; init; } = RotaryLayout.Halves;

    /// <summary>torchscale's decay normalisation of the head norm: fla has none. Setting it is not fla's convention;
    /// it exists so that tests can show the fixtures reject it.</summary>
    [JsonIgnore]
    internal bool DecayNormalized { get; init; }

    /// <inheritdoc/>
    [JsonIgnore]
    public override TensorDType? StoredType => TorchDtype switch
    {
        "bfloat16" => TensorDType.BFloat16,
        "float16" => TensorDType.Float16,
        "float32" => TensorDType.Float32,
        _ => null,
    };

    /// <summary>The config to save with weights whose matrices are <paramref name="matrixType"/>: torch_dtype says
    /// that type, as fla's save_pretrained writes it.</summary>
    internal override ModelConfig ForSave(TensorDType matrixType) => this with
    {
        TorchDtype = matrixType switch
        {
            TensorDType.BFloat16 => "bfloat16",
            TensorDType.Float16 => "float16",
            _ => "float32",
        },
    };

    /// <summary>fla's files keep every tensor in torch_dtype (a bf16 load with <c>torch_dtype="auto"</c> would round
    /// fp32 norms anyway): the norm weights are saved in the matrices' type too.</summary>
    internal override IReadOnlyDictionary<string, HostTensor> ForSave(IReadOnlyDictionary<string, HostTensor> weights,
        TensorDType matrixType) => weights.ToDictionary(p => p.Key, p => p.Value.As(matrixType));

    /// <summary>The key/value heads, <see cref="KvHeads"/> or H.</summary>
    [JsonIgnore]
    public int KvHeadCount => KvHeads ?? Heads;

    /// <summary>The query (and key) width over all heads: int(d·expand_k), truncated as Python's int() does.</summary>
    [JsonIgnore]
    public int KeyDim => (int)(HiddenSize * ExpandK);

    /// <summary>The value width over all heads: int(d·expand_v).</summary>
    [JsonIgnore]
    public int ValueDim => (int)(HiddenSize * ExpandV);

    /// <summary>Dk, the key head width.</summary>
    [JsonIgnore]
    public int KeyHeadDim => Heads > 0 ? KeyDim / Heads : 0;

    /// <summary>Dv, the value head width.</summary>
    [JsonIgnore]
    public int ValueHeadDim => Heads > 0 ? ValueDim / Heads : 0;

    /// <summary>The FFN's hidden width: <see cref="IntermediateSize"/>, else 256·⌈int(d·ratio·2/3)/256⌉ (2816 for
    /// d = 2048 and ratio 2).</summary>
    [JsonIgnore]
    public int FfnDim => IntermediateSize ??
                         256 * (((int)(HiddenSize * (double)(HiddenRatio ?? 4) * 2 / 3) + 255) / 256);

    /// <summary>The preset names <see cref="Preset"/> accepts.</summary>
    public static IReadOnlyList<string> PresetNames { get; } = ["fla-tiny", "fla-1.3b", "fla-2.7b"];

    /// <summary>
    /// A named configuration: "fla-1.3b" is fla-hub/retnet-1.3B-100B's config (d 2048, 24 layers, 8 heads,
    /// expand_v 2, FFN 2816, vocabulary 32000, bfloat16), "fla-2.7b" fla-hub/retnet-2.7B-100B's (d 2560, 32 layers,
    /// 10 heads, FFN 3584), "fla-tiny" a small one for tests (d 64, 2 layers, 2 heads, FFN 128, vocabulary 256).
    /// </summary>
    /// <exception cref="ArgumentException">The name is not one of <see cref="PresetNames"/>.</exception>
    public static FlaRetNetConfig Preset(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        return name.ToLowerInvariant() switch
        {
            "fla-tiny" => new() { HiddenSize = 64, Layers = 2, Heads = 2, IntermediateSize = 128, VocabSize = 256 },
            "fla-1.3b" => new()
            {
                HiddenSize = 2048, Layers = 24, Heads = 8, VocabSize = 32000, AttnMode = "fused_chunk",
                TorchDtype = "bfloat16",
            },
            "fla-2.7b" => new()
            {
                HiddenSize = 2560, Layers = 32, Heads = 10, VocabSize = 32000, AttnMode = "fused_chunk",
                TorchDtype = "bfloat16",
            },
            _ => throw new ArgumentException(
                $"Argument 'name' is '{name}'; expected one of {string.Join(", ", PresetNames)}.", nameof(name)),
        };
    }

    /// <summary>Checks every field; the message of the exception lists all problems found.</summary>
    /// <exception cref="ArgumentException">A size is not positive, a width is not divisible by the heads, the key head
    /// width is odd or over 256, the kv heads do not divide the heads, there are more than 47 heads (γ rounds to 1),
    /// eps is negative, the activation is not swish, or the embeddings are scaled.</exception>
    public override void Validate()
    {
        var problems = new List<string>();
        void Positive(string field, int value)
        {
            if (value <= 0)
                problems.Add($"{field} is {value}; expected > 0");
        }
        Positive("hidden_size", HiddenSize);
        Positive("num_hidden_layers", Layers);
        Positive("num_heads", Heads);
        if (KvHeads is { } kv)
            Positive("num_kv_heads", kv);
        if (!(double.IsFinite(ExpandK) && ExpandK > 0))
            problems.Add($"expand_k is {Format(ExpandK)}; expected > 0");
        if (!(double.IsFinite(ExpandV) && ExpandV > 0))
            problems.Add($"expand_v is {Format(ExpandV)}; expected > 0");
        if (IntermediateSize is { } width)
            Positive("intermediate_size", width);
        else if (HiddenRatio is { } ratio)
            Positive("hidden_ratio", ratio);
        ValidateShared(problems);
        if (ActivationFn != "swish")
            problems.Add($"hidden_act is '{ActivationFn}'; fla's RetNet is implemented with \"swish\" only");
        if (!NoScaleEmbedding)
            problems.Add("the embeddings are scaled by √d; fla's RetNet does not scale them");
        if (Heads > 47)
            problems.Add($"num_heads is {Heads}; expected ≤ 47 (γ = 1 − 2^(−5−h) rounds to 1 beyond)");
        if (Heads > 0 && HiddenSize > 0 && ExpandK > 0)
        {
            if (KeyDim <= 0 || KeyDim % Heads != 0)
                problems.Add($"the key dim int(hidden_size·expand_k) = {KeyDim} is not a positive multiple of num_heads {Heads}");
            else if (KeyHeadDim % 2 != 0 || KeyHeadDim > 256)
                problems.Add($"the key head dim {KeyHeadDim} is odd or over 256; the rotary embedding needs it even " +
                             "and fla's kernels at most 256");
        }
        if (Heads > 0 && HiddenSize > 0 && ExpandV > 0 && (ValueDim <= 0 || ValueDim % Heads != 0))
            problems.Add($"the value dim int(hidden_size·expand_v) = {ValueDim} is not a positive multiple of num_heads {Heads}");
        if (KvHeads is > 0 and var kvHeads && Heads > 0 && Heads % kvHeads != 0)
            problems.Add($"num_heads {Heads} is not a multiple of num_kv_heads {kvHeads}");
        if (AttnMode is not ("chunk" or "fused_chunk" or "parallel" or "fused_recurrent"))
            problems.Add($"attn_mode is '{AttnMode}'; expected chunk, fused_chunk, parallel or fused_recurrent");
        if (problems.Count > 0)
            throw new ArgumentException($"Invalid fla RetNet config: {string.Join("; ", problems)}.", "config");
    }

    /// <summary>
    /// fla options that change the computation and are not implemented, with their default (the value that asks for
    /// nothing) and what another value would ask for.
    /// </summary>
    private static readonly (string Field, JsonValueKind Default, string Feature)[] UnsupportedFields =
    [
        ("use_short_conv", JsonValueKind.False, "short convolutions on q, k and v"),
        ("feature_map", JsonValueKind.Null, "a feature map on q and k"),
        ("attn", JsonValueKind.Null, "hybrid layers of softmax attention"),
        ("use_output_gate", JsonValueKind.True, "retention without the output gate"),
        ("elementwise_affine", JsonValueKind.True, "norms without weights"),
        ("attnres_block_size", JsonValueKind.Null, "attention residuals (AttnRes)"),
        ("use_l2warp", JsonValueKind.False, "L2-warp of the loss"),
        ("share_conv_kernel", JsonValueKind.True, "short convolutions (a 2024 key)"),
    ];

    /// <summary>The size fields a config must have.</summary>
    private static readonly string[] RequiredFields = ["hidden_size", "num_hidden_layers", "num_heads", "vocab_size"];

    /// <summary>True when <paramref name="json"/> is an object in fla's RetNet convention: model_type "retnet" with
    /// fla's size keys (hidden_size, num_hidden_layers) rather than torchscale's.</summary>
    internal static bool Recognises(JsonObject json) =>
        json["model_type"] is JsonValue type && type.GetValueKind() == JsonValueKind.String &&
        type.GetValue<string>() == ModelType && json.ContainsKey("hidden_size") &&
        json.ContainsKey("num_hidden_layers") && !json.ContainsKey("decoder_embed_dim");

    /// <summary>
    /// Parses fla's config.json (current or 2024 keys). Options that would change the computation and are not
    /// implemented are refused, every one named; keys fla uses only for training kernels or caching are kept or
    /// ignored. The result is validated.
    /// </summary>
    /// <exception cref="ArgumentException">The JSON is malformed, a size field is missing, a field has the wrong type,
    /// an unsupported option is set, or <see cref="Validate"/> fails.</exception>
    public static new FlaRetNetConfig FromJson(string json)
    {
        ArgumentNullException.ThrowIfNull(json);
        JsonObject node;
        try
        {
            node = JsonNode.Parse(json, documentOptions: DocumentOptions) as JsonObject
                   ?? throw new ArgumentException("The fla RetNet config JSON is not an object.", nameof(json));
        }
        catch (JsonException e)
        {
            throw new ArgumentException($"The fla RetNet config JSON is malformed: {e.Message}", nameof(json), e);
        }
        if (node["model_type"] is not JsonValue type || type.GetValueKind() != JsonValueKind.String ||
            type.GetValue<string>() != ModelType)
            throw new ArgumentException(
                $"The config's model_type is {node["model_type"]?.ToJsonString() ?? "absent"}; an fla RetNet config " +
                $"has \"{ModelType}\".", nameof(json));
        var missing = RequiredFields.Where(f => !node.ContainsKey(f)).ToList();
        if (missing.Count > 0)
            throw new ArgumentException($"The fla RetNet config lacks {string.Join(", ", missing)}.", nameof(json));
        var unsupported = UnsupportedFields
            .Where(f => node.ContainsKey(f.Field) && Kind(node[f.Field]) != f.Default &&
                        !(f.Default == JsonValueKind.True && Kind(node[f.Field]) == JsonValueKind.Null))
            .Select(f => $"{f.Field} is {node[f.Field]?.ToJsonString() ?? "null"}, which asks for {f.Feature}: not " +
                         $"implemented (expected {DefaultText(f.Default)})")
            .ToList();
        if (unsupported.Count > 0)
            throw new ArgumentException(
                $"The fla RetNet config sets options that change the computation: {string.Join("; ", unsupported)}.",
                nameof(json));
        var reader = new FieldReader(node);
        var config = new FlaRetNetConfig
        {
            VocabSize = reader.Int("vocab_size"),
            HiddenSize = reader.Int("hidden_size"),
            Layers = reader.Int("num_hidden_layers"),
            Heads = reader.Int("num_heads"),
            KvHeads = reader.NullableInt("num_kv_heads", null),
            ExpandK = reader.Double("expand_k", 1),
            ExpandV = reader.Double("expand_v", 2),
            HiddenRatio = reader.NullableInt("hidden_ratio", 2),
            IntermediateSize = reader.NullableInt("intermediate_size", null),
            // fla reads norm_eps (default 1e-6); configs written in 2024 name it rms_norm_eps.
            LayerNormEps = node.ContainsKey("norm_eps") ? reader.Double("norm_eps", 1e-6) : reader.Double("rms_norm_eps", 1e-6),
            ActivationFn = reader.String("hidden_act", "swish"),
            TieWordEmbeddings = reader.Bool("tie_word_embeddings", false),
            FuseNorm = reader.Bool("fuse_norm", true),
            AttnMode = reader.String("attn_mode", "chunk"),
            BosTokenId = reader.NullableInt("bos_token_id", 1),
            EosTokenId = reader.NullableInt("eos_token_id", 2),
            PadTokenId = reader.NullableInt("pad_token_id", null),
            MaxPositionEmbeddings = reader.Int("max_position_embeddings", 2048),
            InitializerRange = reader.Double("initializer_range", 0.02),
            TorchDtype = reader.NullableString("torch_dtype") ?? reader.NullableString("dtype"),
        };
        config.Validate();
        return config;
    }

    /// <summary>Reads a config.json file (see <see cref="FromJson"/>).</summary>
    /// <exception cref="ArgumentException">The content is not a valid config; the message names the file.</exception>
    public static new FlaRetNetConfig Load(string path) => LoadFile(path, FromJson);

    /// <summary>The config as fla's <c>save_pretrained</c> writes it: every key of fla's RetNetConfig, sorted, with
    /// <c>architectures</c> naming RetNetForCausalLM, so that fla's <c>from_pretrained</c> reads it.</summary>
    public override string ToJson()
    {
        var node = new JsonObject
        {
            ["architectures"] = new JsonArray("RetNetForCausalLM"),
            ["attn"] = null,
            ["attn_mode"] = AttnMode,
            ["attnres_block_size"] = null,
            ["bos_token_id"] = BosTokenId,
            ["conv_size"] = 4,
            ["elementwise_affine"] = true,
            ["eos_token_id"] = EosTokenId,
            ["expand_k"] = ExpandK,
            ["expand_v"] = ExpandV,
            ["feature_map"] = null,
            ["fuse_cross_entropy"] = true,
            ["fuse_linear_cross_entropy"] = false,
            ["fuse_norm"] = FuseNorm,
            ["fuse_swiglu"] = true,
            ["hidden_act"] = ActivationFn,
            ["hidden_ratio"] = HiddenRatio,
            ["hidden_size"] = HiddenSize,
            ["initializer_range"] = InitializerRange,
            ["intermediate_size"] = IntermediateSize,
            ["max_position_embeddings"] = MaxPositionEmbeddings,
            ["model_type"] = ModelType,
            ["norm_eps"] = LayerNormEps,
            ["num_heads"] = Heads,
            ["num_hidden_layers"] = Layers,
            ["num_kv_heads"] = KvHeads,
            ["pad_token_id"] = PadTokenId,
            ["tie_word_embeddings"] = TieWordEmbeddings,
            ["torch_dtype"] = TorchDtype,
            ["use_cache"] = true,
            ["use_l2warp"] = false,
            ["use_output_gate"] = true,
            ["use_short_conv"] = false,
            ["vocab_size"] = VocabSize,
        };
        return node.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n";
    }

    /// <inheritdoc/>
    public override IReadOnlyList<(string Name, int[] Shape)> ExpectedWeights() => Spec().Weights();

    /// <summary>Initial weights as fla's <c>_init_weights</c> makes them, reproducible from <paramref name="seed"/>:
    /// every matrix (embeddings included) normal with σ = <see cref="InitializerRange"/>, every norm weight 1.</summary>
    public override IReadOnlyDictionary<string, HostTensor> InitialWeights(int seed)
    {
        var random = new Random(seed);
        var result = new Dictionary<string, HostTensor>();
        foreach (var (name, shape) in ExpectedWeights())
        {
            var data = new float[ShapeCheck.ElementCount(shape)];
            if (shape.Length == 1)
                Array.Fill(data, 1f);
            else
                WeightLayout.Normal(random, data, InitializerRange);
            result.Add(name, new HostTensor(shape, data));
        }
        return result;
    }

    internal override DecoderSpec Spec()
    {
        Validate();
        var retention = new RetentionOptions(Heads, KeyDim, ValueDim, LayerNormEps, DecaySchedule.Torchscale(Heads),
            Rotary, DecayNormalized,
            GateNormWeight: FuseNorm ? "g_norm_swish_gate.weight" : "g_norm.weight", OutputName: "o_proj.weight",
            KvHeads: KvHeadCount);
        return new DecoderSpec(VocabSize, HiddenSize, Layers, FfnDim, LayerNormEps, Gelu: false, EmbedScale: 1f,
            ResidualScale: 1f, PreNorm: true, EmbeddingNorm: false, TieWordEmbeddings, ParameterNames.Fla,
            new RetentionSpec(HiddenSize, retention));
    }

    /// <summary>Checks the weights against the config; a tied model's file may also hold lm_head.weight (fla ties it
    /// to the embeddings on load, so it is not read).</summary>
    internal override ResolvedWeights Resolve(IReadOnlyDictionary<string, HostTensor> weights) =>
        ResolveExactly(weights, TieWordEmbeddings ? ["lm_head.weight"] : []);

    internal override (IReadOnlyDictionary<string, HostTensor> Extra, IReadOnlyDictionary<string, string> Metadata)
        SaveExtras(IReadOnlyDictionary<string, HostTensor> parameters) =>
        (new Dictionary<string, HostTensor>(), new Dictionary<string, string> { ["format"] = "pt" });

    private static JsonValueKind Kind(JsonNode? node) => node?.GetValueKind() ?? JsonValueKind.Null;

    private static string DefaultText(JsonValueKind kind) => kind switch
    {
        JsonValueKind.True => "true",
        JsonValueKind.False => "false or absent",
        _ => "null or absent",
    };

    private static string Format(double value) => value.ToString("R", CultureInfo.InvariantCulture);

    /// <summary>Typed reads of a config's fields, each error naming the field.</summary>
    private sealed class FieldReader(JsonObject node)
    {
        public int Int(string field, int? fallback = null) =>
            NullableInt(field, fallback) ?? throw Wrong(field, "an integer");

        public int? NullableInt(string field, int? fallback)
        {
            if (!node.TryGetPropertyValue(field, out var value))
                return fallback;
            if (value is null)
                return null;
            if (value is JsonValue v && v.GetValueKind() == JsonValueKind.Number && v.TryGetValue<double>(out var d) &&
                d == Math.Floor(d) && d is >= int.MinValue and <= int.MaxValue)
                return (int)d;
            throw Wrong(field, "an integer");
        }

        public double Double(string field, double fallback)
        {
            if (!node.TryGetPropertyValue(field, out var value))
                return fallback;
            if (value is JsonValue v && v.GetValueKind() == JsonValueKind.Number)
                return v.GetValue<double>();
            throw Wrong(field, "a number");
        }

        public bool Bool(string field, bool fallback)
        {
            if (!node.TryGetPropertyValue(field, out var value))
                return fallback;
            return Kind(value) switch
            {
                JsonValueKind.True => true,
                JsonValueKind.False => false,
                _ => throw Wrong(field, "true or false"),
            };
        }

        public string String(string field, string fallback) => NullableString(field) ?? fallback;

        public string? NullableString(string field)
        {
            if (!node.TryGetPropertyValue(field, out var value) || value is null)
                return null;
            if (value is JsonValue v && v.GetValueKind() == JsonValueKind.String)
                return v.GetValue<string>();
            throw Wrong(field, "a string");
        }

        private ArgumentException Wrong(string field, string expected) =>
            new($"The fla RetNet config's {field} is {node[field]?.ToJsonString() ?? "null"}; expected {expected}.",
                "json");
    }
}
