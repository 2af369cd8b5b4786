using RetNet.Ilgpu.Attention;
using RetNet.Ilgpu.Devices;
using RetNet.Ilgpu.IO;
using RetNet.Ilgpu.Kernels.Elementwise;
using RetNet.Ilgpu.Kernels.Normalization;
using RetNet.Ilgpu.Kernels.Rotation;
using RetNet.Ilgpu.Kernels.ScaledEmbedding;
using RetNet.Ilgpu.Model;
using RetNet.Ilgpu.Tensors;

namespace RetNet.Ilgpu.Transformer;

/// <summary>
/// The baseline decoder-only Transformer (docs/TRANSFORMER.md), built from the library's own pieces: the scaled
/// embedding, pre-norm RMSNorm blocks, causal softmax attention with the rotation RetNet uses for q and k (so the two
/// models differ only in the token mixer), the gated FFN, a final RMSNorm and the output projection. Decoding keeps a
/// per-sequence KV cache (<see cref="KvCache"/>) that grows by 2·layers·d floats per token. Not thread-safe.
/// </summary>
public sealed partial class TransformerModel : ILanguageModel
{
    private readonly Dictionary<string, Tensor> parameters;
    private readonly Tensor angles;
    private readonly Tensor inverseAngles;
    private Tensor embedding = null!;
    private Tensor finalNorm = null!;
    private Tensor outputWeight = null!;
    private TransformerBlock[] blocks = [];
    private ComputeWeights? computeWeights;
    private bool disposed;

    private TransformerModel(RetNetDevice device, TransformerConfig config, Dictionary<string, Tensor> parameters,
        Tensor angles, Tensor inverseAngles)
    {
        Device = device;
        Config = config;
        this.parameters = parameters;
        this.angles = angles;
        this.inverseAngles = inverseAngles;
        Bind(name => parameters[name]);
    }

    /// <summary>Points the layers at the tensors <paramref name="weight"/> names: the parameters themselves, or
    /// mixed precision's compute copies.</summary>
    private void Bind(Func<string, Tensor> weight)
    {
        var config = Config;
        embedding = weight("embed_tokens.weight");
        finalNorm = weight("layer_norm.weight");
        outputWeight = config.ShareInputOutputEmbed ? embedding : weight("output_projection.weight");
        blocks = new TransformerBlock[config.Layers];
        for (var i = 0; i < config.Layers; i++)
        {
            Tensor P(string name) => weight($"layers.{i}.{name}");
            blocks[i] = new TransformerBlock(P("attention_layer_norm.weight"), P("attention.q_proj.weight"),
                P("attention.k_proj.weight"), P("attention.v_proj.weight"), P("attention.out_proj.weight"),
                P("final_layer_norm.weight"),
                new GatedFeedForward(P("ffn.fc1.weight"), P("ffn.gate.weight"), P("ffn.fc2.weight"),
                    config.ActivationFn == "gelu", $"layers.{i}.ffn."),
                config, angles, inverseAngles, $"layers.{i}.");
        }
    }

    /// <summary>The device the weights live on.</summary>
    public RetNetDevice Device { get; }

    /// <summary>The model's shape.</summary>
    public TransformerConfig Config { get; }

    /// <inheritdoc/>
    public string Architecture => TransformerConfig.ModelType;

    /// <inheritdoc/>
    public int VocabSize => Config.VocabSize;

    /// <inheritdoc/>
    public string ConfigJson => Config.ToJson();

    /// <summary>What loading adapted: only which config was used when config.json and the weights disagreed
    /// (<see cref="ModelFolder.Read"/>); empty otherwise.</summary>
    public IReadOnlyList<string> Notices { get; private set; } = [];

    /// <summary>The number of weights.</summary>
    public long ParameterCount => parameters.Values.Sum(p => (long)p.Length);

    /// <summary>Bytes of the weights (fp32).</summary>
    public long WeightBytes => parameters.Values.Sum(p => p.Bytes);

    /// <inheritdoc/>
    public TensorDType WeightType { get; private init; }

    /// <summary>Bytes a KV cache holds for <paramref name="batch"/> sequences of <paramref name="positions"/> tokens
    /// each: 2 (K and V) · layers · B · positions · d · 4.</summary>
    public long KvCacheBytes(int batch, int positions) => 8L * Config.Layers * batch * positions * Config.EmbedDim;

