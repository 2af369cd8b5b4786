using RetNet.Ilgpu.Devices;
using RetNet.Ilgpu.IO;
using RetNet.Ilgpu.Kernels.Gemm;
using RetNet.Ilgpu.Kernels.Normalization;
using RetNet.Ilgpu.Kernels.Rotation;
using RetNet.Ilgpu.Kernels.ScaledEmbedding;
using RetNet.Ilgpu.Retention;
using RetNet.Ilgpu.Tensors;

namespace RetNet.Ilgpu.Model;

/// <summary>Logits of the last token of each prompt and the state that continues every sequence.</summary>
/// <param name="Logits">One row of V logits per sequence.</param>
/// <param name="State">The decoding state after the prompts; the caller disposes it.</param>
public sealed record PrefillResult(float[][] Logits, DecodingState State);

/// <summary>
/// A RetNet language model for inference, in torchscale's layout (docs/MATH.md §5–8): scaled token embedding (with an
/// optional RMSNorm), pre- or post-norm blocks of multi-scale retention and a gated FFN (with deepnorm's residual
/// scale when configured), a final RMSNorm (pre-norm) and a tied or untied output projection.
/// The weights live on one device and are owned by the model. Three ways to run it: <see cref="Forward"/> over a
/// whole token batch in any retention form; <see cref="Prefill"/> then <see cref="Step"/> for decoding, where a step
/// costs the same at every position (the state is [B, H, Dk, Dv] per layer, whatever the length so far). Not
/// thread-safe, like its device.
/// </summary>
public sealed partial class RetNetModel : ILanguageModel
{
    private readonly Dictionary<string, Tensor> parameters;
    private readonly RetentionConstants constants;
    private RetNetBlock[] blocks = [];
    private Tensor embedding = null!;
    private Tensor? embeddingNorm;
    private Tensor? finalNorm;
    private Tensor outputWeight = null!;
    private ComputeWeights? computeWeights;
    private bool disposed;

    private RetNetModel(RetNetDevice device, RetNetConfig config, Dictionary<string, Tensor> parameters,
        RetentionConstants constants, IReadOnlyList<string> notices, TensorDType weightType)
    {
        Device = device;
        WeightType = weightType;
        Config = config;
        Notices = notices;
        this.parameters = parameters;
        this.constants = constants;
        Bind(name => parameters[name]);
    }

    /// <summary>Points the layers at the tensors <paramref name="weight"/> names: the parameters themselves, or
    /// mixed precision's compute copies.</summary>
    private void Bind(Func<string, Tensor> weight)
    {
        var config = Config;
        embedding = weight("embed_tokens.weight");
        embeddingNorm = config.LayerNormEmbedding ? weight("layernorm_embedding.weight") : null;
        finalNorm = config.NormalizeBefore ? weight("layer_norm.weight") : null;
        outputWeight = config.ShareInputOutputEmbed ? embedding : weight("output_projection.weight");
        blocks = new RetNetBlock[config.Layers];
        for (var i = 0; i < config.Layers; i++)
        {
            Tensor P(string name) => weight($"layers.{i}.{name}");
            var retention = new MultiScaleRetention(P("retention.q_proj.weight"), P("retention.k_proj.weight"),
                P("retention.v_proj.weight"), P("retention.g_proj.weight"), P("retention.out_proj.weight"), constants,
                $"layers.{i}.retention.");
            var ffn = new GatedFeedForward(P("ffn.fc1.weight"), P("ffn.gate.weight"), P("ffn.fc2.weight"),
                config.ActivationFn == "gelu", $"layers.{i}.ffn.");
            blocks[i] = new RetNetBlock(P("retention_layer_norm.weight"), retention, P("final_layer_norm.weight"), ffn,
                config, $"layers.{i}.");
        }
    }

    /// <summary>The device the weights live on.</summary>
    public RetNetDevice Device { get; }

    /// <summary>The model's shape (with the decays of the checkpoint's decay buffer when it had other ones).</summary>
    public RetNetConfig Config { get; }

    /// <summary>What loading had to adapt, in sentences for the user (e.g. decays taken from the checkpoint's
    /// buffer); empty when the weights matched the config as given.</summary>
    public IReadOnlyList<string> Notices { get; }

