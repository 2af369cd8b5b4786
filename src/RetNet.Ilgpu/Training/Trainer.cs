using System.Diagnostics;
using System.Globalization;
using RetNet.Ilgpu.Devices;
using RetNet.Ilgpu.IO;
using RetNet.Ilgpu.Model;
using RetNet.Ilgpu.Tensors;
using RetNet.Ilgpu.Tokenizers;
using RetNet.Ilgpu.Training.Data;

namespace RetNet.Ilgpu.Training;

/// <summary>What one optimiser step did.</summary>
/// <param name="Step">The step just completed (from 1).</param>
/// <param name="Loss">The mean training loss over its micro-batches, nats per token.</param>
/// <param name="LearningRate">The learning rate it used.</param>
/// <param name="GradientNorm">The global gradient norm before clipping.</param>
/// <param name="Tokens">Tokens predicted in the step.</param>
/// <param name="Seconds">Wall time of the step.</param>
/// <param name="Skipped">The loss or the gradient norm was not finite and the step left the weights as they were
/// (<see cref="NonFiniteStepPolicy.Skip"/>).</param>
/// <param name="ReduceSeconds">Of <paramref name="Seconds"/>, the time spent combining the gradients of the
/// data-parallel workers (0 with one worker).</param>
public sealed record TrainingStep(int Step, double Loss, double LearningRate, double GradientNorm, long Tokens,
    double Seconds, bool Skipped = false, double ReduceSeconds = 0);

/// <summary>The data a run trains on: the training ids, optional held-out ids, and the tokenizer of text data (for
/// bits per byte).</summary>
/// <param name="Train">The training data.</param>
/// <param name="Validation">Held-out data to evaluate on, or null.</param>
/// <param name="Tokenizer">The tokenizer the text was read with, or null for token files.</param>
public sealed record TrainingData(TokenDataset Train, TokenDataset? Validation = null, ITextTokenizer? Tokenizer = null);

/// <summary>How a call of <see cref="Trainer.Run"/> ended.</summary>
/// <param name="StepsRun">Optimiser steps this call ran.</param>
/// <param name="Tokens">Tokens those steps predicted.</param>
/// <param name="Seconds">Their wall time.</param>
/// <param name="Interrupted">The cancellation token stopped the run before its last step.</param>
public sealed record TrainingRun(int StepsRun, long Tokens, double Seconds, bool Interrupted);

/// <summary>
/// Trains a language model of any architecture (docs/MATH.md §11) the way llm.c's training loop reads:
/// <see cref="RunStep"/> zeroes the gradients; for each micro-batch samples windows and runs the model's forward and
/// backward pass; reduces the gradients across data-parallel workers; clips the global norm; takes an AdamW step at
/// the schedule's rate; refreshes mixed precision's 16-bit copies. <see cref="Run"/> adds what happens between steps:
/// logging, evaluation, checkpoints.
/// </summary>
/// <remarks>
/// Deterministic for a device and seed: the same settings give bit-identical weights, and a run stopped and resumed
/// from its checkpoint ends bit-identical to one that was not. A checkpoint folder holds config.json and
/// model.safetensors (loadable by every command), the SentencePiece tokenizer files of the folder the run started
/// from if it had them, and trainer.safetensors (weights, AdamW moments, step, sampler state
/// and settings), each written to a temporary name and renamed: killing the process leaves the last complete
/// checkpoint (trainer.safetensors alone decides what a resumed run continues from).
/// </remarks>
public sealed class Trainer : IDisposable
{
    /// <summary>The file with everything a resumed run needs.</summary>
    public const string StateFile = "trainer.safetensors";

    private const string ParameterPrefix = "model.";
    private const string WorkersKey = "workers";
    private const string OptimizerPrefix = "optimizer.";

