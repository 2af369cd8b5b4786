using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;
using RetNet.Ilgpu.Devices;
using RetNet.Ilgpu.IO;
using RetNet.Ilgpu.Kernels.CrossEntropy;
using RetNet.Ilgpu.Model;
using RetNet.Ilgpu.Tensors;
using RetNet.Ilgpu.Tokenizers;
using RetNet.Ilgpu.Training.Data;
using RetNet.Ilgpu.Transformer;

namespace RetNet.Ilgpu.Training;

/// <summary>
/// Everything that decides a training run, saved with its checkpoints so that a resumed run continues exactly.
/// Defaults follow the RetNet paper's optimiser (AdamW β = (0.9, 0.98), eps 1e-8, weight decay 0.01).
/// </summary>
public sealed record TrainingSettings
{
    /// <summary>The schedule's length in optimiser steps; training ends there.</summary>
    [JsonPropertyName("steps")] public int Steps { get; init; }

    /// <summary>Windows per micro-batch, B.</summary>
    [JsonPropertyName("batch")] public int Batch { get; init; } = 8;

    /// <summary>Tokens per window whose next token is predicted, T (a window holds T + 1 tokens).</summary>
    [JsonPropertyName("seq_len")] public int SeqLen { get; init; } = 128;

    /// <summary>Micro-batches whose gradients are averaged into one optimiser step.</summary>
    [JsonPropertyName("grad_accum")] public int GradAccum { get; init; } = 1;

    /// <summary>The peak learning rate.</summary>
    [JsonPropertyName("lr")] public double LearningRate { get; init; } = 3e-4;

    /// <summary>Linear warm-up steps.</summary>
    [JsonPropertyName("warmup")] public int Warmup { get; init; }

    /// <summary>cosine, linear, polynomial or constant after the warm-up.</summary>
    [JsonPropertyName("schedule")] public string Schedule { get; init; } = "cosine";

    /// <summary>The final learning rate as a fraction of the peak.</summary>
    [JsonPropertyName("min_lr_ratio")] public double MinLrRatio { get; init; } = 0.1;

    /// <summary>Decoupled weight decay (matrices only; norm weights and the embedding are not decayed).</summary>
    [JsonPropertyName("weight_decay")] public double WeightDecay { get; init; } = 0.01;

    /// <summary>AdamW's β1.</summary>
    [JsonPropertyName("beta1")] public double Beta1 { get; init; } = 0.9;

    /// <summary>AdamW's β2.</summary>
    [JsonPropertyName("beta2")] public double Beta2 { get; init; } = 0.98;

    /// <summary>AdamW's eps.</summary>
    [JsonPropertyName("eps")] public double Eps { get; init; } = 1e-8;

    /// <summary>The global gradient norm is clipped to this; 0 turns clipping off.</summary>
    [JsonPropertyName("clip")] public double Clip { get; init; } = 1.0;

    /// <summary>The retention form of training: chunkwise or parallel.</summary>
    [JsonPropertyName("form")] public string Form { get; init; } = "chunkwise";

    /// <summary>Chunk size of the chunkwise form.</summary>
    [JsonPropertyName("chunk_size")] public int ChunkSize { get; init; } = ForwardMode.DefaultChunkSize;

    /// <summary>Keep only each block's input and recompute its activations in the backward pass (less memory, about
    /// one more forward pass of time; the same gradients).</summary>
    [JsonPropertyName("checkpoint_activations")] public bool CheckpointActivations { get; init; }

    /// <summary>Evaluate on the validation data every this many steps (0: only at the end, when there is any).</summary>
    [JsonPropertyName("eval_every")] public int EvalEvery { get; init; }

    /// <summary>Save a checkpoint every this many steps (0: only when stopping and at the end).</summary>
    [JsonPropertyName("save_every")] public int SaveEvery { get; init; }

    /// <summary>The seed of the window sampler.</summary>
    [JsonPropertyName("seed")] public ulong Seed { get; init; }

    /// <summary>Training data files (text or llm.c .bin), read in order.</summary>
    [JsonPropertyName("data")] public IReadOnlyList<string> Data { get; init; } = [];

    /// <summary>Validation data files, or none.</summary>
    [JsonPropertyName("val_data")] public IReadOnlyList<string> ValidationData { get; init; } = [];

