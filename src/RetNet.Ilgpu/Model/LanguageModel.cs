using RetNet.Ilgpu.Devices;
using RetNet.Ilgpu.IO;
using RetNet.Ilgpu.Kernels.CrossEntropy;
using RetNet.Ilgpu.Kernels.Elementwise;
using RetNet.Ilgpu.Kernels.Embedding;
using RetNet.Ilgpu.Kernels.Normalization;
using RetNet.Ilgpu.Kernels.Reductions;
using RetNet.Ilgpu.Kernels.ScaledEmbedding;
using RetNet.Ilgpu.Retention;
using RetNet.Ilgpu.Tensors;

namespace RetNet.Ilgpu.Model;

/// <summary>
/// The library's language model: one decoder shell (docs/ARCHITECTURE.md) whose blocks differ between architectures
/// only in their token mixer. A <see cref="RetNetConfig"/> builds torchscale's RetNet (multi-scale retention, a state
/// of fixed size per sequence), a <see cref="TransformerConfig"/> the baseline Transformer (causal softmax attention,
/// a KV cache). Around the mixer everything is shared: the scaled token embedding (with an optional RMSNorm), pre- or
/// post-norm blocks with deepnorm's residual scale, the gated FFN, a final RMSNorm and a tied or untied output
/// projection (docs/MATH.md §5–8).
/// </summary>
/// <remarks>
/// Every pass runs the same forward path over the buffers of one <see cref="ActivationPlan"/>: <see cref="Forward"/>,
/// <see cref="Prefill"/>, <see cref="Extend"/> and <see cref="Step(IReadOnlyList{int}, DecodingState)"/> keep
/// nothing; <see cref="ForwardBackward"/> keeps what its backward pass reads. The weights live on one device and are owned by the model. A model, like its
/// device, is used from one thread at a time: a call from a second thread while one runs throws
/// <see cref="InvalidOperationException"/>.
/// </remarks>
public sealed class LanguageModel : ILanguageModel
{
    private readonly Dictionary<string, Tensor> parameters;
    private DecoderBlock[] blocks = [];
    private Tensor embedding = null!;
    private Tensor? embeddingNorm;
    private Tensor? finalNorm;
    private Tensor outputWeight = null!;
    private ComputeWeights? computeWeights;
    private DecodeWeights? decodeWeights;
    private ModelWorkspace? trainingWorkspace;
    private ModelWorkspace? promptWorkspace;
    private IndexTensor? packing;
    private bool disposed;

    private LanguageModel(RetNetDevice device, ModelConfig config, Dictionary<string, Tensor> parameters,
        MixerKind mixers, IReadOnlyList<string> notices, TensorDType weightType)
    {
        Device = device;
        Config = config;
        Spec = config.Spec();
        Mixers = mixers;
        Notices = notices;
        WeightType = weightType;
        this.parameters = parameters;
        Bind(name => parameters[name]);
    }

    /// <summary>Points the layers at the tensors <paramref name="weight"/> names: the parameters themselves, or mixed
    /// precision's compute copies; the decoding step's k-major copies start afresh for them.</summary>
    private void Bind(Func<string, Tensor> weight)
    {
        decodeWeights?.Dispose();
        decodeWeights = DecodeWeights.Create(Device, parameters.Values.Where(p => p.Rank >= 2));
        var names = Spec.Names;
        var mixer = Spec.Mixer.Name;
        embedding = weight(names.Embedding);
        embeddingNorm = Spec.EmbeddingNorm ? weight(names.EmbeddingNorm) : null;
        finalNorm = Spec.PreNorm ? weight(names.FinalNorm) : null;
        outputWeight = Spec.TiedOutput ? embedding : weight(names.Output);
        blocks = new DecoderBlock[Spec.Layers];
        for (var i = 0; i < blocks.Length; i++)
        {
            var mixerPrefix = names.Mixer(i, mixer);
            var ffnPrefix = names.FeedForward(i);
            var ffn = new GatedFeedForward(weight(ffnPrefix + names.Fc1), weight(ffnPrefix + names.Gate),
                weight(ffnPrefix + names.Fc2), Spec.Gelu, ffnPrefix + names.Fc1, ffnPrefix + names.Gate,
                ffnPrefix + names.Fc2);
            blocks[i] = new DecoderBlock(weight(names.MixerNorm(i, mixer)),
                Mixers.Bind(suffix => weight(mixerPrefix + suffix), mixerPrefix), weight(names.FeedForwardNorm(i)), ffn,
                Spec, names.MixerNorm(i, mixer), names.FeedForwardNorm(i));
        }
    }

    /// <inheritdoc/>
    public RetNetDevice Device { get; }

    /// <inheritdoc/>
    public ModelConfig Config { get; }

    /// <inheritdoc/>
    public string Architecture => Config.Architecture;

    /// <inheritdoc/>
    public int VocabSize => Spec.VocabSize;