    private readonly TrainingData data;
    private readonly bool ownsModelAndData;
    private readonly WindowSampler sampler;
    // The sampler, except in a run that replays recorded windows (StartReplaying), which cannot be saved.
    private readonly IWindowSource windowSource;
    private readonly ModelGradients gradients;
    private readonly IReadOnlyList<Tensor> gradientList;
    private readonly IGradientReducer reducer;
    private readonly AdamW optimizer;
    private readonly LearningRateSchedule schedule;
    private readonly int[,] windows;
    // The model folder a run started from: its tokenizer files travel into every checkpoint.
    private string? tokenizerFolder;
    // The end-of-text id that opens each packed document, when the run packs documents.
    private readonly int? separator;
    private bool disposed;

    private Trainer(ILanguageModel model, TrainingSettings settings, string outputFolder, TrainingData data,
        bool ownsModelAndData, ulong[]? samplerState, IGradientReducer? reducer, IWindowSource? windowSource = null)
    {
        Model = model;
        Settings = settings;
        OutputFolder = outputFolder;
        this.data = data;
        this.ownsModelAndData = ownsModelAndData;
        this.reducer = reducer ?? SingleWorker.Instance;
        sampler = samplerState is null
            ? new WindowSampler(data.Train, settings.SeqLen, settings.Seed)
            : WindowSampler.Restore(data.Train, settings.SeqLen, samplerState);
        this.windowSource = windowSource ?? sampler;
        schedule = settings.LearningRates;
        schedule.Validate();
        separator = settings.PackDocuments
            ? DocumentPacking.Separator(data.Train, data.Tokenizer, model.VocabSize)
            : null;
        windows = new int[settings.Batch, settings.SeqLen + 1];
        model.UseComputeType(settings.ComputeType);
        gradients = model.CreateGradients();
        try
        {
            gradientList = [.. gradients.Tensors.Values];
            optimizer = AdamW.For(model, settings.Optimizer);
        }
        catch
        {
            gradients.Dispose();
            throw;
        }
    }

    /// <summary>The model being trained.</summary>
    public ILanguageModel Model { get; }

    /// <summary>The run's settings.</summary>
    public TrainingSettings Settings { get; }

    /// <summary>Where checkpoints are written.</summary>
    public string OutputFolder { get; }

    /// <summary>Optimiser steps completed.</summary>
    public int Step { get; private set; }

    /// <summary>Steps skipped because their loss or gradient norm was not finite
    /// (<see cref="NonFiniteStepPolicy.Skip"/>), since this trainer was made.</summary>
    public int SkippedSteps { get; private set; }

    /// <summary>The training data's token count.</summary>
    public long TrainingTokens => data.Train.Count;

    /// <summary>Whether validation data was given.</summary>
    public bool HasValidation => data.Validation is not null;

    /// <summary>
    /// A new run from the model folder <paramref name="modelFolder"/> (either architecture, loaded with fp32 master
    /// weights) on the data files of <paramref name="settings"/>, checkpoints to <paramref name="outputFolder"/>. The
    /// trainer owns the model and the data. <paramref name="reducer"/> combines the gradients of data-parallel workers
    /// (default: one worker); with several, every worker starts from worker 0's weights.
    /// </summary>
    /// <exception cref="ArgumentException">Invalid settings or data (the message names the problem).</exception>
    /// <exception cref="RanksDisagreeException">The workers were given different settings, models or data.</exception>
    public static Trainer Start(RetNetDevice device, string modelFolder, TrainingSettings settings, string outputFolder,
        IGradientReducer? reducer = null)
    {
        ArgumentNullException.ThrowIfNull(device);
        ArgumentNullException.ThrowIfNull(settings);
        ArgumentException.ThrowIfNullOrWhiteSpace(outputFolder);
        settings.Validate();
        RequireDataFiles(settings);
        var model = LanguageModel.Load(device, modelFolder, weightType: TensorDType.Float32);
        return Joined(OpenOwned(model, settings, modelFolder, outputFolder, samplerState: null, reducer));
    }