    /// <summary>byte, gpt2, or auto (from the vocabulary size), for text data.</summary>
    [JsonPropertyName("tokenizer")] public string Tokenizer { get; init; } = "auto";

    /// <summary>The type the forward and backward passes read the weight matrices in: fp32, or bf16/fp16 copies of the
    /// fp32 master weights (mixed precision; the optimiser, gradients and activations stay fp32).</summary>
    [JsonPropertyName("dtype")] public string DType { get; init; } = "fp32";

    /// <summary><see cref="DType"/> parsed.</summary>
    [JsonIgnore]
    public TensorDType ComputeType => TensorDTypes.Parse(DType);

    /// <summary>The retention form as a <see cref="ForwardMode"/>.</summary>
    [JsonIgnore]
    public ForwardMode Mode => Form == "parallel" ? ForwardMode.Parallel : ForwardMode.Chunkwise(ChunkSize);

    /// <summary>Checks every field; the message lists all problems.</summary>
    /// <exception cref="ArgumentException">A field is out of range.</exception>
    public void Validate()
    {
        var problems = new List<string>();
        void Positive(string name, int value)
        {
            if (value < 1)
                problems.Add($"{name} is {value}; expected ≥ 1");
        }
        Positive("--steps", Steps);
        Positive("--batch", Batch);
        Positive("--seq-len", SeqLen);
        Positive("--grad-accum", GradAccum);
        Positive("--chunk-size", ChunkSize);
        if (!(LearningRate > 0) || !double.IsFinite(LearningRate))
            problems.Add($"--lr is {LearningRate}; expected a finite value > 0");
        if (Warmup < 0 || Warmup > Steps)
            problems.Add($"--warmup is {Warmup}; expected 0 … --steps ({Steps})");
        if (!(MinLrRatio >= 0 && MinLrRatio <= 1))
            problems.Add($"--min-lr-ratio is {MinLrRatio}; expected 0 … 1");
        if (!(WeightDecay >= 0) || !double.IsFinite(WeightDecay))
            problems.Add($"--weight-decay is {WeightDecay}; expected finite and ≥ 0");
        if (!(Beta1 >= 0 && Beta1 < 1) || !(Beta2 >= 0 && Beta2 < 1))
            problems.Add($"--betas are {Beta1},{Beta2}; expected each in [0, 1)");
        if (!(Eps > 0) || !double.IsFinite(Eps))
            problems.Add($"--eps is {Eps}; expected a finite value > 0");
        if (!(Clip >= 0) || !double.IsFinite(Clip))
            problems.Add($"--clip is {Clip}; expected finite and ≥ 0 (0: no clipping)");
        if (Form is not ("chunkwise" or "parallel"))
            problems.Add($"--form is '{Form}'; expected chunkwise or parallel");
        if (EvalEvery < 0 || SaveEvery < 0)
            problems.Add($"--eval-every {EvalEvery} / --save-every {SaveEvery}; expected ≥ 0");
        if (Data.Count == 0)
            problems.Add("--data names no file");
        if (!TensorDTypes.Names.Contains(DType))
            problems.Add($"--dtype is '{DType}'; expected {string.Join(", ", TensorDTypes.Names)}");
        try
        {
            LearningRateSchedule.Parse(Schedule);
        }
        catch (ArgumentException e)
        {
            problems.Add($"--schedule: {e.Message}");
        }
        if (problems.Count > 0)
            throw new ArgumentException($"Invalid training settings: {string.Join("; ", problems)}.", "settings");
    }
}

/// <summary>What one optimiser step did.</summary>
/// <param name="Step">The step just completed (from 1).</param>
/// <param name="Loss">The mean training loss over its micro-batches, nats per token.</param>
/// <param name="LearningRate">The learning rate it used.</param>
/// <param name="GradientNorm">The global gradient norm before clipping.</param>
/// <param name="Tokens">Tokens predicted in the step.</param>
/// <param name="Seconds">Wall time of the step.</param>
public sealed record TrainingStep(int Step, double Loss, double LearningRate, double GradientNorm, long Tokens,
    double Seconds);

