using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;
using RetNet.Ilgpu.IO;

namespace RetNet.Ilgpu.Model;

/// <summary>
/// The shape of a language model: which token mixer its blocks use and every size. Every architecture is a
/// configuration of the one decoder shell, <see cref="LanguageModel"/> (docs/ARCHITECTURE.md): a
/// <see cref="RetNetConfig"/> gives multi-scale retention, a <see cref="TransformerConfig"/> causal softmax attention.
/// A config is a plain record: start from a preset (<see cref="RetNetConfig.Preset"/>,
/// <see cref="TransformerConfig.Preset"/>) and change what you need with <c>with { … }</c>.
/// </summary>
public abstract record ModelConfig
{
    /// <summary>"retnet" or "transformer": the <c>model_type</c> a model folder's config.json names.</summary>
    [JsonIgnore]
    public abstract string Architecture { get; }

    /// <summary>Whose checkpoint convention the config and the weight names follow: "torchscale" (torchscale's
    /// RetNet), "fla" (fla's Hugging Face RetNet) or "retnet-ilgpu" (the library's own Transformer).</summary>
    [JsonIgnore]
    public abstract string Convention { get; }

    /// <summary>V, the vocabulary size (<c>vocab_size</c>): token ids are in [0, V).</summary>
    [JsonPropertyName("vocab_size")]
    public int VocabSize { get; init; }

    /// <summary>eps of every RMSNorm (<c>layernorm_eps</c>, default 1e-6; retention's head norm included).</summary>
    [JsonPropertyName("layernorm_eps")]
    public double LayerNormEps { get; init; } = 1e-6;

    /// <summary>The FFN activation, "swish" (SiLU) or "gelu" (exact erf GELU) (<c>activation_fn</c>; the default
    /// is each architecture's).</summary>
    [JsonPropertyName("activation_fn")]
    public string ActivationFn { get; init; } = "gelu";

    /// <summary>When true the embeddings are not multiplied by √d (<c>no_scale_embedding</c>; the default is each
    /// architecture's).</summary>
    [JsonPropertyName("no_scale_embedding")]
    public bool NoScaleEmbedding { get; init; } = true;

    /// <summary>The type the config says its weights are stored in (fla's <c>torch_dtype</c>), or null when it does
    /// not say.</summary>
    [JsonIgnore]
    public virtual Tensors.TensorDType? StoredType => null;

    /// <summary>The sizes in a line: "2 layers, d=64, 2 retention heads, …".</summary>
    [JsonIgnore]
    public abstract string Summary { get; }

    /// <summary>Checks every field; the message lists every problem found.</summary>
    /// <exception cref="ArgumentException">A field is out of range.</exception>
    public abstract void Validate();

    /// <summary>The config as the JSON of a model folder's config.json.</summary>
    public abstract string ToJson();

    /// <summary>Names and shapes of every weight a model of this config holds, in checkpoint order (a tied output
    /// projection counted once).</summary>
    /// <exception cref="ArgumentException">The config is invalid.</exception>
    public abstract IReadOnlyList<(string Name, int[] Shape)> ExpectedWeights();

    /// <summary>The architecture's initial weights, reproducible from <paramref name="seed"/>.</summary>
    /// <exception cref="ArgumentException">The config is invalid.</exception>
    public abstract IReadOnlyDictionary<string, HostTensor> InitialWeights(int seed);

    /// <summary>The number of weights of a model of this config (a tied output projection counted once).</summary>
    /// <exception cref="ArgumentException">The config is invalid.</exception>
    public long ParameterCount() => ExpectedWeights().Sum(e => e.Shape.Aggregate(1L, (a, b) => a * b));

    /// <summary>Adds the problems of the fields every architecture has (V, eps, activation) to
    /// <paramref name="problems"/>.</summary>
    private protected void ValidateShared(List<string> problems)
    {
        if (VocabSize <= 0)
            problems.Add($"vocab_size is {VocabSize}; expected > 0");
        if (!double.IsFinite(LayerNormEps) || LayerNormEps < 0)
            problems.Add($"layernorm_eps is {LayerNormEps.ToString("R", CultureInfo.InvariantCulture)}; expected finite and ≥ 0");
        if (ActivationFn is not ("swish" or "gelu"))
            problems.Add($"activation_fn is '{ActivationFn}'; expected \"swish\" or \"gelu\"");
    }

    /// <summary>The config to save beside weights whose matrices are stored as <paramref name="matrixType"/> (a
    /// convention that records the type says it); this config for the others.</summary>
    internal virtual ModelConfig ForSave(Tensors.TensorDType matrixType) => this;

    /// <summary>The parameters as a saved folder stores them when the matrices are <paramref name="matrixType"/>: as
    /// they are, unless the convention keeps every tensor in one type.</summary>
    internal virtual IReadOnlyDictionary<string, HostTensor> ForSave(IReadOnlyDictionary<string, HostTensor> weights,
        Tensors.TensorDType matrixType) => weights;

    /// <summary>The decoder shell this config describes: sizes, norms, residuals, names and the token mixer.</summary>
    internal abstract DecoderSpec Spec();

    /// <summary>
    /// Checks <paramref name="weights"/> against the config (all problems listed) and returns the parameters by their
    /// canonical names, with the config the model must run with (a checkpoint may adapt it, e.g. torchscale's decay
    /// buffer) and what was adapted.
    /// </summary>
    /// <exception cref="ArgumentException">The config is invalid, or a buffer contradicts it.</exception>
    /// <exception cref="CheckpointMismatchException">Tensors are missing, unexpected or wrongly shaped.</exception>
    internal abstract ResolvedWeights Resolve(IReadOnlyDictionary<string, HostTensor> weights);