    /// <summary>The number of parameters (a tied output counted once).</summary>
    public long ParameterCount => parameters.Values.Sum(p => (long)p.Length);

    /// <summary>Bytes of the weights on the device, in their storage types.</summary>
    public long WeightBytes => parameters.Values.Sum(p => p.Bytes);

    /// <inheritdoc/>
    public TensorDType WeightType { get; }

    /// <inheritdoc/>
    public string Architecture => "retnet";

    /// <inheritdoc/>
    public int VocabSize => Config.VocabSize;

    /// <inheritdoc/>
    public string ConfigJson => Config.ToJson();

    /// <summary>The weights a model of <paramref name="config"/> holds (a tied output projection counted once).</summary>
    /// <exception cref="ArgumentException">The config is invalid.</exception>
    public static long ParameterCountOf(RetNetConfig config) =>
        WeightLayout.Expected(config).Sum(e => e.Shape.Aggregate(1L, (a, b) => a * b));

    /// <summary>Bytes of a decoding state for <paramref name="batch"/> sequences: layers · B · H · Dk · Dv · 4,
    /// whatever the position.</summary>
    public long StateBytes(int batch) =>
        4L * Config.Layers * batch * Config.RetentionHeads * Config.KeyHeadDim * Config.ValueHeadDim;

    /// <summary>A model with torchscale's initialisation (<see cref="WeightLayout.Initialize"/>), reproducible from
    /// <paramref name="seed"/>, its matrices stored as <paramref name="weightType"/>.</summary>
    /// <exception cref="ArgumentException">The config is invalid.</exception>
    public static RetNetModel Create(RetNetDevice device, RetNetConfig config, int seed = 0,
        TensorDType weightType = TensorDType.Float32) =>
        FromWeights(device, config, WeightLayout.Initialize(config, seed), weightType: weightType);

    /// <summary>
    /// A model from host weights with torchscale's names (an optional <c>decoder.</c> or <c>model.</c> prefix on every
    /// name) and, optionally, torchscale's buffers (<see cref="WeightLayout.Resolve"/>: a decay buffer that differs from
    /// the config's decays is used, and <see cref="Notices"/> says so). Everything is checked before any device memory
    /// is allocated; nothing stays allocated on failure.
    /// </summary>
    /// <param name="device">The device to put the weights on.</param>
    /// <param name="config">The model's shape.</param>
    /// <param name="weights">The weights by name.</param>
    /// <param name="allowNonFiniteWeights">Load weights holding NaN or ±∞ anyway (to inspect a broken checkpoint);
    /// by default they are refused with the tensor's name.</param>
    /// <param name="weightType">How the matrices are stored on the device (norm weights stay fp32); null keeps the
    /// checkpoint's type when all its matrices share one (a bf16 checkpoint is never widened), else fp32. A 16-bit
    /// model runs forward, prefill and decoding (GEMMs widen as they read and accumulate in fp32); training needs
    /// fp32 weights.</param>
    /// <exception cref="ArgumentException">The config is invalid, the angle buffer does not fit it, or a weight is not
    /// finite.</exception>
    /// <exception cref="CheckpointMismatchException">Tensors are missing, unexpected or wrongly shaped (all listed).</exception>
    public static RetNetModel FromWeights(RetNetDevice device, RetNetConfig config,
        IReadOnlyDictionary<string, HostTensor> weights, bool allowNonFiniteWeights = false,
        TensorDType? weightType = null) =>
        FromWeights(device, config, weights, allowNonFiniteWeights, [], weightType);