/// <summary>The result of an evaluation over whole data.</summary>
/// <param name="Loss">Mean loss over every predicted token, nats.</param>
/// <param name="Tokens">Predicted tokens.</param>
/// <param name="BitsPerByte">Bits per UTF-8 byte of the predicted tokens, for text data; null for token files.</param>
public sealed record Evaluation(double Loss, long Tokens, double? BitsPerByte)
{
    /// <summary>e^loss.</summary>
    public double Perplexity => Math.Exp(Loss);
}

/// <summary>
/// Trains a language model, RetNet or the baseline Transformer (docs/MATH.md §11): windows from a seeded sampler, the model's training pass
/// (gradients accumulated over micro-batches), global-norm clipping, AdamW, a warm-up-then-decay schedule.
/// Deterministic for a device and seed: the same settings give bit-identical weights, and a run stopped and resumed
/// from its checkpoint ends bit-identical to one that was not. A checkpoint folder holds config.json and
/// model.safetensors (loadable by every command) and trainer.safetensors (weights, AdamW moments, step, sampler state
/// and settings), each written to a temporary name and renamed: killing the process leaves the last complete
/// checkpoint (trainer.safetensors alone decides what a resumed run continues from).
/// </summary>
public sealed class Trainer : IDisposable
{
    /// <summary>The file with everything a resumed run needs.</summary>
    public const string StateFile = "trainer.safetensors";

    private const string ParameterPrefix = "model.";
    private const string OptimizerPrefix = "optimizer.";

    private readonly TokenDataset data;
    private readonly TokenDataset? validation;
    private readonly ITextTokenizer? tokenizer;
    private readonly WindowSampler sampler;
    private readonly TrainingPass pass;
    private readonly AdamW optimizer;
    private readonly LearningRateSchedule schedule;
    private readonly int[,] windows;
    private readonly string[] order;
    private bool disposed;

    private Trainer(ILanguageModel model, TrainingSettings settings, string outputFolder, TokenDataset data,
        TokenDataset? validation, ITextTokenizer? tokenizer, WindowSampler sampler)
    {
        Model = model;
        Settings = settings;
        OutputFolder = outputFolder;
        this.data = data;
        this.validation = validation;
        this.tokenizer = tokenizer;
        this.sampler = sampler;
        order = model.Parameters.Keys.ToArray();
        pass = TrainingPass.For(model, settings.ComputeType);
        optimizer = new AdamW(order.Select(name => new OptimizedParameter(name, model.Parameters[name],
                AdamW.DecaysByDefault(name, model.Parameters[name].Rank))).ToList(),
            new AdamWOptions(settings.Beta1, settings.Beta2, settings.Eps, settings.WeightDecay));
        schedule = new LearningRateSchedule(settings.LearningRate, settings.Warmup, settings.Steps,
            LearningRateSchedule.Parse(settings.Schedule), settings.MinLrRatio);
        schedule.Validate();
        windows = new int[settings.Batch, settings.SeqLen + 1];
    }

    /// <summary>The model being trained (owned by the trainer): a <see cref="RetNetModel"/> or a
    /// <see cref="TransformerModel"/>.</summary>
    public ILanguageModel Model { get; }

    /// <summary>The run's settings.</summary>
    public TrainingSettings Settings { get; }

    /// <summary>Where checkpoints are written.</summary>
    public string OutputFolder { get; }

    /// <summary>Optimiser steps completed.</summary>
    public int Step { get; private set; }

    /// <summary>The training data's token count.</summary>
    public long TrainingTokens => data.Count;

    /// <summary>Whether validation data was given.</summary>
    public bool HasValidation => validation is not null;