    /// <summary>Names and shapes of every weight (docs/TRANSFORMER.md): embed_tokens.weight [V, d]; per layer i,
    /// layers.i.attention_layer_norm.weight [d], layers.i.attention.{q,k,v,out}_proj.weight [d, d],
    /// layers.i.final_layer_norm.weight [d], layers.i.ffn.fc1.weight and gate.weight [ffn, d], layers.i.ffn.fc2.weight
    /// [d, ffn]; layer_norm.weight [d]; output_projection.weight [V, d] unless tied.</summary>
    public static IReadOnlyList<(string Name, int[] Shape)> ExpectedWeights(TransformerConfig config)
    {
        ArgumentNullException.ThrowIfNull(config);
        config.Validate();
        int d = config.EmbedDim, f = config.FfnEmbedDim;
        var result = new List<(string, int[])> { ("embed_tokens.weight", [config.VocabSize, d]) };
        for (var i = 0; i < config.Layers; i++)
        {
            var p = $"layers.{i}.";
            result.Add((p + "attention_layer_norm.weight", [d]));
            foreach (var projection in new[] { "q_proj", "k_proj", "v_proj", "out_proj" })
                result.Add((p + $"attention.{projection}.weight", [d, d]));
            result.Add((p + "final_layer_norm.weight", [d]));
            result.Add((p + "ffn.fc1.weight", [f, d]));
            result.Add((p + "ffn.gate.weight", [f, d]));
            result.Add((p + "ffn.fc2.weight", [d, f]));
        }
        result.Add(("layer_norm.weight", [d]));
        if (!config.ShareInputOutputEmbed)
            result.Add(("output_projection.weight", [config.VocabSize, d]));
        return result;
    }