    /// <summary>
    /// A new run of a model and data already in memory, checkpoints to <paramref name="outputFolder"/>. The caller
    /// keeps ownership of <paramref name="model"/> and the datasets (dispose them after the trainer); the model's
    /// matrices must be fp32 (mixed precision trains fp32 masters: <see cref="TrainingSettings.ComputeType"/>).
    /// <paramref name="reducer"/> combines the gradients of data-parallel workers (default: one worker).
    /// </summary>
    /// <exception cref="ArgumentException">Invalid settings, or a model whose weights are not fp32.</exception>
    public static Trainer Start(ILanguageModel model, TrainingData data, TrainingSettings settings,
        string outputFolder, IGradientReducer? reducer = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(data);
        ArgumentNullException.ThrowIfNull(data.Train);
        ArgumentNullException.ThrowIfNull(settings);
        ArgumentException.ThrowIfNullOrWhiteSpace(outputFolder);
        settings.Validate();
        return Joined(new Trainer(model, settings, outputFolder, data, ownsModelAndData: false, null, reducer));
    }

    /// <summary>
    /// Continues the run saved in <paramref name="checkpointFolder"/> (its trainer.safetensors) to its settings'
    /// steps, on the data files its settings name, writing checkpoints to <paramref name="outputFolder"/> (default:
    /// the same folder). With several data-parallel workers (<paramref name="reducer"/>) every worker reads the
    /// checkpoint, then takes worker 0's weights and moments; the run must have been saved by as many workers.
    /// </summary>
    /// <exception cref="FileNotFoundException">The folder has no trainer.safetensors.</exception>
    /// <exception cref="InvalidDataException">The state file is incomplete or does not fit its model.</exception>
    /// <exception cref="ArgumentException">The run was trained on data in memory (its settings name no file), or by
    /// another number of workers.</exception>
    /// <exception cref="RanksDisagreeException">The workers read different checkpoints or data.</exception>
    public static Trainer Resume(RetNetDevice device, string checkpointFolder, string? outputFolder = null,
        IGradientReducer? reducer = null)
    {
        ArgumentNullException.ThrowIfNull(device);
        ArgumentException.ThrowIfNullOrWhiteSpace(checkpointFolder);
        var saved = SavedRun.Read(device, checkpointFolder);
        try
        {
            RequireDataFiles(saved.Settings);
            var workers = (reducer ?? SingleWorker.Instance).Workers;
            if (saved.Workers != workers)
                throw new ArgumentException(
                    $"The checkpoint {checkpointFolder} was trained by {saved.Workers} data-parallel worker(s); this " +
                    $"run has {workers}. Resume with the same world size (mpirun -np {saved.Workers}), so that every " +
                    "step averages the same micro-batches.", nameof(reducer));
        }
        catch
        {
            saved.Model.Dispose();
            throw;
        }
        var trainer = OpenOwned(saved.Model, saved.Settings, checkpointFolder, outputFolder ?? checkpointFolder,
            saved.SamplerState, reducer);
        try
        {
            trainer.Restore(saved);
            return Joined(trainer);
        }
        catch
        {
            trainer.Dispose();
            throw;
        }
    }