    /// <inheritdoc/>
    public IReadOnlyList<string> Notices { get; }

    /// <inheritdoc/>
    public TensorDType WeightType { get; }

    /// <inheritdoc/>
    public TensorDType ComputeType => computeWeights?.Type ?? WeightType;

    /// <inheritdoc/>
    public long ParameterCount => parameters.Values.Sum(p => (long)p.Length);

    /// <inheritdoc/>
    public long WeightBytes => parameters.Values.Sum(p => p.Bytes);

    /// <inheritdoc/>
    public IReadOnlyDictionary<string, Tensor> Parameters
    {
        get
        {
            ObjectDisposedException.ThrowIf(disposed, this);
            return parameters;
        }
    }

    internal DecoderSpec Spec { get; }

    internal MixerKind Mixers { get; }

    internal int Layers => Spec.Layers;

    /// <summary>Bytes of mixed precision's compute copies (0 without them).</summary>
    internal long ComputeWeightBytes => computeWeights?.Bytes ?? 0;

    /// <summary>The decoding step's k-major copies of the matrices, or null where the step reads the matrices
    /// themselves (<see cref="DecodeWeights.Create"/>).</summary>
    internal DecodeWeights? DecodeWeights => decodeWeights;

    /// <summary>A model of <paramref name="config"/> with its architecture's initialisation
    /// (<see cref="ModelConfig.InitialWeights"/>), reproducible from <paramref name="seed"/>, its matrices stored as
    /// <paramref name="weightType"/>.</summary>
    /// <exception cref="ArgumentException">The config is invalid.</exception>
    public static LanguageModel Create(RetNetDevice device, ModelConfig config, int seed = 0,
        TensorDType weightType = TensorDType.Float32)
    {
        ArgumentNullException.ThrowIfNull(config);
        return FromWeights(device, config, config.InitialWeights(seed), weightType: weightType);
    }

    /// <summary>
    /// A model from host weights with the checkpoint's names (for RetNet, torchscale's: an optional <c>decoder.</c> or
    /// <c>model.</c> prefix on every name, and torchscale's buffers, whose decays are used when they differ from the
    /// config's, which <see cref="Notices"/> then says). Everything is checked before any device memory is allocated;
    /// nothing stays allocated on failure.
    /// </summary>
    /// <param name="device">The device to put the weights on.</param>
    /// <param name="config">The model's shape.</param>
    /// <param name="weights">The weights by name.</param>
    /// <param name="allowNonFiniteWeights">Load weights holding NaN or ±∞ anyway (to inspect a broken checkpoint);
    /// by default they are refused with the tensor's name.</param>
    /// <param name="weightType">How the matrices are stored on the device (norm weights stay fp32); null keeps the
    /// checkpoint's type when all its matrices share one (a bf16 checkpoint is never widened), else fp32. A 16-bit
    /// model runs forward, prefill and decoding (GEMMs widen as they read and accumulate in fp32); training updates
    /// fp32 weights (mixed precision: <see cref="UseComputeType"/>).</param>
    /// <exception cref="ArgumentException">The config is invalid, a buffer contradicts it, or a weight is not
    /// finite.</exception>
    /// <exception cref="CheckpointMismatchException">Tensors are missing, unexpected or wrongly shaped (all listed).</exception>
    public static LanguageModel FromWeights(RetNetDevice device, ModelConfig config,
        IReadOnlyDictionary<string, HostTensor> weights, bool allowNonFiniteWeights = false,
        TensorDType? weightType = null) =>
        FromWeights(device, config, weights, allowNonFiniteWeights, [], weightType);