    /// <summary>
    /// A new run: the model from <paramref name="modelFolder"/> (either architecture), the data of <paramref name="settings"/>, checkpoints to
    /// <paramref name="outputFolder"/>.
    /// </summary>
    /// <exception cref="ArgumentException">Invalid settings or data (the message names the problem).</exception>
    public static Trainer Start(RetNetDevice device, string modelFolder, TrainingSettings settings, string outputFolder)
    {
        ArgumentNullException.ThrowIfNull(device);
        ArgumentNullException.ThrowIfNull(settings);
        ArgumentException.ThrowIfNullOrWhiteSpace(outputFolder);
        settings.Validate();
        // Training updates fp32 master weights, whatever the checkpoint stores.
        var model = LanguageModels.Load(device, modelFolder, TensorDType.Float32);
        try
        {
            return Open(model, settings, outputFolder, sampler: null);
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Continues the run saved in <paramref name="checkpointFolder"/> (its trainer.safetensors) to its settings'
    /// steps, writing checkpoints to <paramref name="outputFolder"/> (default: the same folder).
    /// </summary>
    /// <exception cref="FileNotFoundException">The folder has no trainer.safetensors.</exception>
    /// <exception cref="InvalidDataException">The state file is incomplete or does not fit its model.</exception>
    public static Trainer Resume(RetNetDevice device, string checkpointFolder, string? outputFolder = null)
    {
        ArgumentNullException.ThrowIfNull(device);
        ArgumentException.ThrowIfNullOrWhiteSpace(checkpointFolder);
        var path = Path.Combine(checkpointFolder, StateFile);
        if (!File.Exists(path))
            throw new FileNotFoundException(
                $"The folder {checkpointFolder} has no {StateFile}: it is not a training checkpoint.", path);
        var file = Safetensors.Read(path);
        string Meta(string key) => file.Metadata.TryGetValue(key, out var value)
            ? value
            : throw new InvalidDataException($"{path}: the metadata lacks '{key}'.");
        var settings = JsonSerializer.Deserialize<TrainingSettings>(Meta("settings"))
                       ?? throw new InvalidDataException($"{path}: the settings are null.");
        var weights = file.Tensors.Where(kv => kv.Key.StartsWith(ParameterPrefix, StringComparison.Ordinal))
            .ToDictionary(kv => kv.Key[ParameterPrefix.Length..], kv => kv.Value);
        var model = LanguageModels.FromWeights(device, Meta("config"), weights, TensorDType.Float32);
        try
        {
            var step = int.Parse(Meta("step"), CultureInfo.InvariantCulture);
            var samplerState = Meta("sampler").Split(',').Select(s => ulong.Parse(s, CultureInfo.InvariantCulture))
                .ToArray();
            var trainer = Open(model, settings, outputFolder ?? checkpointFolder, samplerState);
            try
            {
                var moments = file.Tensors.Where(kv => kv.Key.StartsWith(OptimizerPrefix, StringComparison.Ordinal))
                    .ToDictionary(kv => kv.Key[OptimizerPrefix.Length..], kv => kv.Value);
                trainer.optimizer.ImportState(new AdamWState(
                    long.Parse(Meta("optimizer_steps"), CultureInfo.InvariantCulture), moments));
                trainer.Step = step;
                return trainer;
            }
            catch
            {
                trainer.Dispose();
                throw;
            }
        }
        catch (Exception e) when (e is FormatException or OverflowException)
        {
            model.Dispose();
            throw new InvalidDataException($"{path}: malformed metadata ({e.Message}).", e);
        }
    }

    private static Trainer Open(ILanguageModel model, TrainingSettings settings, string outputFolder, ulong[]? sampler)
    {
        var tokenizer = TextTokenizers.ForVocabulary(settings.Tokenizer, model.VocabSize);
        var data = TokenDataset.Open(settings.Data, tokenizer, model.VocabSize);
        TokenDataset? validation = null;
        try
        {
            if (settings.ValidationData.Count > 0)
                validation = TokenDataset.Open(settings.ValidationData, tokenizer, model.VocabSize);
            var windows = sampler is null
                ? new WindowSampler(data, settings.SeqLen, settings.Seed)
                : WindowSampler.Restore(data, settings.SeqLen, sampler);
            return new Trainer(model, settings, outputFolder, data, validation, tokenizer, windows);
        }
        catch
        {
            data.Dispose();
            validation?.Dispose();
            throw;
        }
    }

    /// <summary>
    /// One optimiser step: zero the gradients, <see cref="TrainingSettings.GradAccum"/> micro-batches of sampled
    /// windows each adding 1/A of its gradient, the global norm clipped, AdamW at the schedule's rate.
    /// </summary>
    /// <param name="cancellationToken">Checked before the step starts, never during it: a cancelled token leaves the
    /// trainer exactly at the step boundary (weights, moments and sampler untouched), so <see cref="Save"/> then
    /// writes a checkpoint that resumes bit-identically.</param>
    /// <exception cref="InvalidOperationException">The schedule is complete.</exception>
    /// <exception cref="ArithmeticException">A gradient is not finite (the weights are left unchanged).</exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> is cancelled; nothing ran.</exception>
    public TrainingStep RunStep(CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(disposed, this);
        cancellationToken.ThrowIfCancellationRequested();
        if (Step >= Settings.Steps)
            throw new InvalidOperationException($"The run is complete: {Step} of {Settings.Steps} steps.");
        var started = System.Diagnostics.Stopwatch.GetTimestamp();
        pass.Zero();
        var accumulation = Settings.GradAccum;
        var loss = 0.0;
        for (var a = 0; a < accumulation; a++)
        {
            sampler.Next(windows);
            loss += pass.Run(windows, Settings, 1f / accumulation) / accumulation;
        }
        var norm = GradientClipping.GlobalNorm(order.Select(name => pass.Gradients[name]).ToList());
        var scale = GradientClipping.ClipScale(norm, Settings.Clip);
        var rate = schedule.At(Step + 1);
        optimizer.Step(pass.Gradients, rate, scale);
        pass.RefreshComputeWeights();
        Model.Device.Synchronize();
        Step++;
        return new TrainingStep(Step, loss, rate, norm, (long)accumulation * Settings.Batch * Settings.SeqLen,
            System.Diagnostics.Stopwatch.GetElapsedTime(started).TotalSeconds);
    }

    /// <summary>The model's loss over the whole validation data (windows of T + 1 with stride T).</summary>
    /// <exception cref="InvalidOperationException">No validation data was given.</exception>
    public Evaluation EvaluateValidation()
    {
        ObjectDisposedException.ThrowIf(disposed, this);
        return Evaluate(Model, validation ?? throw new InvalidOperationException("No validation data was given."),
            tokenizer, Settings.SeqLen, Settings.Batch, Settings.Mode);
    }

    /// <summary>
    /// The mean next-token loss of <paramref name="model"/> over every window of T + 1 tokens with stride T (the last
    /// partial window dropped), in nats per predicted token, and for text the bits per byte of the predicted tokens.
    /// <paramref name="mode"/> is RetNet's form (a Transformer has one).
    /// </summary>
    /// <exception cref="ArgumentException">The data holds no whole window.</exception>
    public static Evaluation Evaluate(ILanguageModel model, TokenDataset data, ITextTokenizer? tokenizer, int seqLen,
        int batch, ForwardMode mode)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(data);
        var windows = new EvaluationWindows(data, seqLen, batch);
        double nats = 0, bytes = 0;
        long tokens = 0;
        foreach (var w in windows.Batches())
        {
            int rows = w.GetLength(0), n = rows * seqLen;
            var inputs = new int[rows, seqLen];
            var targets = new int[n];
            for (var b = 0; b < rows; b++)
            for (var t = 0; t < seqLen; t++)
            {
                inputs[b, t] = w[b, t];
                targets[b * seqLen + t] = w[b, t + 1];
                if (tokenizer is not null && data.IsText)
                    bytes += tokenizer.TokenBytes(w[b, t + 1]).Length;
            }
            using var logits = model switch
            {
                RetNetModel retnet => retnet.Forward(inputs, mode),
                TransformerModel transformer => transformer.Forward(inputs),
                _ => throw new ArgumentException($"No evaluation for {model.Architecture} models.", nameof(model)),
            };
            using var targetIds = IndexTensor.FromHost(model.Device, targets, n);
            var flat = logits.Reshape(n, model.VocabSize);
            nats += (double)CrossEntropy.ForwardBackward(flat, targetIds, flat) * n;
            tokens += n;
        }
        if (tokens == 0)
            throw new ArgumentException(
                $"The data holds {data.Count} tokens: no whole window of {seqLen + 1}.", nameof(data));
        return new Evaluation(nats / tokens, tokens,
            tokenizer is not null && data.IsText && bytes > 0 ? nats / Math.Log(2) / bytes : null);
    }

    /// <summary>
    /// Writes the checkpoint: trainer.safetensors (weights, moments, step, sampler, settings) first, then the model
    /// folder (<see cref="ILanguageModel.Save"/>), each file atomically. <see cref="Resume"/> reads trainer.safetensors
    /// alone, so a kill between the files resumes from the new step; the model folder then still holds the previous
    /// save's model, whole, until the next save.
    /// </summary>
    public void Save()
    {
        ObjectDisposedException.ThrowIf(disposed, this);
        Directory.CreateDirectory(OutputFolder);
        var tensors = new Dictionary<string, HostTensor>();
        foreach (var (name, tensor) in Model.ExportWeights())
            tensors.Add(ParameterPrefix + name, tensor);
        var state = optimizer.ExportState();
        foreach (var (name, tensor) in state.Tensors)
            tensors.Add(OptimizerPrefix + name, tensor);
        Safetensors.Write(Path.Combine(OutputFolder, StateFile), tensors, new Dictionary<string, string>
        {
            ["format"] = "retnet-ilgpu-trainer",
            ["step"] = Step.ToString(CultureInfo.InvariantCulture),
            ["optimizer_steps"] = state.StepCount.ToString(CultureInfo.InvariantCulture),
            ["sampler"] = string.Join(",", sampler.State.Select(s => s.ToString(CultureInfo.InvariantCulture))),
            ["settings"] = JsonSerializer.Serialize(Settings),
            ["config"] = Model.ConfigJson,
        });
        Model.Save(OutputFolder);
    }

    /// <summary>Frees the model, the gradients, the optimiser and the data.</summary>
    public void Dispose()
    {
        if (disposed)
            return;
        disposed = true;
        optimizer.Dispose();
        pass.Dispose();
        Model.Dispose();
        data.Dispose();
        validation?.Dispose();
    }
}

/// <summary>The gradients of a model being trained and its training pass, for either architecture.</summary>
internal sealed class TrainingPass : IDisposable
{
    private readonly ParameterGradients gradients;
    private readonly Func<int[,], TrainingSettings, float, float> pass;
    private readonly Action refresh;