    private static RetNetModel FromWeights(RetNetDevice device, RetNetConfig config,
        IReadOnlyDictionary<string, HostTensor> weights, bool allowNonFiniteWeights, IReadOnlyList<string> folderNotices,
        TensorDType? weightType)
    {
        ArgumentNullException.ThrowIfNull(device);
        var resolved = WeightLayout.Resolve(config, weights);
        config = resolved.Config;
        var valid = resolved.Parameters;
        if (!allowNonFiniteWeights)
            HostTensor.RequireFinite(valid, WeightLayout.Expected(config).Select(e => e.Name), nameof(weights));
        var matrixType = WeightStorage.MatrixType(valid, WeightLayout.Expected(config).Select(e => e.Name), weightType);
        var parameters = new Dictionary<string, Tensor>();
        Tensor? angles = null, inverseAngles = null, table = null;
        try
        {
            foreach (var (name, _) in WeightLayout.Expected(config))
                parameters.Add(name, WeightStorage.Upload(valid[name], device, matrixType));
            var theta = ThetaShift.Angles(config.KeyHeadDim);
            angles = Tensor.FromHost(device, theta, theta.Length);
            inverseAngles = Tensor.FromHost(device, theta.Select(a => -a).ToArray(), theta.Length);
            var decay = config.Decay();
            table = decay.Upload(device);
            return new RetNetModel(device, config, parameters,
                new RetentionConstants(config, angles, inverseAngles, decay, table), [.. folderNotices, .. resolved.Notices],
                matrixType);
        }
        catch
        {
            foreach (var p in parameters.Values)
                p.Dispose();
            angles?.Dispose();
            inverseAngles?.Dispose();
            table?.Dispose();
            throw;
        }
    }

    /// <summary>The weights by torchscale's names, copied to the host (no output_projection.weight when tied).</summary>
    public IReadOnlyDictionary<string, HostTensor> ExportWeights()
    {
        ObjectDisposedException.ThrowIf(disposed, this);
        return WeightLayout.Expected(Config).ToDictionary(e => e.Name, e => HostTensor.From(parameters[e.Name]));
    }