    /// <summary>
    /// <see cref="Start(ILanguageModel, TrainingData, TrainingSettings, string, IGradientReducer?)"/>, but every
    /// micro-batch's windows come from <paramref name="windows"/> instead of the sampler: a seam for replaying another
    /// trainer's recorded windows step for step. Such a run cannot be checkpointed (<see cref="Save"/> refuses it).
    /// </summary>
    internal static Trainer StartReplaying(ILanguageModel model, TrainingData data, TrainingSettings settings,
        string outputFolder, IWindowSource windows)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(data);
        ArgumentNullException.ThrowIfNull(data.Train);
        ArgumentNullException.ThrowIfNull(settings);
        ArgumentNullException.ThrowIfNull(windows);
        ArgumentException.ThrowIfNullOrWhiteSpace(outputFolder);
        settings.Validate();
        return new Trainer(model, settings, outputFolder, data, ownsModelAndData: false, null, reducer: null, windows);
    }

    private static void RequireDataFiles(TrainingSettings settings)
    {
        if (settings.Data.Count == 0)
            throw new ArgumentException(
                "Invalid training settings: Data names no file (the command line's --data); a run on data in memory " +
                "starts with Trainer.Start(model, data, …).", nameof(settings));
    }

    private static Trainer OpenOwned(ILanguageModel model, TrainingSettings settings, string modelFolder,
        string outputFolder, ulong[]? samplerState, IGradientReducer? reducer)
    {
        TokenDataset? train = null, validation = null;
        try
        {
            var tokenizer = TextTokenizers.ForModel(settings.Tokenizer, modelFolder, model.VocabSize);
            train = TokenDataset.Open(settings.Data, tokenizer, model.VocabSize);
            if (settings.ValidationData.Count > 0)
                validation = TokenDataset.Open(settings.ValidationData, tokenizer, model.VocabSize);
            return new Trainer(model, settings, outputFolder, new TrainingData(train, validation, tokenizer),
                ownsModelAndData: true, samplerState, reducer) { tokenizerFolder = modelFolder };
        }
        catch
        {
            train?.Dispose();
            validation?.Dispose();
            model.Dispose();
            throw;
        }
    }

    /// <summary>
    /// With several workers: checks that they agree on everything that decides the run (each fact named in the error),
    /// then gives every worker worker 0's weights (and moments, on resume). Disposes the trainer when that fails.
    /// </summary>
    private static Trainer Joined(Trainer trainer)
    {
        if (trainer.reducer.Workers == 1)
            return trainer;
        try
        {
            trainer.reducer.Agree(trainer.RunFacts());
            trainer.reducer.Broadcast([.. trainer.Model.Parameters.Values]);
            if (trainer.Step > 0)
                trainer.reducer.Broadcast(trainer.optimizer.StateTensors);
            trainer.Model.RefreshComputeWeights();
            return trainer;
        }
        catch
        {
            trainer.Dispose();
            throw;
        }
    }

    /// <summary>What every worker of a data-parallel run must share: the world size, each setting, the model's
    /// configuration, each data file's length and SHA-256, the step and the sampler's state.</summary>
    private List<KeyValuePair<string, string>> RunFacts()
    {
        var facts = new List<KeyValuePair<string, string>>
        {
            new("world size", reducer.Workers.ToString(CultureInfo.InvariantCulture)),
        };
        using (var settings = System.Text.Json.JsonDocument.Parse(Settings.ToJson()))
        {
            foreach (var property in settings.RootElement.EnumerateObject())
                facts.Add(new($"--{property.Name.Replace('_', '-')}", property.Value.GetRawText()));
        }
        facts.Add(new("model config", Model.Config.ToJson()));
        void Files(string option, IReadOnlyList<string> paths)
        {
            for (var i = 0; i < paths.Count; i++)
            {
                using var stream = File.OpenRead(paths[i]);
                var hash = Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(stream));
                facts.Add(new($"{option} file {i + 1}", string.Create(CultureInfo.InvariantCulture,
                    $"{stream.Length} bytes, sha256 {hash}, {Path.GetFileName(paths[i])}")));
            }
        }
        Files("--data", Settings.Data);
        Files("--val-data", Settings.ValidationData);
        facts.Add(new("training tokens", data.Train.Count.ToString(CultureInfo.InvariantCulture)));
        facts.Add(new("step", Step.ToString(CultureInfo.InvariantCulture)));
        facts.Add(new("sampler state", string.Join(",", sampler.State)));
        return facts;
    }

    /// <summary>
    /// One optimiser step, top to bottom: zero the gradients; sample the windows of all N × A micro-batches of the
    /// step (N workers, A = <see cref="TrainingSettings.GradAccum"/>), so that every worker's sampler stays where one
    /// process's would be, and run forward and backward on this worker's A of them (Rank × A … Rank × A + A − 1),
    /// adding 1/(N × A) of each gradient; sum the gradients across workers in rank order; clip the global norm; AdamW
    /// at the schedule's rate; refresh the 16-bit compute copies. N workers with A each take exactly the step one
    /// process with N × A takes (bit for bit at N = 2, where the sum of two partial gradients has one order).
    /// </summary>
    /// <param name="cancellationToken">Checked before the step starts, never during it: a cancelled token leaves the
    /// trainer exactly at the step boundary (weights, moments and sampler untouched), so <see cref="Save"/> then
    /// writes a checkpoint that resumes bit-identically.</param>
    /// <exception cref="InvalidOperationException">The schedule is complete.</exception>
    /// <exception cref="NonFiniteValuesException">The loss or the gradient norm is not finite and
    /// <see cref="TrainingSettings.OnNonFinite"/> is <see cref="NonFiniteStepPolicy.Stop"/> (the weights and moments
    /// are left unchanged).</exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> is cancelled; nothing ran.</exception>
    public TrainingStep RunStep(CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(disposed, this);
        cancellationToken.ThrowIfCancellationRequested();
        if (Step >= Settings.Steps)
            throw new InvalidOperationException($"The run is complete: {Step} of {Settings.Steps} steps.");
        var started = Stopwatch.GetTimestamp();
        var accumulation = Settings.GradAccum;
        var microBatches = accumulation * reducer.Workers;

        gradients.Zero();
        var loss = 0.0;
        for (var micro = 0; micro < microBatches; micro++)
        {
            windowSource.Next(windows);
            if (micro / accumulation != reducer.Rank)
                continue;
            var documents = separator is { } id ? DocumentPacking.Offsets(windows, id) : null;
            loss += Model.ForwardBackward(windows, gradients, Settings.Mode, 1f / microBatches, Settings.Keep,
                documents) / microBatches;
        }
        var reduceStarted = Stopwatch.GetTimestamp();
        loss = reducer.Reduce(gradients, loss);
        var reduceSeconds = Stopwatch.GetElapsedTime(reduceStarted).TotalSeconds;
        var norm = FiniteGlobalNorm(loss);
        var rate = schedule.At(Step + 1);
        if (norm is { } finite)
        {
            optimizer.Step(gradients.Tensors, rate, GradientClipping.ClipScale(finite, Settings.Clip));
            Model.RefreshComputeWeights();
        }
        else
        {
            SkippedSteps++;
        }
        Model.Device.Synchronize();

        Step++;
        return new TrainingStep(Step, loss, rate, norm ?? double.NaN, (long)microBatches * Settings.Batch * Settings.SeqLen,
            Stopwatch.GetElapsedTime(started).TotalSeconds, Skipped: norm is null, reduceSeconds);
    }

    /// <summary>The global gradient norm, or null when this step is to be skipped because the loss or the norm is not
    /// finite.</summary>
    /// <exception cref="NonFiniteValuesException">Not finite, and the policy is to stop.</exception>
    private double? FiniteGlobalNorm(double loss)
    {
        string problem;
        try
        {
            var norm = GradientClipping.GlobalNorm(gradientList);
            if (double.IsFinite(loss))
                return norm;
            problem = $"the training loss is {loss.ToString(CultureInfo.InvariantCulture)}";
        }
        catch (ArithmeticException e)
        {
            problem = e.Message;
        }
        if (Settings.OnNonFinite == NonFiniteStepPolicy.Skip)
            return null;
        throw new NonFiniteValuesException(
            $"Step {Step + 1}: {problem}. Training stopped; the weights and the optimiser are as after step {Step} " +
            $"(the last checkpoint is in {OutputFolder}). Lower the learning rate, clip harder, or skip such steps " +
            "(NonFiniteStepPolicy.Skip, the command line's --on-non-finite skip).", null, null);
    }

    /// <summary>
    /// Runs steps until the schedule's end or <paramref name="stopAfter"/>, with what happens between steps: reports
    /// each step, evaluates on the validation data every <see cref="TrainingSettings.EvalEvery"/> steps (and after
    /// the schedule's last step), saves a checkpoint every <see cref="TrainingSettings.SaveEvery"/> steps and at the
    /// end. A cancelled token stops at the next step boundary and saves the checkpoint, so no finished step is lost.
    /// Of data-parallel workers only worker 0 evaluates and saves.
    /// </summary>
    /// <param name="stopAfter">The step to stop after (default: the schedule's last).</param>
    /// <param name="onStep">Called after every step.</param>
    /// <param name="onEvaluation">Called after every evaluation with the step it followed.</param>
    /// <param name="cancellationToken">Stops the run at the next step boundary.</param>
    public TrainingRun Run(int? stopAfter = null, Action<TrainingStep>? onStep = null,
        Action<int, Evaluation>? onEvaluation = null, CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(disposed, this);
        var stop = Math.Min(stopAfter ?? Settings.Steps, Settings.Steps);
        var (steps, tokens, seconds, saved) = (0, 0L, 0.0, -1);
        var leader = reducer.Rank == 0;
        while (Step < stop)
        {
            TrainingStep step;
            try
            {
                step = RunStep(cancellationToken);
            }
            catch (OperationCanceledException)
            {
                break;
            }
            (steps, tokens, seconds) = (steps + 1, tokens + step.Tokens, seconds + step.Seconds);
            onStep?.Invoke(step);
            var last = step.Step == stop;
            if (leader && HasValidation &&
                ((Settings.EvalEvery > 0 && step.Step % Settings.EvalEvery == 0) || (last && step.Step == Settings.Steps)))
                onEvaluation?.Invoke(step.Step, EvaluateValidation());
            if (leader && ((Settings.SaveEvery > 0 && step.Step % Settings.SaveEvery == 0) || last))
            {
                Save();
                saved = Step;
            }
        }
        var interrupted = cancellationToken.IsCancellationRequested && Step < stop;
        if (leader && interrupted && saved != Step)
            Save();
        return new TrainingRun(steps, tokens, seconds, interrupted);
    }

    /// <summary>The model's loss over the whole validation data (windows of T + 1 with stride T).</summary>
    /// <exception cref="InvalidOperationException">No validation data was given.</exception>
    public Evaluation EvaluateValidation()
    {
        ObjectDisposedException.ThrowIf(disposed, this);
        return Model.Evaluate(data.Validation ?? throw new InvalidOperationException("No validation data was given."),
            Settings.SeqLen, Settings.Batch, Settings.Mode, data.Tokenizer, separator);
    }

    /// <summary>
    /// Writes the checkpoint: trainer.safetensors (weights, moments, step, sampler, settings) first, then the model
    /// folder, each file atomically, from one copy of the weights on the host. <see cref="Resume"/> reads
    /// trainer.safetensors alone, so a kill between the files resumes from the new step; the model folder then still
    /// holds the previous save's model, whole, until the next save.
    /// </summary>
    /// <exception cref="InvalidOperationException">This is not worker 0 of a data-parallel run (only it writes), or
    /// the run replays recorded windows (a checkpoint could not say where a resumed run continues).</exception>
    public void Save()
    {
        ObjectDisposedException.ThrowIf(disposed, this);
        if (reducer.Rank != 0)
            throw new InvalidOperationException(
                $"Worker {reducer.Rank} of {reducer.Workers} called Save; only worker 0 writes the checkpoints.");
        if (!ReferenceEquals(windowSource, sampler))
            throw new InvalidOperationException(
                "This run replays recorded windows (Trainer.StartReplaying); it cannot be checkpointed.");
        Directory.CreateDirectory(OutputFolder);
        var weights = Model.ExportWeights();
        var tensors = new Dictionary<string, HostTensor>();
        foreach (var (name, tensor) in weights)
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
            ["settings"] = Settings.ToJson(),
            ["config"] = Model.Config.ToJson(),
            [WorkersKey] = reducer.Workers.ToString(CultureInfo.InvariantCulture),
        });
        ModelFolder.Save(OutputFolder, Model.Config, weights);
        if (tokenizerFolder is not null)
            CopyTokenizerFiles(tokenizerFolder, OutputFolder);
    }

    private static void CopyTokenizerFiles(string from, string to)
    {
        if (string.Equals(Path.GetFullPath(from), Path.GetFullPath(to), StringComparison.Ordinal))
            return;
        foreach (var name in SentencePieceTokenizer.FolderFiles)
        {
            var source = Path.Combine(from, name);
            if (!File.Exists(source))
                continue;
            var data = File.ReadAllBytes(source);
            AtomicFile.Write(Path.Combine(to, name), stream => stream.Write(data));
        }
    }

    private void Restore(SavedRun saved)
    {
        optimizer.ImportState(saved.Optimizer);
        Step = saved.Step;
    }

    /// <summary>Frees the gradients and the optimiser, and the model and the data when the trainer opened them.</summary>
    public void Dispose()
    {
        if (disposed)
            return;
        disposed = true;
        optimizer.Dispose();
        gradients.Dispose();
        if (!ownsModelAndData)
            return;
        Model.Dispose();
        data.Train.Dispose();
        data.Validation?.Dispose();
    }

    /// <summary>What trainer.safetensors holds.</summary>
    private sealed record SavedRun(ILanguageModel Model, TrainingSettings Settings, int Step, ulong[] SamplerState,
        AdamWState Optimizer, int Workers)
    {
        public static SavedRun Read(RetNetDevice device, string folder)
        {
            var path = Path.Combine(folder, StateFile);
            if (!File.Exists(path))
                throw new FileNotFoundException(
                    $"The folder {folder} has no {StateFile}: it is not a training checkpoint.", path);
            var file = Safetensors.Read(path);
            string Meta(string key) => file.Metadata.TryGetValue(key, out var value)
                ? value
                : throw new InvalidDataException($"{path}: the metadata lacks '{key}'.");
            TrainingSettings settings;
            int step;
            ulong[] samplerState;
            long optimizerSteps;
            int workers;
            try
            {
                settings = TrainingSettings.FromJson(Meta("settings"));
                step = int.Parse(Meta("step"), CultureInfo.InvariantCulture);
                samplerState = Meta("sampler").Split(',').Select(s => ulong.Parse(s, CultureInfo.InvariantCulture))
                    .ToArray();
                optimizerSteps = long.Parse(Meta("optimizer_steps"), CultureInfo.InvariantCulture);
                // Checkpoints written before data-parallel training have no count: one worker wrote them.
                workers = file.Metadata.TryGetValue(WorkersKey, out var count)
                    ? int.Parse(count, CultureInfo.InvariantCulture)
                    : 1;
            }
            catch (Exception e) when (e is FormatException or OverflowException)
            {
                throw new InvalidDataException($"{path}: malformed metadata ({e.Message}).", e);
            }
            var weights = file.Tensors.Where(kv => kv.Key.StartsWith(ParameterPrefix, StringComparison.Ordinal))
                .ToDictionary(kv => kv.Key[ParameterPrefix.Length..], kv => kv.Value);
            var moments = file.Tensors.Where(kv => kv.Key.StartsWith(OptimizerPrefix, StringComparison.Ordinal))
                .ToDictionary(kv => kv.Key[OptimizerPrefix.Length..], kv => kv.Value);
            var model = LanguageModel.FromWeights(device, ModelConfig.FromJson(Meta("config")), weights,
                weightType: TensorDType.Float32);
            return new SavedRun(model, settings, step, samplerState, new AdamWState(optimizerSteps, moments), workers);
        }
    }
}