    private TrainingPass(ParameterGradients gradients, Func<int[,], TrainingSettings, float, float> pass, Action refresh)
    {
        this.gradients = gradients;
        this.pass = pass;
        this.refresh = refresh;
    }

    /// <summary>After an optimiser step: rounds the updated fp32 weights into the 16-bit copies the passes read
    /// (nothing in fp32 training).</summary>
    public void RefreshComputeWeights() => refresh();

    /// <summary>The gradients by weight name.</summary>
    public IReadOnlyDictionary<string, Tensor> Gradients => gradients.Tensors;

    /// <summary>Sets every gradient to 0.</summary>
    public void Zero() => gradients.Zero();

    /// <summary>One training pass over windows [B, T + 1], adding scale × its gradient; the mean loss.</summary>
    public float Run(int[,] windows, TrainingSettings settings, float scale) => pass(windows, settings, scale);

    public void Dispose() => gradients.Dispose();

    /// <summary>The pass of either architecture, reading the weight matrices as <paramref name="computeType"/> (fp32:
    /// the weights themselves; bf16/fp16: copies rounded from them). The Transformer's attention has one form and keeps
    /// its activations, so the retention form and checkpointing settings do not apply to it.</summary>
    public static TrainingPass For(ILanguageModel model, TensorDType computeType = TensorDType.Float32)
    {
        switch (model)
        {
            case RetNetModel retnet:
            {
                retnet.UseComputeType(computeType);
                var gradients = ModelGradients.Zeros(retnet);
                return new TrainingPass(gradients, (windows, settings, scale) =>
                    retnet.ForwardBackward(windows, gradients, settings.Mode, scale, settings.CheckpointActivations),
                    retnet.RefreshComputeWeights);
            }
            case TransformerModel transformer:
            {
                transformer.UseComputeType(computeType);
                var gradients = TransformerGradients.Zeros(transformer);
                return new TrainingPass(gradients, (windows, _, scale) =>
                    transformer.ForwardBackward(windows, gradients, scale), transformer.RefreshComputeWeights);
            }
            default:
                throw new ArgumentException($"No training pass for {model.Architecture} models.", nameof(model));
        }
    }
}