    /// <summary>Writes <paramref name="folder"/>/model.safetensors (each weight in its storage type, the config embedded
    /// in its metadata) and
    /// config.json, each atomically; a kill between the two still leaves a folder that loads as one version
    /// (<see cref="ModelFolder"/>). The file holds what torchscale's state_dict holds, so torchscale's strict load
    /// accepts it: the parameters, a tied output projection under its own name too, and the two buffers.</summary>
    public void Save(string folder)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(folder);
        ObjectDisposedException.ThrowIf(disposed, this);
        Directory.CreateDirectory(folder);
        var tensors = new Dictionary<string, HostTensor>(ExportWeights());
        // PyTorch lists a tied output under both names; torchscale's strict load expects both.
        if (Config.ShareInputOutputEmbed)
            tensors.Add("output_projection.weight", tensors["embed_tokens.weight"]);
        foreach (var (name, buffer) in WeightLayout.Buffers(Config))
            tensors.Add(name, buffer);
        ModelFolder.Write(folder, Config.ToJson(), tensors, new Dictionary<string, string> { ["format"] = "pt" });
    }

    /// <summary>Loads a folder written by <see cref="Save"/> or converted from torchscale; <see cref="Notices"/> also
    /// says when the config saved with the weights was used instead of config.json (<see cref="ModelFolder.Read"/>).</summary>
    /// <exception cref="FileNotFoundException">config.json or model.safetensors is absent.</exception>
    /// <exception cref="ArgumentException">The config is invalid, or a weight is not finite (unless
    /// <paramref name="allowNonFiniteWeights"/>).</exception>
    /// <exception cref="CheckpointMismatchException">The tensors do not fit the config.</exception>
    public static RetNetModel Load(RetNetDevice device, string folder, bool allowNonFiniteWeights = false,
        TensorDType? weightType = null) =>
        FromFolder(device, ModelFolder.Read(folder), allowNonFiniteWeights, weightType);

    /// <summary>The model of a folder already read (see <see cref="Load"/>).</summary>
    internal static RetNetModel FromFolder(RetNetDevice device, ModelFolderContents contents, bool allowNonFiniteWeights,
        TensorDType? weightType)
    {
        RetNetConfig config;
        try
        {
            config = RetNetConfig.FromJson(contents.ConfigJson);
        }
        catch (ArgumentException e)
        {
            throw new ArgumentException($"{contents.ConfigOrigin}: {e.Message}", nameof(contents), e);
        }
        return FromWeights(device, config, contents.Weights.Tensors, allowNonFiniteWeights, contents.Notices, weightType);
    }

    /// <summary>
    /// Logits [B, T, V] of every position of <paramref name="tokens"/> [B, T], each sequence starting at position 0,
    /// retention in the form <paramref name="mode"/> asks for. The caller disposes the result.
    /// </summary>
    /// <exception cref="ArgumentException">B or T is 0, an id is outside [0, V), or the chunk size is &lt; 1.</exception>
    public Tensor Forward(int[,] tokens, ForwardMode mode)
    {
        ObjectDisposedException.ThrowIf(disposed, this);
        ArgumentNullException.ThrowIfNull(tokens);
        int batch = tokens.GetLength(0), seqLen = tokens.GetLength(1);
        if (batch == 0 || seqLen == 0)
            throw new ArgumentException($"Argument 'tokens' is [{batch}, {seqLen}]; expected at least one token.",
                nameof(tokens));
        CheckMode(mode);
        ShapeCheck.FitsOneTensor((long)batch * seqLen, Config.VocabSize, "logits [B·T, V]", nameof(tokens));
        ShapeCheck.FitsOneTensor((long)batch * seqLen, Math.Max(Config.FfnEmbedDim, Config.ValueEmbedDim),
            "activations [B·T, widest]", nameof(tokens));
        var n = batch * seqLen;
        var ids = new int[n + batch];
        Buffer.BlockCopy(tokens, 0, ids, 0, n * sizeof(int));
        CheckIds(ids.AsSpan(0, n), nameof(tokens));
        var logits = Tensor.Uninitialized(Device, batch, seqLen, Config.VocabSize);
        var states = new List<Tensor>();
        try
        {
            using var workspace = new ModelWorkspace(this, n, batch, 0);
            if (mode.Form == RetentionForm.Recurrent)
                for (var i = 0; i < blocks.Length; i++)
                    states.Add(Tensor.Zeros(Device, StateShape(batch)));
            workspace.Ids.Slice(0, ids.Length).CopyFromHost(ids);
            var rows = workspace.Rows(n);
            Embed(rows, workspace.Ids, batch, seqLen, n);
            var block = rows.Block(Config.NormalizeBefore);
            for (var i = 0; i < blocks.Length; i++)
                blocks[i].Forward(block, rows.DecaySums, batch, seqLen, workspace.Ids, n, mode,
                    states.Count > 0 ? states[i] : null);
            Linear.Apply(FinalNorm(rows.X, rows.Normed), outputWeight, logits.Reshape(n, Config.VocabSize));
            Device.Synchronize();
            return logits;
        }
        catch
        {
            logits.Dispose();
            throw;
        }
        finally
        {
            foreach (var s in states)
                s.Dispose();
        }
    }

    /// <summary>
    /// Runs each prompt (lengths may differ; each ≥ 1 token) through the model chunkwise and returns the logits of its
    /// last token and a decoding state holding every sequence's retention states and position. Sequences are processed
    /// one after another, each writing its own rows of the batch state: a batch of prompts gives exactly what each
    /// prompt gives alone.
    /// </summary>
    /// <exception cref="ArgumentException">No prompt, an empty prompt, an id outside [0, V), or a chunk size &lt; 1.</exception>
    public PrefillResult Prefill(IReadOnlyList<int[]> prompts, int chunkSize = ForwardMode.DefaultChunkSize)
    {
        ObjectDisposedException.ThrowIf(disposed, this);
        ArgumentNullException.ThrowIfNull(prompts);
        if (prompts.Count == 0)
            throw new ArgumentException("Argument 'prompts' is empty; expected at least one prompt.", nameof(prompts));
        CheckSequences(prompts, nameof(prompts));
        CheckMode(ForwardMode.Chunkwise(chunkSize));
        var state = DecodingState.Zeros(this, prompts.Count);
        try
        {
            return new PrefillResult(Extend(state, prompts, chunkSize), state);
        }
        catch
        {
            state.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Continues every sequence of <paramref name="state"/> with its own further tokens (lengths may differ; each
    /// ≥ 1), chunkwise, at its absolute positions; returns each sequence's last-token logits. A prefill split into
    /// parts gives the same state as one prefill of the whole.
    /// </summary>
    /// <exception cref="ArgumentException">The count differs from the state's batch, a sequence is empty, an id is out
    /// of range, the state belongs to another model, or the chunk size is &lt; 1.</exception>
    public float[][] Extend(DecodingState state, IReadOnlyList<int[]> tokens,
        int chunkSize = ForwardMode.DefaultChunkSize)
    {
        ObjectDisposedException.ThrowIf(disposed, this);
        CheckState(state);
        ArgumentNullException.ThrowIfNull(tokens);
        if (tokens.Count != state.Batch)
            throw new ArgumentException(
                $"Argument 'tokens' has {tokens.Count} sequences; expected one per sequence of the state ({state.Batch}).",
                nameof(tokens));
        CheckSequences(tokens, nameof(tokens));
        var mode = ForwardMode.Chunkwise(chunkSize);
        CheckMode(mode);
        var longest = tokens.Max(t => t.Length);
        ShapeCheck.FitsOneTensor(longest, Math.Max(Config.FfnEmbedDim, Config.ValueEmbedDim), "activations [T, widest]",
            nameof(tokens));
        var result = new float[tokens.Count][];
        using var workspace = new ModelWorkspace(this, longest, 1, 1);
        for (var b = 0; b < tokens.Count; b++)
        {
            var length = tokens[b].Length;
            var ids = new int[length + 1];
            tokens[b].CopyTo(ids, 0);
            ids[length] = state.PositionArray[b];
            workspace.Ids.Slice(0, ids.Length).CopyFromHost(ids);
            var rows = workspace.Rows(length);
            Embed(rows, workspace.Ids, 1, length, length);
            var block = rows.Block(Config.NormalizeBefore);
            for (var i = 0; i < blocks.Length; i++)
                blocks[i].Forward(block, rows.DecaySums, 1, length, workspace.Ids, length, mode,
                    state.LayerStates[i].Slice(b, 1));
            result[b] = LastLogits(rows.X.Slice(length - 1, 1), rows.Normed.Slice(0, 1), workspace.Logits)[0];
            state.PositionArray[b] += length;
        }
        return result;
    }

    /// <summary>
    /// One decoding step: feeds token <paramref name="tokens"/>[b] to sequence b at its current position, advances the
    /// state in place and returns the next-token logits [B][V]. O(1) in the position: the recurrent form on the
    /// state, with buffers kept in the state, one upload of the tokens and positions and one read of the logits.
    /// </summary>
    /// <exception cref="ArgumentException">The token count differs from the state's batch, an id is out of range, or
    /// the state belongs to another model.</exception>
    public float[][] Step(ReadOnlySpan<int> tokens, DecodingState state)
    {
        ObjectDisposedException.ThrowIf(disposed, this);
        CheckState(state);
        var batch = state.Batch;
        if (tokens.Length != batch)
            throw new ArgumentException(
                $"Argument 'tokens' has {tokens.Length} ids; expected one per sequence of the state ({batch}).",
                nameof(tokens));
        CheckIds(tokens, nameof(tokens));
        var workspace = state.StepWorkspace();
        var input = state.StepInput;
        tokens.CopyTo(input);
        state.PositionArray.CopyTo(input, batch);
        workspace.Ids.Slice(0, input.Length).CopyFromHost(input);
        var rows = workspace.Rows(batch);
        Embed(rows, workspace.Ids, batch, 1, batch);
        var block = rows.Block(Config.NormalizeBefore);
        for (var i = 0; i < blocks.Length; i++)
            blocks[i].Forward(block, rows.DecaySums, batch, 1, workspace.Ids, batch, ForwardMode.Recurrent,
                state.LayerStates[i]);
        var logits = LastLogits(rows.X, rows.Normed, workspace.Logits);
        for (var b = 0; b < batch; b++)
            state.PositionArray[b]++;
        return logits;
    }

    /// <summary>The shape of one layer's retention state for <paramref name="batch"/> sequences: [B, H, Dk, Dv].</summary>
    public int[] StateShape(int batch) => [batch, Config.RetentionHeads, Config.KeyHeadDim, Config.ValueHeadDim];

    /// <summary>
    /// The start of every pass over <paramref name="batch"/> sequences of <paramref name="seqLen"/> tokens whose ids
    /// sit at the start of <paramref name="ids"/> and start positions at <paramref name="startsOffset"/>: rows.X = the
    /// scaled embeddings (then RMSNorm with layernorm_embedding), and the decay sums of every row and head, which
    /// every layer's head norm reads.
    /// </summary>
    private void Embed(ModelRows rows, IndexTensor ids, int batch, int seqLen, int startsOffset)
    {
        ScaledEmbedding.Launch(embedding, ids.Slice(0, rows.Count), Config.EmbedScale, rows.X);
        if (embeddingNorm is not null)
            RmsNorm.Forward(rows.X, embeddingNorm, (float)Config.LayerNormEps, rows.X);
        DecayNormalization.Launch(ids.Slice(startsOffset, batch), constants.DecayTable, seqLen, rows.DecaySums);
    }

    /// <summary>The final layer_norm of x into <paramref name="normed"/> (pre-norm); post-norm blocks end normalised,
    /// so x itself.</summary>
    private Tensor FinalNorm(Tensor x, Tensor normed)
    {
        if (finalNorm is null)
            return x;
        RmsNorm.Forward(x, finalNorm, (float)Config.LayerNormEps, normed);
        return normed;
    }

    private float[][] LastLogits(Tensor x, Tensor normed, Tensor logitsBuffer)
    {
        var rows = x.Dim(0);
        var logits = logitsBuffer.Slice(0, rows);
        Linear.Apply(FinalNorm(x, normed), outputWeight, logits);
        var flat = logits.ToHost();
        var vocab = Config.VocabSize;
        var result = new float[rows][];
        for (var r = 0; r < rows; r++)
            result[r] = flat.AsSpan(r * vocab, vocab).ToArray();
        return result;
    }

    private void CheckIds(ReadOnlySpan<int> ids, string argument) => TokenChecks.Ids(ids, Config.VocabSize, argument);

    private void CheckSequences(IReadOnlyList<int[]> sequences, string argument) =>
        TokenChecks.Sequences(sequences, Config.VocabSize, argument);

    private static void CheckMode(ForwardMode mode)
    {
        if (!Enum.IsDefined(mode.Form))
            throw new ArgumentException($"Argument 'mode' has form {mode.Form}; expected parallel, chunkwise or recurrent.",
                nameof(mode));
        if (mode.Form == RetentionForm.Chunkwise && mode.ChunkSize < 1)
            throw new ArgumentException($"Argument 'mode' has chunk size {mode.ChunkSize}; expected ≥ 1.", nameof(mode));
    }

    private void CheckState(DecodingState state)
    {
        ArgumentNullException.ThrowIfNull(state);
        if (!ReferenceEquals(state.Model, this))
            throw new ArgumentException("Argument 'state' belongs to another model.", nameof(state));
    }

    /// <summary>Frees the weights. States of this model must be disposed separately.</summary>
    public void Dispose()
    {
        if (disposed)
            return;
        disposed = true;
        trainingWorkspace?.Dispose();
        computeWeights?.Dispose();
        foreach (var p in parameters.Values)
            p.Dispose();
        constants.Dispose();
    }

    /// <summary>The type the passes read the weight matrices in: <see cref="WeightType"/>, or the type of mixed
    /// precision's compute copies while <see cref="UseComputeType"/> has set one.</summary>
    internal TensorDType ComputeType => computeWeights?.Type ?? WeightType;

    /// <summary>
    /// Mixed precision: from now on the passes read 16-bit copies of the fp32 matrices (<paramref name="type"/>), or the
    /// matrices themselves again for <see cref="TensorDType.Float32"/>. Call <see cref="RefreshComputeWeights"/> after
    /// every update of the parameters.
    /// </summary>
    /// <exception cref="ArgumentException">The model's own weights are not fp32.</exception>
    internal void UseComputeType(TensorDType type)
    {
        ObjectDisposedException.ThrowIf(disposed, this);
        Bind(ComputeWeights.Use(ref computeWeights, parameters, type));
    }

    /// <summary>Rounds the updated fp32 parameters into the compute copies (nothing without them).</summary>
    internal void RefreshComputeWeights() => computeWeights?.Refresh();

    /// <summary>Bytes of the compute copies (0 without them).</summary>
    internal long ComputeWeightBytes => computeWeights?.Bytes ?? 0;
}