    /// <summary>
    /// Initial weights, reproducible from <paramref name="seed"/>: norms 1; q, k, v uniform in ±2^(−2.5)·√(6/(in+out))
    /// and the out projection in ±0.5·√(6/(in+out)) (the same Xavier gains RetNet's projections get); the FFN uniform
    /// in ±1/√in; embeddings and the output projection normal with σ = 1/√d.
    /// </summary>
    public static IReadOnlyDictionary<string, HostTensor> Initialize(TransformerConfig config, int seed)
    {
        var random = new Random(seed);
        var result = new Dictionary<string, HostTensor>();
        foreach (var (name, shape) in ExpectedWeights(config))
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
                WeightLayout.Normal(random, data, 1 / Math.Sqrt(config.EmbedDim));
            result.Add(name, new HostTensor(shape, data));
        }
        return result;
    }

    /// <summary>A model with <see cref="Initialize"/>'s weights, its matrices stored as <paramref name="weightType"/>.</summary>
    /// <exception cref="ArgumentException">The config is invalid.</exception>
    public static TransformerModel Create(RetNetDevice device, TransformerConfig config, int seed = 0,
        TensorDType weightType = TensorDType.Float32) =>
        FromWeights(device, config, Initialize(config, seed), weightType: weightType);

    /// <summary>A model from host weights named as <see cref="ExpectedWeights"/> lists them (a tied output projection
    /// may also appear under its own name). Everything is checked before device memory is allocated; weights holding
    /// NaN or ±∞ are refused unless <paramref name="allowNonFiniteWeights"/>.</summary>
    /// <exception cref="ArgumentException">The config is invalid, or a weight is not finite.</exception>
    /// <exception cref="CheckpointMismatchException">Tensors are missing, unexpected or wrongly shaped (all listed).</exception>
    /// <param name="device">The device to put the weights on.</param>
    /// <param name="config">The model's shape.</param>
    /// <param name="weights">The weights by name.</param>
    /// <param name="allowNonFiniteWeights">Load weights holding NaN or ±∞ anyway.</param>
    /// <param name="weightType">How the matrices are stored (as for <see cref="RetNetModel.FromWeights(RetNetDevice,
    /// RetNetConfig, IReadOnlyDictionary{string, HostTensor}, bool, TensorDType?)"/>); null keeps the checkpoint's.</param>
    public static TransformerModel FromWeights(RetNetDevice device, TransformerConfig config,
        IReadOnlyDictionary<string, HostTensor> weights, bool allowNonFiniteWeights = false,
        TensorDType? weightType = null)
    {
        ArgumentNullException.ThrowIfNull(device);
        var expected = CheckWeights(config, weights);
        if (!allowNonFiniteWeights)
            HostTensor.RequireFinite(weights, expected.Select(e => e.Name), nameof(weights));
        var matrixType = WeightStorage.MatrixType(weights, expected.Select(e => e.Name), weightType);
        var parameters = new Dictionary<string, Tensor>();
        Tensor? angles = null, inverseAngles = null;
        try
        {
            foreach (var (name, _) in expected)
                parameters.Add(name, WeightStorage.Upload(weights[name], device, matrixType));
            var theta = ThetaShift.Angles(config.HeadDim);
            angles = Tensor.FromHost(device, theta, theta.Length);
            inverseAngles = Tensor.FromHost(device, theta.Select(a => -a).ToArray(), theta.Length);
            return new TransformerModel(device, config, parameters, angles, inverseAngles) { WeightType = matrixType };
        }
        catch
        {
            foreach (var p in parameters.Values)
                p.Dispose();
            angles?.Dispose();
            inverseAngles?.Dispose();
            throw;
        }
    }

    /// <summary>Checks that <paramref name="weights"/> are the tensors <paramref name="config"/> needs, with their
    /// shapes (a tied output projection may also appear under its own name); returns the expected list.</summary>
    /// <exception cref="ArgumentException">The config is invalid.</exception>
    /// <exception cref="CheckpointMismatchException">Tensors are missing, unexpected or wrongly shaped (all listed).</exception>
    internal static IReadOnlyList<(string Name, int[] Shape)> CheckWeights(TransformerConfig config,
        IReadOnlyDictionary<string, HostTensor> weights)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(weights);
        var expected = ExpectedWeights(config);
        var names = expected.Select(e => e.Name).ToHashSet();
        var missing = expected.Where(e => !weights.ContainsKey(e.Name)).Select(e => e.Name).ToList();
        var unexpected = weights.Keys.Where(k => !names.Contains(k) &&
            !(config.ShareInputOutputEmbed && k == "output_projection.weight")).Order().ToList();
        var wrongShape = expected.Where(e => weights.TryGetValue(e.Name, out var t) && !t.Shape.SequenceEqual(e.Shape))
            .Select(e => $"{e.Name} is {ShapeCheck.Format(weights[e.Name].Shape)}, expected {ShapeCheck.Format(e.Shape)}")
            .ToList();
        if (missing.Count + unexpected.Count + wrongShape.Count > 0)
            throw new CheckpointMismatchException(missing, unexpected, wrongShape);
        return expected;
    }

    /// <summary>The weights by name, copied to the host.</summary>
    public IReadOnlyDictionary<string, HostTensor> ExportWeights()
    {
        ObjectDisposedException.ThrowIf(disposed, this);
        return ExpectedWeights(Config).ToDictionary(e => e.Name, e => HostTensor.From(parameters[e.Name]));
    }

    /// <summary>Writes <paramref name="folder"/>/model.safetensors (F32, the config embedded) and config.json (with
    /// <c>"model_type": "transformer"</c>), each atomically; a kill between the two still leaves a folder that loads
    /// as one version (<see cref="ModelFolder"/>).</summary>
    public void Save(string folder)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(folder);
        ObjectDisposedException.ThrowIf(disposed, this);
        ModelFolder.Write(folder, Config.ToJson(), ExportWeights(),
            new Dictionary<string, string> { ["format"] = "pt", ["model_type"] = TransformerConfig.ModelType });
    }

    /// <summary>Loads a folder written by <see cref="Save"/>; <see cref="Notices"/> says when the config saved with the
    /// weights was used instead of config.json (<see cref="ModelFolder.Read"/>).</summary>
    /// <exception cref="FileNotFoundException">config.json or model.safetensors is absent.</exception>
    /// <exception cref="ArgumentException">The config is invalid or not a Transformer's, or a weight is not finite
    /// (unless <paramref name="allowNonFiniteWeights"/>).</exception>
    /// <exception cref="CheckpointMismatchException">The tensors do not fit the config.</exception>
    public static TransformerModel Load(RetNetDevice device, string folder, bool allowNonFiniteWeights = false,
        TensorDType? weightType = null) =>
        FromFolder(device, ModelFolder.Read(folder), allowNonFiniteWeights, weightType);

    /// <summary>The model of a folder already read (see <see cref="Load"/>).</summary>
    internal static TransformerModel FromFolder(RetNetDevice device, ModelFolderContents contents,
        bool allowNonFiniteWeights, TensorDType? weightType)
    {
        TransformerConfig config;
        try
        {
            config = TransformerConfig.FromJson(contents.ConfigJson);
        }
        catch (ArgumentException e)
        {
            throw new ArgumentException($"{contents.ConfigOrigin}: {e.Message}", nameof(contents), e);
        }
        var model = FromWeights(device, config, contents.Weights.Tensors, allowNonFiniteWeights, weightType);
        model.Notices = contents.Notices;
        return model;
    }

    /// <summary>Logits [B, T, V] of every position of <paramref name="tokens"/> [B, T], each sequence starting at
    /// position 0. Attention never holds a T×T buffer. The caller disposes the result.</summary>
    /// <exception cref="ArgumentException">B or T is 0, or an id is outside [0, V).</exception>
    public Tensor Forward(int[,] tokens)
    {
        ObjectDisposedException.ThrowIf(disposed, this);
        ArgumentNullException.ThrowIfNull(tokens);
        int batch = tokens.GetLength(0), seqLen = tokens.GetLength(1);
        if (batch == 0 || seqLen == 0)
            throw new ArgumentException($"Argument 'tokens' is [{batch}, {seqLen}]; expected at least one token.",
                nameof(tokens));
        ShapeCheck.FitsOneTensor((long)batch * seqLen, Config.VocabSize, "logits [B·T, V]", nameof(tokens));
        ShapeCheck.FitsOneTensor((long)batch * seqLen, Config.FfnEmbedDim, "activations [B·T, ffn]", nameof(tokens));
        var n = batch * seqLen;
        var ids = new int[n + batch];
        Buffer.BlockCopy(tokens, 0, ids, 0, n * sizeof(int));
        CheckIds(ids.AsSpan(0, n), nameof(tokens));
        var logits = Tensor.Uninitialized(Device, batch, seqLen, Config.VocabSize);
        try
        {
            using var rows = new TransformerRows(this, n, batch);
            rows.Ids.Slice(0, ids.Length).CopyFromHost(ids);
            Run(rows, batch, seqLen, n, cache: null);
            Model.Linear.Apply(Final(rows), outputWeight, logits.Reshape(n, Config.VocabSize));
            Device.Synchronize();
            return logits;
        }
        catch
        {
            logits.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Runs each prompt (lengths may differ, each ≥ 1 token) from position 0 and returns the logits of its last token
    /// and a cache of <paramref name="capacity"/> positions per sequence (at least the longest prompt; 0 means the
    /// longest prompt), holding every prompt's keys and values.
    /// </summary>
    /// <exception cref="ArgumentException">No prompt, an empty prompt, an id out of range, or a capacity below the
    /// longest prompt.</exception>
    public (float[][] Logits, KvCache Cache) Prefill(IReadOnlyList<int[]> prompts, int capacity = 0)
    {
        ObjectDisposedException.ThrowIf(disposed, this);
        ArgumentNullException.ThrowIfNull(prompts);
        if (prompts.Count == 0)
            throw new ArgumentException("Argument 'prompts' is empty; expected at least one prompt.", nameof(prompts));
        CheckSequences(prompts, nameof(prompts));
        var longest = prompts.Max(p => p.Length);
        if (capacity == 0)
            capacity = longest;
        if (capacity < longest)
            throw new ArgumentException(
                $"Argument 'capacity' is {capacity}; expected at least the longest prompt ({longest}).", nameof(capacity));
        var cache = KvCache.Create(this, prompts.Count, capacity);
        try
        {
            var logits = new float[prompts.Count][];
            using var rows = new TransformerRows(this, longest);
            for (var b = 0; b < prompts.Count; b++)
            {
                var length = prompts[b].Length;
                rows.Ids.Slice(0, length + 1).CopyFromHost([.. prompts[b], 0]);
                var view = rows.First(length);
                Run(view, 1, length, length, cache.Sequence(b));
                logits[b] = LastLogits(view, length - 1, 1)[0];
                cache.Lengths[b] = length;
            }
            return (logits, cache);
        }
        catch
        {
            cache.Dispose();
            throw;
        }
    }

    /// <summary>
    /// One decoding step: token <paramref name="tokens"/>[b] enters sequence b at position cache.Lengths[b]; its key
    /// and value are appended to the cache, its query attends to every cached position; returns the next-token logits
    /// [B][V]. The work grows linearly with the positions held (the point of the comparison with RetNet). A full
    /// cache grows first (<see cref="KvCache.EnsureCapacity"/>).
    /// </summary>
    /// <exception cref="ArgumentException">The token count differs from the cache's batch, an id is out of range, or
    /// the cache belongs to another model.</exception>
    public float[][] Step(ReadOnlySpan<int> tokens, KvCache cache)
    {
        ObjectDisposedException.ThrowIf(disposed, this);
        ArgumentNullException.ThrowIfNull(cache);
        if (!ReferenceEquals(cache.Model, this))
            throw new ArgumentException("Argument 'cache' belongs to another model.", nameof(cache));
        var batch = cache.Batch;
        if (tokens.Length != batch)
            throw new ArgumentException(
                $"Argument 'tokens' has {tokens.Length} ids; expected one per sequence of the cache ({batch}).",
                nameof(tokens));
        CheckIds(tokens, nameof(tokens));
        cache.EnsureCapacity(cache.Lengths.Max() + 1);
        cache.PrepareStep();
        var rows = cache.StepRows();
        var input = cache.StepInput;
        tokens.CopyTo(input);
        cache.Lengths.CopyTo(input, batch);
        rows.Ids.Slice(0, input.Length).CopyFromHost(input);
        Run(rows, batch, 1, batch, cache.Step);
        var logits = LastLogits(rows, 0, batch);
        for (var b = 0; b < batch; b++)
            cache.Lengths[b]++;
        return logits;
    }

    /// <summary>The embedding, every block and nothing after: rows.X ends as the last block's output. Start
    /// positions sit in rows.Ids at <paramref name="startsOffset"/>. With a cache (one sequence's, for prefill; the
    /// whole batch, for a step) each layer appends its keys and values to it and attends through it.</summary>
    private void Run(TransformerRows rows, int batch, int seqLen, int startsOffset, KvCache.View? cache)
    {
        ScaledEmbedding.Launch(embedding, rows.Ids.Slice(0, rows.X.Dim(0)), Config.EmbedScale, rows.X);
        for (var i = 0; i < blocks.Length; i++)
            blocks[i].Forward(rows, batch, seqLen, startsOffset, cache, i);
    }

    private Tensor Final(TransformerRows rows)
    {
        RmsNorm.Forward(rows.X, finalNorm, (float)Config.LayerNormEps, rows.Normed);
        return rows.Normed;
    }

    private float[][] LastLogits(TransformerRows rows, int first, int count)
    {
        var normed = rows.Normed.Slice(0, count);
        RmsNorm.Forward(rows.X.Slice(first, count), finalNorm, (float)Config.LayerNormEps, normed);
        var logits = rows.Logits.Slice(0, count);
        Model.Linear.Apply(normed, outputWeight, logits);
        var flat = logits.ToHost();
        var vocab = Config.VocabSize;
        var result = new float[count][];
        for (var r = 0; r < count; r++)
            result[r] = flat.AsSpan(r * vocab, vocab).ToArray();
        return result;
    }

    private void CheckIds(ReadOnlySpan<int> ids, string argument) => TokenChecks.Ids(ids, Config.VocabSize, argument);

    private void CheckSequences(IReadOnlyList<int[]> sequences, string argument) =>
        TokenChecks.Sequences(sequences, Config.VocabSize, argument);

    /// <summary>Frees the weights. Caches of this model must be disposed separately.</summary>
    public void Dispose()
    {
        if (disposed)
            return;
        disposed = true;
        trainingWorkspace?.Dispose();
        computeWeights?.Dispose();
        foreach (var p in parameters.Values)
            p.Dispose();
        angles.Dispose();
        inverseAngles.Dispose();
    }

    /// <inheritdoc cref="RetNetModel.ComputeType"/>
    internal TensorDType ComputeType => computeWeights?.Type ?? WeightType;

    /// <inheritdoc cref="RetNetModel.UseComputeType"/>
    internal void UseComputeType(TensorDType type)
    {
        ObjectDisposedException.ThrowIf(disposed, this);
        Bind(ComputeWeights.Use(ref computeWeights, parameters, type));
    }

    /// <inheritdoc cref="RetNetModel.RefreshComputeWeights"/>
    internal void RefreshComputeWeights() => computeWeights?.Refresh();

    /// <inheritdoc cref="RetNetModel.ComputeWeightBytes"/>
    internal long ComputeWeightBytes => computeWeights?.Bytes ?? 0;
}