    private static LanguageModel FromWeights(RetNetDevice device, ModelConfig config,
        IReadOnlyDictionary<string, HostTensor> weights, bool allowNonFiniteWeights, IReadOnlyList<string> folderNotices,
        TensorDType? weightType)
    {
        ArgumentNullException.ThrowIfNull(device);
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(weights);
        var resolved = config.Resolve(weights);
        config = resolved.Config;
        var names = config.ExpectedWeights().Select(e => e.Name).ToList();
        if (!allowNonFiniteWeights)
            HostTensor.RequireFinite(resolved.Parameters, names, nameof(weights));
        var matrixType = WeightStorage.MatrixType(resolved.Parameters, names, weightType);
        var parameters = new Dictionary<string, Tensor>();
        MixerKind? mixers = null;
        try
        {
            foreach (var name in names)
                parameters.Add(name, WeightStorage.Upload(resolved.Parameters[name], device, matrixType));
            mixers = config.Spec().Mixer.Open(device);
            return new LanguageModel(device, config, parameters, mixers, [.. folderNotices, .. resolved.Notices],
                matrixType);
        }
        catch
        {
            foreach (var p in parameters.Values)
                p.Dispose();
            mixers?.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Loads a model folder (config.json beside model.safetensors) of either architecture: a Transformer when its
    /// config says <c>"model_type": "transformer"</c>, else a torchscale RetNet. <see cref="Notices"/> says when the
    /// config saved with the weights was used instead of config.json (<see cref="ModelFolder.Read"/>).
    /// </summary>
    /// <exception cref="FileNotFoundException">config.json or model.safetensors is absent.</exception>
    /// <exception cref="ArgumentException">The config is invalid, or a weight is not finite (unless
    /// <paramref name="allowNonFiniteWeights"/>).</exception>
    /// <exception cref="CheckpointMismatchException">The tensors do not fit the config.</exception>
    /// <param name="device">The device to put the weights on.</param>
    /// <param name="folder">The model folder.</param>
    /// <param name="allowNonFiniteWeights">Load weights holding NaN or ±∞ anyway.</param>
    /// <param name="weightType">How the matrices are stored (see <see cref="FromWeights(RetNetDevice, ModelConfig,
    /// IReadOnlyDictionary{string, HostTensor}, bool, TensorDType?)"/>).</param>
    /// <param name="mapWeights">For inference: memory-map model.safetensors (read-only) instead of reading it. On
    /// ILGPU's CPU accelerator every weight already stored in the type the model keeps it in is then read in place by
    /// the operators (no copy: resident memory is the file's pages plus the state), and the weights are read-only, so
    /// training such a model throws; elsewhere each tensor is uploaded once, straight from the mapped bytes. The file
    /// stays mapped until the model is disposed.</param>
    public static LanguageModel Load(RetNetDevice device, string folder, bool allowNonFiniteWeights = false,
        TensorDType? weightType = null, bool mapWeights = false)
    {
        var contents = ModelFolder.Read(folder, mapWeights);
        using var mapping = contents.Weights.Mapping;
        ModelConfig config;
        try
        {
            config = ModelConfig.FromJson(contents.ConfigJson);
        }
        catch (ArgumentException e)
        {
            throw new ArgumentException($"{contents.ConfigOrigin}: {e.Message}", nameof(folder), e);
        }
        return FromWeights(device, config, contents.Weights.Tensors, allowNonFiniteWeights, contents.Notices,
            weightType);
    }

    /// <inheritdoc/>
    public IReadOnlyDictionary<string, HostTensor> ExportWeights()
    {
        using var _ = Enter();
        return Config.ExpectedWeights().ToDictionary(e => e.Name, e => HostTensor.From(parameters[e.Name]));
    }

    /// <inheritdoc/>
    public void Save(string folder)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(folder);
        using var _ = Enter();
        ModelFolder.Save(folder, Config.ForSave(WeightType), Config.ForSave(ExportWeights(), WeightType));
    }

    /// <inheritdoc/>
    public DecodingState CreateState(int batch, int capacity = 0)
    {
        using var _ = Enter();
        ArgumentOutOfRangeException.ThrowIfNegative(capacity);
        return DecodingState.Zeros(this, batch, capacity == 0 ? AttentionKind.InitialCapacity : capacity);
    }

    /// <inheritdoc/>
    public ModelGradients CreateGradients()
    {
        using var _ = Enter();
        return new ModelGradients(this);
    }

    /// <inheritdoc/>
    public Tensor Forward(int[,] tokens, ForwardMode? mode = null)
    {
        using var _ = Enter();
        ArgumentNullException.ThrowIfNull(tokens);
        var form = CheckMode(mode ?? ForwardMode.Parallel);
        int batch = tokens.GetLength(0), seqLen = tokens.GetLength(1);
        if (batch == 0 || seqLen == 0)
            throw new ArgumentException($"Argument 'tokens' is [{batch}, {seqLen}]; expected at least one token.",
                nameof(tokens));
        ShapeCheck.FitsOneTensor((long)batch * seqLen, Spec.VocabSize, "logits [B·T, V]", nameof(tokens));
        ShapeCheck.FitsOneTensor((long)batch * seqLen, Spec.WidestRow, "activations [B·T, widest]", nameof(tokens));
        var n = batch * seqLen;
        var ids = new int[n + batch];
        Buffer.BlockCopy(tokens, 0, ids, 0, n * sizeof(int));
        TokenChecks.Ids(ids.AsSpan(0, n), Spec.VocabSize, nameof(tokens));
        var logits = Tensor.Uninitialized(Device, batch, seqLen, Spec.VocabSize);
        try
        {
            using var w = ModelWorkspace.ForInference(this, n, batch, 0);
            using var state = Mixers.NeedsState(form) ? DecodingState.Zeros(this, batch, 0) : null;
            var p = w.Rows(n);
            var pass = Upload(w, p, ids, batch, seqLen, ends: null, form);
            RunBlocks(p, pass, ActivationPlan.KeepNothing, state, 0);
            Linear.Apply(FinalNorm(p.Features, p.FinalNormed), outputWeight, logits.Reshape(n, Spec.VocabSize));
            Device.Synchronize();
            if (!float.IsFinite(Reductions.MaxAbs(logits)))
                throw NonFinite(tokens, form, "the logits of the pass");
            return logits;
        }
        catch
        {
            logits.Dispose();
            throw;
        }
    }

    /// <inheritdoc/>
    public PrefillResult Prefill(IReadOnlyList<IReadOnlyList<int>> prompts, int chunkSize = ForwardMode.DefaultChunkSize)
    {
        using var _ = Enter();
        ArgumentNullException.ThrowIfNull(prompts);
        if (prompts.Count == 0)
            throw new ArgumentException("Argument 'prompts' is empty; expected at least one prompt.", nameof(prompts));
        TokenChecks.Sequences(prompts, Spec.VocabSize, nameof(prompts));
        CheckMode(ForwardMode.Chunkwise(chunkSize));
        var state = DecodingState.Zeros(this, prompts.Count, prompts.Max(p => p.Count));
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

    /// <inheritdoc/>
    public float[][] Extend(DecodingState state, IReadOnlyList<IReadOnlyList<int>> tokens,
        int chunkSize = ForwardMode.DefaultChunkSize)
    {
        using var _ = Enter();
        CheckState(state);
        ArgumentNullException.ThrowIfNull(tokens);
        if (tokens.Count != state.Batch)
            throw new ArgumentException(
                $"Argument 'tokens' has {tokens.Count} sequences; expected one per sequence of the state ({state.Batch}).",
                nameof(tokens));
        TokenChecks.Sequences(tokens, Spec.VocabSize, nameof(tokens));
        var mode = CheckMode(ForwardMode.Chunkwise(chunkSize));
        var longest = tokens.Max(t => t.Count);
        ShapeCheck.FitsOneTensor(longest, Spec.WidestRow, "activations [T, widest]", nameof(tokens));
        var result = new float[tokens.Count][];
        var w = PromptWorkspaceFor(longest);
        try
        {
            ExtendEach(state, tokens, chunkSize, mode, w, result);
        }
        finally
        {
            if (!ReferenceEquals(w, promptWorkspace))
                w.Dispose();
        }
        return result;
    }

    private void ExtendEach(DecodingState state, IReadOnlyList<IReadOnlyList<int>> tokens, int chunkSize,
        ForwardMode mode, ModelWorkspace w, float[][] result)
    {
        for (var b = 0; b < tokens.Count; b++)
        {
            var sequence = tokens[b];
            var position = state.PositionArray[b];
            state.Grow(position + sequence.Count);
            if (position == 0 || Mixers.ContinuesInChunks)
            {
                var ids = new int[sequence.Count + 1];
                for (var t = 0; t < sequence.Count; t++)
                    ids[t] = sequence[t];
                ids[^1] = position;
                var p = w.Rows(sequence.Count);
                var pass = Upload(w, p, ids, 1, sequence.Count, ends: null, mode, decoding: true);
                RunBlocks(p, pass, ActivationPlan.KeepNothing, state, b);
                result[b] = LastLogits(p.Features.Slice(sequence.Count - 1, 1), p.FinalNormed?.Slice(0, 1),
                    p.Logits!)[0];
            }
            else
            {
                // A cache without a chunk kernel continues token by token, each a decoding step of this sequence.
                for (var t = 0; t < sequence.Count; t++)
                {
                    var p = w.Rows(1);
                    var pass = Upload(w, p, [sequence[t], position + t, position + t + 1], 1, 1, ends: 1,
                        ForwardMode.Recurrent);
                    RunBlocks(p, pass, ActivationPlan.KeepNothing, state, b);
                    if (t == sequence.Count - 1)
                        result[b] = LastLogits(p.Features, p.FinalNormed, p.Logits!)[0];
                }
            }
            state.PositionArray[b] += sequence.Count;
            if (!FiniteValues.All(result[b]))
                throw position == 0
                    ? NonFinite(Rows(sequence), ForwardMode.Chunkwise(chunkSize), $"the last logits of prompt {b}")
                    : new NonFiniteValuesException(
                        $"The logits of sequence {b} after position {state.PositionArray[b] - 1} are not finite; the " +
                        "decoding state holds non-finite values from here on.", null, b);
        }
    }

    /// <inheritdoc/>
    public float[][] Step(IReadOnlyList<int> tokens, DecodingState state)
    {
        using var _ = Enter();
        var flat = new float[(tokens?.Count ?? 0) * Spec.VocabSize];
        StepInto(tokens!, state, flat);
        var vocab = Spec.VocabSize;
        var result = new float[flat.Length / vocab][];
        for (var b = 0; b < result.Length; b++)
            result[b] = flat.AsSpan(b * vocab, vocab).ToArray();
        return result;
    }

    /// <inheritdoc/>
    public void Step(IReadOnlyList<int> tokens, DecodingState state, Span<float> logits)
    {
        using var _ = Enter();
        StepInto(tokens, state, logits);
    }

    private void StepInto(IReadOnlyList<int> tokens, DecodingState state, Span<float> logits)
    {
        CheckState(state);
        ArgumentNullException.ThrowIfNull(tokens);
        var batch = state.Batch;
        if (tokens.Count != batch)
            throw new ArgumentException(
                $"Argument 'tokens' has {tokens.Count} ids; expected one per sequence of the state ({batch}).",
                nameof(tokens));
        var vocab = Spec.VocabSize;
        if (logits.Length != batch * vocab)
            throw new ArgumentException(
                $"Argument 'logits' has {logits.Length} elements; expected {batch} sequences × {vocab} ids = " +
                $"{batch * vocab}.", nameof(logits));
        var w = state.StepWorkspace();
        var input = w.StepInput;
        var positions = state.PositionArray;
        for (var b = 0; b < batch; b++)
        {
            input[b] = tokens[b];
            input[batch + b] = positions[b];
            input[2 * batch + b] = positions[b] + 1;
        }
        TokenChecks.Ids(input.AsSpan(0, batch), Spec.VocabSize, nameof(tokens));
        state.Grow(positions.Max() + 1);
        var p = w.Rows(batch);
        var pass = Upload(w, p, input, batch, 1, ends: batch, ForwardMode.Recurrent);
        RunBlocks(p, pass, ActivationPlan.KeepNothing, state, 0);
        OutputLogits(p.Features, p.FinalNormed, p.Logits!).CopyToHost(logits);
        for (var b = 0; b < batch; b++)
        {
            positions[b]++;
            if (!FiniteValues.All(logits.Slice(b * vocab, vocab)))
                throw new NonFiniteValuesException(
                    $"The logits of sequence {b} at position {positions[b] - 1} are not finite; the decoding state " +
                    "holds non-finite values from here on.", null, b);
        }
    }

    /// <inheritdoc/>
    public float ForwardBackward(int[,] windows, ModelGradients gradients, ForwardMode? mode = null,
        float gradientScale = 1f, ActivationPlan keep = ActivationPlan.KeepEverything,
        IReadOnlyList<int>? cuSeqlens = null)
    {
        using var _ = Enter();
        ArgumentNullException.ThrowIfNull(windows);
        ArgumentNullException.ThrowIfNull(gradients);
        if (!ReferenceEquals(gradients.Model, this))
            throw new ArgumentException("Argument 'gradients' belongs to another model.", nameof(gradients));
        var form = CheckMode(mode ?? ForwardMode.Chunkwise());
        if (form.Form == RetentionForm.Recurrent)
            throw new ArgumentException(
                "Argument 'mode' is recurrent; expected parallel or chunkwise (the recurrent form is for decoding and " +
                "has no backward).", nameof(mode));
        if (keep is not (ActivationPlan.KeepEverything or ActivationPlan.KeepBlockInputs))
            throw new ArgumentException(
                $"Argument 'keep' is {keep}; expected KeepEverything or KeepBlockInputs (a backward pass reads what the " +
                "forward pass kept).", nameof(keep));
        if (!float.IsFinite(gradientScale))
            throw new ArgumentOutOfRangeException(nameof(gradientScale), gradientScale, "Expected a finite scale.");
        var (inputs, targets, batch, seqLen) = TokenChecks.Windows(windows, Spec.VocabSize, Spec.WidestRow,
            nameof(windows));
        var packed = PackedBounds(cuSeqlens, batch, seqLen);
        var w = TrainingWorkspaceFor(batch, seqLen, keep);
        var p = w.Rows(batch * seqLen);
        w.Targets!.CopyFromHost(targets);
        var pass = Upload(w, p, inputs, batch, seqLen, ends: null, form, Documents(packed));
        RunBlocks(p, pass, keep, state: null, 0);
        var features = FinalNorm(p.Features, p.FinalNormed, p.FinalRstd);
        Linear.Apply(features, outputWeight, p.Logits!);
        CrossEntropy.ForwardBackward(p.Logits!, w.Targets, p.Logits!, w.Loss!, gradientScale: gradientScale);
        Backward(w, p, pass, keep, features, gradients.Tensors);
        return w.Loss!.ToHost()[0];
    }

    /// <inheritdoc/>
    public float Loss(int[,] windows, ForwardMode? mode = null, IReadOnlyList<int>? cuSeqlens = null)
    {
        using var _ = Enter();
        var form = CheckMode(mode ?? ForwardMode.Parallel);
        var (inputs, targets, batch, seqLen) = TokenChecks.Windows(windows, Spec.VocabSize, Spec.WidestRow,
            nameof(windows));
        var packed = PackedBounds(cuSeqlens, batch, seqLen);
        var n = batch * seqLen;
        using var w = ModelWorkspace.ForInference(this, n, batch, n);
        using var state = Mixers.NeedsState(form) ? DecodingState.Zeros(this, batch, 0) : null;
        using var targetIds = IndexTensor.FromHost(Device, targets, n);
        var p = w.Rows(n);
        var pass = Upload(w, p, inputs, batch, seqLen, ends: null, form, Documents(packed));
        RunBlocks(p, pass, ActivationPlan.KeepNothing, state, 0);
        Linear.Apply(FinalNorm(p.Features, p.FinalNormed), outputWeight, p.Logits!);
        // The loss's own reductions may drop a NaN (as GPU max instructions do): check the logits themselves.
        var finite = float.IsFinite(Reductions.MaxAbs(p.Logits!));
        var loss = CrossEntropy.ForwardBackward(p.Logits!, targetIds, p.Logits!);
        if (!finite || !float.IsFinite(loss))
        {
            var tokens = new int[batch, seqLen];
            Buffer.BlockCopy(inputs, 0, tokens, 0, n * sizeof(int));
            throw NonFinite(tokens, form, "the loss");
        }
        return loss;
    }

    /// <inheritdoc/>
    public string? LocateNonFinite(int[,] tokens, ForwardMode? mode = null)
    {
        using var _ = Enter();
        ArgumentNullException.ThrowIfNull(tokens);
        var form = CheckMode(mode ?? ForwardMode.Parallel);
        int batch = tokens.GetLength(0), seqLen = tokens.GetLength(1), n = batch * seqLen;
        if (n == 0)
            return null;
        var ids = new int[n + batch];
        Buffer.BlockCopy(tokens, 0, ids, 0, n * sizeof(int));
        TokenChecks.Ids(ids.AsSpan(0, n), Spec.VocabSize, nameof(tokens));
        using var w = ModelWorkspace.ForInference(this, n, batch, n);
        using var state = Mixers.NeedsState(form) ? DecodingState.Zeros(this, batch, 0) : null;
        var p = w.Rows(n);
        var pass = Upload(w, p, ids, batch, seqLen, ends: null, form);
        string? found = null;
        RunBlocks(p, pass, ActivationPlan.KeepNothing, state, 0, (stage, x) =>
        {
            if (found is null && !float.IsFinite(Reductions.MaxAbs(x)))
                found = stage;
        });
        if (found is not null)
            return found;
        Linear.Apply(FinalNorm(p.Features, p.FinalNormed), outputWeight, p.Logits!);
        return float.IsFinite(Reductions.MaxAbs(p.Logits!)) ? null : "the output projection (logits)";
    }

    /// <inheritdoc/>
    public void UseComputeType(TensorDType type)
    {
        using var _ = Enter();
        Bind(ComputeWeights.Use(ref computeWeights, parameters, type));
    }

    /// <inheritdoc/>
    public void RefreshComputeWeights()
    {
        using var _ = Enter();
        computeWeights?.Refresh();
    }

    /// <summary>
    /// Uploads a pass's ids (then each sequence's start, then for a step each length after it) in one copy and
    /// describes the pass over them; the mixers then compute what every block shares (retention's decay sums).
    /// </summary>
    private Pass Upload(ModelWorkspace w, PassBuffers p, ReadOnlySpan<int> ids, int batch, int seqLen, int? ends,
        ForwardMode mode, PackedDocuments? documents = null, bool decoding = false)
    {
        var n = batch * seqLen;
        var count = n + batch + (ends is null ? 0 : batch);
        w.Ids.Slice(0, count).CopyFromHost(ids[..count]);
        var pass = new Pass(batch, seqLen, w.Ids.Slice(n, batch), ends is null ? null : w.Ids.Slice(n + batch, batch),
            mode, p.MixerData, documents, decoding || ends is not null ? decodeWeights : null);
        Mixers.BeginPass(pass);
        return pass;
    }

    /// <summary>
    /// The one forward path: the scaled embedding (and its norm), then every block, each reading the block state
    /// of <paramref name="state"/>'s sequences [<paramref name="first"/>, first + B) when given. Under
    /// <see cref="ActivationPlan.KeepBlockInputs"/> each block's output is copied to the next block's input (the
    /// last to the features). <paramref name="probe"/>, when given, sees the residual stream after the embedding and
    /// after each block (the search for the first non-finite value).
    /// </summary>
    private void RunBlocks(PassBuffers p, Pass pass, ActivationPlan plan, DecodingState? state, int first,
        Action<string, Tensor>? probe = null)
    {
        var eps = (float)Spec.LayerNormEps;
        ScaledEmbedding.Launch(embedding, p.Ids, Spec.EmbedScale, p.Embedded);
        if (embeddingNorm is not null)
            RmsNorm.Forward(p.Embedded, embeddingNorm, eps, p.EmbeddingNormed ?? p.Embedded, p.EmbeddingRstd);
        probe?.Invoke("the token embedding", p.EmbeddingNormed ?? p.Embedded);
        for (var i = 0; i < blocks.Length; i++)
        {
            var t = p.Blocks[i];
            blocks[i].Forward(t, pass, state?.Layer(i, first, pass.Batch));
            if (plan == ActivationPlan.KeepBlockInputs)
                Elementwise.Scale(t.Output(Spec.PreNorm), 1f,
                    i + 1 < blocks.Length ? p.Blocks[i + 1].MixerSublayer.In : p.Features);
            probe?.Invoke($"block {i} (layers.{i}: {Spec.Mixer.Name} and FFN)", t.Output(Spec.PreNorm));
        }
    }

    /// <summary>
    /// The backward pass of a training pass, from the logits' gradient (in the logits buffer) to every parameter
    /// gradient (added). Under <see cref="ActivationPlan.KeepBlockInputs"/> each block's forward runs again from its
    /// saved input first.
    /// </summary>
    private void Backward(ModelWorkspace w, PassBuffers p, Pass pass, ActivationPlan plan, Tensor features,
        IReadOnlyDictionary<string, Tensor> g)
    {
        var names = Spec.Names;
        var eps = (float)Spec.LayerNormEps;
        var scratch = w.Scratch!;
        var dX = scratch.Rows[0];
        Linear.BackwardWeight(p.Logits!, features, g[Spec.TiedOutput ? names.Embedding : names.Output]);
        if (finalNorm is not null)
        {
            Linear.BackwardInput(p.Logits!, outputWeight, scratch.Rows[1], accumulate: false);
            RmsNorm.Backward(p.Features, finalNorm, scratch.Rows[1], eps, dX, scratch.NormWeight, p.FinalRstd);
            Elementwise.Add(g[names.FinalNorm], scratch.NormWeight, g[names.FinalNorm]);
        }
        else
        {
            Linear.BackwardInput(p.Logits!, outputWeight, dX, accumulate: false);
        }
        for (var i = blocks.Length - 1; i >= 0; i--)
        {
            if (plan == ActivationPlan.KeepBlockInputs)
                blocks[i].Forward(p.Blocks[i], pass, state: null);
            blocks[i].Backward(p.Blocks[i], pass, dX, g, scratch);
        }
        if (embeddingNorm is not null)
        {
            RmsNorm.Backward(p.Embedded, embeddingNorm, dX, eps, scratch.Rows[1], scratch.NormWeight, p.EmbeddingRstd);
            Elementwise.Add(g[names.EmbeddingNorm], scratch.NormWeight, g[names.EmbeddingNorm]);
            dX = scratch.Rows[1];
        }
        if (Spec.EmbedScale != 1f)
            Elementwise.Scale(dX, Spec.EmbedScale, dX);
        Embedding.Backward(p.Ids, dX, g[names.Embedding]);
    }

    /// <summary>The final norm of <paramref name="x"/> into <paramref name="normed"/> (pre-norm); post-norm blocks end
    /// normalised, so x itself.</summary>
    private Tensor FinalNorm(Tensor x, Tensor? normed, Tensor? rstd = null)
    {
        if (finalNorm is null)
            return x;
        RmsNorm.Forward(x, finalNorm, (float)Spec.LayerNormEps, normed!, rstd);
        return normed!;
    }

    /// <summary>The logits of each row of <paramref name="x"/> (the final norm, then the output projection, summed
    /// in one order whatever the row count) in the first rows of <paramref name="logitsBuffer"/>.</summary>
    private Tensor OutputLogits(Tensor x, Tensor? normed, Tensor logitsBuffer)
    {
        var rows = x.Dim(0);
        var logits = logitsBuffer.Slice(0, rows);
        Linear.Step(FinalNorm(x, normed?.Slice(0, rows)), outputWeight, logits, decodeWeights);
        return logits;
    }

    private float[][] LastLogits(Tensor x, Tensor? normed, Tensor logitsBuffer)
    {
        var rows = x.Dim(0);
        var flat = OutputLogits(x, normed, logitsBuffer).ToHost();
        var vocab = Spec.VocabSize;
        var result = new float[rows][];
        for (var r = 0; r < rows; r++)
            result[r] = flat.AsSpan(r * vocab, vocab).ToArray();
        return result;
    }

    /// <summary>Prompts of up to this many tokens reuse one workspace the model keeps (a server prefills one prompt
    /// per request, and allocating a workspace each time cost a 16-token prefill of <c>tiny</c> about a tenth of its
    /// time); a longer prompt gets a workspace of its own, freed after it.</summary>
    internal const int KeptPromptRows = 1024;

    /// <inheritdoc/>
    public void ReleasePromptWorkspace()
    {
        using var _ = Enter();
        promptWorkspace?.Dispose();
        promptWorkspace = null;
    }

    /// <summary>A workspace for prompts of up to <paramref name="rows"/> tokens: the kept one when it is large enough,
    /// else a new one, kept in its place when <paramref name="rows"/> ≤ <see cref="KeptPromptRows"/>.</summary>
    private ModelWorkspace PromptWorkspaceFor(int rows)
    {
        if (promptWorkspace is { } kept && kept.Capacity >= rows)
            return kept;
        var w = ModelWorkspace.ForInference(this, rows, 1, 1);
        if (rows <= KeptPromptRows)
        {
            promptWorkspace?.Dispose();
            promptWorkspace = w;
        }
        return w;
    }

    private ModelWorkspace TrainingWorkspaceFor(int batch, int seqLen, ActivationPlan plan)
    {
        if (trainingWorkspace is { } w && w.Capacity == batch * seqLen && w.Sequences == batch && w.Plan == plan)
            return w;
        trainingWorkspace?.Dispose();
        trainingWorkspace = null;
        trainingWorkspace = ModelWorkspace.ForTraining(this, batch, seqLen, plan);
        return trainingWorkspace;
    }

    /// <summary>
    /// The host token bounds and positions of packed documents, [B·T, 2] then [B·T], checked against [B, T]; null
    /// when <paramref name="cuSeqlens"/> is. Before anything is uploaded, so bad offsets write nothing.
    /// </summary>
    private int[]? PackedBounds(IReadOnlyList<int>? cuSeqlens, int batch, int seqLen)
    {
        if (cuSeqlens is null)
            return null;
        if (!Mixers.PacksDocuments)
            throw new ArgumentException(
                $"Argument 'cuSeqlens' is given, but this model's token mixer ({Spec.Mixer.Name}) cannot keep packed " +
                "documents apart; expected null (one document per window).", nameof(cuSeqlens));
        var n = batch * seqLen;
        var bounds = PackedSequences.TokenBounds(cuSeqlens, batch, seqLen, nameof(cuSeqlens));
        var packed = new int[3 * n];
        bounds.CopyTo(packed, 0);
        for (var token = 0; token < n; token++)
            packed[2 * n + token] = token % seqLen - bounds[2 * token];
        return packed;
    }

    /// <summary>Uploads <see cref="PackedBounds"/> into the model's packing buffer (grown when a pass needs more, so
    /// steady-state passes allocate nothing); null when not packed.</summary>
    private PackedDocuments? Documents(int[]? packed)
    {
        if (packed is null)
            return null;
        if (packing is null || packing.Length < packed.Length)
        {
            packing?.Dispose();
            packing = null;
            packing = IndexTensor.Zeros(Device, packed.Length);
        }
        var n = packed.Length / 3;
        packing.Slice(0, packed.Length).CopyFromHost(packed);
        return new PackedDocuments(packing.Slice(0, 2 * n).Reshape(n, 2), packing.Slice(2 * n, n));
    }

    /// <summary>Bytes of the training workspace the last training pass used (0 before one).</summary>
    internal long TrainingWorkspaceBytes => trainingWorkspace?.Bytes ?? 0;

    /// <summary>The exception for non-finite values in <paramref name="what"/> of a pass over
    /// <paramref name="tokens"/>, naming the first stage of the model where they appear.</summary>
    private NonFiniteValuesException NonFinite(int[,] tokens, ForwardMode mode, string what)
    {
        var stage = LocateNonFinite(tokens, mode);
        return new NonFiniteValuesException(
            $"Non-finite values in {what}: they first appear in {stage ?? "the output projection (logits)"}. A weight " +
            "or an activation overflowed fp32; nothing was written.", stage, null);
    }

    private static int[,] Rows(IReadOnlyList<int> sequence)
    {
        var tokens = new int[1, sequence.Count];
        for (var t = 0; t < sequence.Count; t++)
            tokens[0, t] = sequence[t];
        return tokens;
    }

    private static ForwardMode CheckMode(ForwardMode mode)
    {
        if (!Enum.IsDefined(mode.Form))
            throw new ArgumentException($"Argument 'mode' has form {mode.Form}; expected parallel, chunkwise or recurrent.",
                nameof(mode));
        if (mode.Form == RetentionForm.Chunkwise && mode.ChunkSize < 1)
            throw new ArgumentException($"Argument 'mode' has chunk size {mode.ChunkSize}; expected ≥ 1.", nameof(mode));
        return mode;
    }

    private void CheckState(DecodingState state)
    {
        ArgumentNullException.ThrowIfNull(state);
        if (!ReferenceEquals(state.Model, this))
            throw new ArgumentException("Argument 'state' belongs to another model.", nameof(state));
        state.RequireSequences();
    }

    /// <summary>Holds the device for this thread for the call (see <see cref="RetNetDevice.Enter"/>).</summary>
    private RetNetDevice.Lease Enter()
    {
        ObjectDisposedException.ThrowIf(disposed, this);
        return Device.Enter();
    }

    /// <summary>Frees the weights and the model's buffers. States and gradients of this model are disposed
    /// separately.</summary>
    public void Dispose()
    {
        if (disposed)
            return;
        using var _ = Device.Enter();
        disposed = true;
        trainingWorkspace?.Dispose();
        promptWorkspace?.Dispose();
        packing?.Dispose();
        computeWeights?.Dispose();
        decodeWeights?.Dispose();
        foreach (var p in parameters.Values)
            p.Dispose();
        Mixers.Dispose();
    }
}