    /// <summary>
    /// Checks that <paramref name="weights"/> are exactly the tensors of <see cref="ExpectedWeights"/> with their
    /// shapes, besides the names in <paramref name="ignorable"/> (a tied output projection saved under its own name
    /// too), and returns them by name.
    /// </summary>
    /// <exception cref="CheckpointMismatchException">Tensors are missing, unexpected or wrongly shaped.</exception>
    private protected ResolvedWeights ResolveExactly(IReadOnlyDictionary<string, HostTensor> weights,
        IReadOnlyCollection<string> ignorable)
    {
        ArgumentNullException.ThrowIfNull(weights);
        var expected = ExpectedWeights();
        var names = expected.Select(e => e.Name).ToHashSet();
        var missing = expected.Where(e => !weights.ContainsKey(e.Name)).Select(e => e.Name).ToList();
        var unexpected = weights.Keys.Where(k => !names.Contains(k) && !ignorable.Contains(k)).Order().ToList();
        var wrongShape = expected.Where(e => weights.TryGetValue(e.Name, out var t) && !t.Shape.SequenceEqual(e.Shape))
            .Select(e => $"{e.Name} is {Tensors.ShapeCheck.Format(weights[e.Name].Shape)}, expected " +
                         Tensors.ShapeCheck.Format(e.Shape))
            .ToList();
        if (missing.Count + unexpected.Count + wrongShape.Count > 0)
            throw new CheckpointMismatchException(missing, unexpected, wrongShape);
        return new ResolvedWeights(this, expected.ToDictionary(e => e.Name, e => weights[e.Name]), []);
    }

    /// <summary>The tensors a saved model folder holds besides the parameters (e.g. torchscale's buffers), and its
    /// metadata.</summary>
    internal abstract (IReadOnlyDictionary<string, HostTensor> Extra, IReadOnlyDictionary<string, string> Metadata)
        SaveExtras(IReadOnlyDictionary<string, HostTensor> parameters);

    /// <summary>How config.json is parsed by every architecture: a field named twice is malformed JSON (a
    /// JsonException) rather than the ArgumentException JsonObject throws on first access.</summary>
    internal static readonly JsonDocumentOptions DocumentOptions = new() { AllowDuplicateProperties = false };

    /// <summary>
    /// Parses a model folder's config.json into the config of the architecture it names: <c>"model_type":
    /// "transformer"</c> is a <see cref="TransformerConfig"/>; "retnet" with fla's keys (hidden_size,
    /// num_hidden_layers) is an <see cref="FlaRetNetConfig"/>; a config without model_type, or "retnet" with
    /// torchscale's keys, is a torchscale <see cref="RetNetConfig"/>. The result is validated.
    /// </summary>
    /// <exception cref="ArgumentException">The JSON is malformed or names an unknown model_type, or the config is
    /// invalid.</exception>
    public static ModelConfig FromJson(string json)
    {
        ArgumentNullException.ThrowIfNull(json);
        if (ParseObject(json) is { } node && FlaRetNetConfig.Recognises(node))
            return FlaRetNetConfig.FromJson(json);
        return ModelTypeOf(json) switch
        {
            TransformerConfig.ModelType => TransformerConfig.FromJson(json),
            null or "retnet" => RetNetConfig.FromJson(json),
            var other => throw new ArgumentException(
                $"The config's model_type is \"{other}\"; expected \"retnet\" (or none) or " +
                $"\"{TransformerConfig.ModelType}\".", nameof(json)),
        };
    }

    /// <summary>Reads a config.json file (see <see cref="FromJson"/>).</summary>
    /// <exception cref="ArgumentException">The content is not a valid config; the message names the file.</exception>
    public static ModelConfig Load(string path) => LoadFile(path, FromJson);

    /// <summary>Parses the file at <paramref name="path"/> with <paramref name="parse"/>, naming the file in an
    /// error.</summary>
    private protected static T LoadFile<T>(string path, Func<string, T> parse)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(path);
        try
        {
            return parse(File.ReadAllText(path));
        }
        catch (ArgumentException e)
        {
            throw new ArgumentException($"{path}: {e.Message}", nameof(path), e);
        }
    }

    /// <summary>Writes the config as JSON, atomically.</summary>
    public void Save(string path) => AtomicFile.WriteAllText(path, ToJson());

    /// <summary>The string value of a top-level <c>model_type</c>, or null when the JSON has none (or is not an
    /// object, which the architecture's parser then reports).</summary>
    private static string? ModelTypeOf(string json) =>
        ParseObject(json) is { } node && node["model_type"] is JsonValue value &&
        value.GetValueKind() == JsonValueKind.String
            ? value.GetValue<string>()
            : null;

    /// <summary>The JSON as an object, or null when it is malformed or not an object (the architecture's parser then
    /// reports it).</summary>
    private static JsonObject? ParseObject(string json)
    {
        try
        {
            return JsonNode.Parse(json, documentOptions: DocumentOptions) as JsonObject;
        }
        catch (JsonException)
        {
            return null;
        }
    }
}

/// <summary>
/// A weight set checked against a config: the parameters by canonical name, the config the model must run with (the
/// given one, or one a checkpoint adapted), and what loading adapted, for the user to see.
/// </summary>
/// <param name="Config">The config to build the model from.</param>
/// <param name="Parameters">Every parameter of <see cref="ModelConfig.ExpectedWeights"/>, by canonical name.</param>
/// <param name="Notices">Sentences saying what the checkpoint changed (e.g. decays taken from its buffer).</param>
public sealed record ResolvedWeights(ModelConfig Config, IReadOnlyDictionary<string, HostTensor> Parameters,
    IReadOnlyList<string> Notices);
