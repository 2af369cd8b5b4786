using System.Globalization;
using System.Text.Json;
using RetNet.Ilgpu.IO;
using RetNet.Ilgpu.Model;
using RetNet.Ilgpu.Tensors;
using RetNet.Ilgpu.Tests.Support;
using RetNet.Ilgpu.Training;
using RetNet.Ilgpu.Training.Data;
using Xunit.Abstractions;

namespace RetNet.Ilgpu.Tests.Training;

/// <summary>
/// The trainer against torchscale's own training, step for step (tools/torchscale-trajectory writes the fixture under
/// Fixtures/TorchscaleTrajectory): from torchscale's initial state dict, on the windows torchscale trained on, 50 steps
/// of clipping, schedule and AdamW must give torchscale's loss at every step and its weights after the last. Each
/// tolerance is paired with runs that get one part of the recipe wrong, which the same check must reject.
/// </summary>
[Collection(DeviceCollection.Name)]
public sealed class TorchscaleTrajectoryTests(DeviceFixture fixture, HostCpu hostCpu, ITestOutputHelper log)
    : IClassFixture<HostCpu>
{
    /// <summary>Each step's loss, relative to torchscale's (float64) loss of that step.</summary>
    private const double LossTolerance = 1e-4;

    /// <summary>Each final weight tensor, relative to the largest |value| of torchscale's tensor.</summary>
    private const double WeightTolerance = 1e-3;

    /// <summary>Each step's pre-clip gradient norm, relative to torchscale's: it follows the weights, and is what the
    /// clip scale is formed from.</summary>
    private const double GradientNormTolerance = 1e-4;

    private const string Name = "tiny-t16";

    // The lane's device, except ILGPU's CPU simulator, where these seven runs of 50 steps would take some 17 minutes
    // (every kernel they launch is held to its reference through the simulator by its own tests): there, the CPU
    // accelerator in host execution.
    private readonly RetNetDevice device = fixture.Device.IsCpuSimulator ? hostCpu.WithHostExecution(fixture.Device)
        : fixture.Device;

    /// <summary>The forms the trainer is held to the fixture in: parallel (torchscale's) and chunkwise with chunks
    /// shorter than the windows (the trainer's default form).</summary>
    public static TheoryData<string> Forms => new(["parallel", "chunkwise-4"]);

    [Fact]
    public void The_fixture_is_the_recipe_of_retnet_train()
    {
        var f = TorchscaleTrajectory.Load(Name);
        Assert.Equal(f.Settings.Steps, f.Losses.Count);
        Assert.Equal(f.Settings.Steps, f.Windows.Count);
        Assert.All(f.Windows, w => Assert.Equal([f.Settings.Batch, f.Settings.SeqLen + 1],
            new[] { w.GetLength(0), w.GetLength(1) }));
        var schedule = f.Settings.LearningRates;
        for (var step = 1; step <= f.Settings.Steps; step++)
            Assert.True(Math.Abs(schedule.At(step) - f.Rates[step - 1]) <= 1e-15 * f.Settings.LearningRate,
                $"step {step}: LearningRateSchedule.At gives {schedule.At(step):R}; torchscale's run used " +
                $"{f.Rates[step - 1]:R}.");
        var initial = Safetensors.Read(Path.Combine(f.Folder, "model.safetensors")).Tensors;
        var decayed = initial.Where(kv => AdamW.DecaysByDefault(kv.Key, kv.Value.Shape.Length))
            .Select(kv => kv.Key).Order(StringComparer.Ordinal);
        Assert.Equal(decayed, f.Decayed.Order(StringComparer.Ordinal));
    }

    [Theory, MemberData(nameof(Forms))]
    public void The_trainer_follows_torchscales_trajectory_step_for_step(string form)
    {
        var f = TorchscaleTrajectory.Load(Name);
        var settings = f.Settings with { Form = FormOf(form), ChunkSize = ChunkSizeOf(form) };
        var run = TrainWithTrainer(f, settings);
        var checks = Compare(f, run);
        log.WriteLine($"{form}: {Summary(checks)}");
        var failed = checks.Where(c => !c.Passed).Select(c => c.Message).ToList();
        Assert.True(failed.Count == 0, $"{form}: {failed.Count} of {checks.Count} checks failed: " +
                                       string.Join(" ", failed.Take(8)));
        for (var k = 0; k < run.Rates.Count; k++)
            Assert.Equal(f.Rates[k], run.Rates[k], 1e-15);
        var norms = Numerics.Check($"{form}: pre-clip gradient norms", run.Norms.Select(n => (float)n).ToArray(),
            f.Norms.ToArray(), GradientNormTolerance);
        log.WriteLine(norms.Message);
        Assert.True(norms.Passed, norms.Message);
    }

    [Fact]
    public void The_check_rejects_a_trainer_that_does_not_clip()
    {
        var f = TorchscaleTrajectory.Load(Name);
        Assert.True(f.ClippedSteps > f.Settings.Steps / 2, $"only {f.ClippedSteps} steps were clipped.");
        AssertRejected("no clipping", Compare(f, TrainWithTrainer(f, f.Settings with { Clip = 0 })));
    }

    [Fact]
    public void The_hand_written_loop_of_the_other_controls_passes_without_a_flaw()
    {
        // The controls below change one thing in this loop; it must pass as it is, or their rejection proves nothing.
        var f = TorchscaleTrajectory.Load(Name);
        var checks = Compare(f, TrainByHand(f, AdamW.DecaysByDefault, optimizerStepsBefore: 0));
        log.WriteLine($"by hand: {Summary(checks)}");
        Assert.All(checks, c => Assert.True(c.Passed, c.Message));
    }

    [Fact]
    public void The_check_rejects_weight_decay_on_every_parameter()
    {
        var f = TorchscaleTrajectory.Load(Name);
        AssertRejected("decay on every parameter", Compare(f, TrainByHand(f, (_, _) => true, optimizerStepsBefore: 0)));
    }

    [Fact]
    public void The_check_rejects_adamw_without_bias_correction()
    {
        // Steps already taken make 1 − β^step round to 1: the bias corrections are off from the first step.
        var f = TorchscaleTrajectory.Load(Name);
        AssertRejected("no bias correction", Compare(f, TrainByHand(f, AdamW.DecaysByDefault,
            optimizerStepsBefore: 1_000_000_000)));
    }

    [Fact]
    public void A_run_that_replays_windows_cannot_be_checkpointed()
    {
        // A checkpoint resumes from the sampler's state, which a replayed run never advanced.
        var f = TorchscaleTrajectory.Load(Name);
        using var model = LanguageModel.Load(device, f.Folder, weightType: TensorDType.Float32);
        using var dataset = TokenDataset.FromIds(f.Windows[0].Cast<int>().ToArray(), model.VocabSize);
        var output = Path.Combine(Path.GetTempPath(), $"retnet-trajectory-{Guid.NewGuid():N}");
        using var trainer = Trainer.StartReplaying(model, new TrainingData(dataset), f.Settings with { Steps = 1, Warmup = 0 },
            output, new ReplayedWindows(f.Windows));
        trainer.RunStep();
        var error = Assert.Throws<InvalidOperationException>(trainer.Save);
        Assert.Contains("replays recorded windows", error.Message);
        Assert.False(Directory.Exists(output));
    }

    private void AssertRejected(string control, List<Closeness> checks)
    {
        log.WriteLine($"{control}: {Summary(checks)}");
        NegativeControls.AssertAnyRejected(checks);
    }

    /// <summary>The worst step loss and the worst weight tensor, each as a fraction of its bound (above 1 fails).</summary>
    private static string Summary(List<Closeness> checks)
    {
        static double Worst(IEnumerable<Closeness> c) => c.Max(x => x.MaxDifference / x.Bound);
        var losses = checks.Where(c => c.Message.Contains(" loss:", StringComparison.Ordinal)).ToList();
        var weights = checks.Except(losses).ToList();
        return string.Create(CultureInfo.InvariantCulture,
            $"{checks.Count(c => !c.Passed)} of {checks.Count} checks fail; worst step loss at {Worst(losses):G3} of " +
            $"its bound ({LossTolerance:G2} relative), worst final weight tensor at {Worst(weights):G3} of its bound " +
            $"({WeightTolerance:G2} of its max |value|).");
    }

    private static RetentionForm FormOf(string form) =>
        form == "parallel" ? RetentionForm.Parallel : RetentionForm.Chunkwise;

    private static int ChunkSizeOf(string form) =>
        form.StartsWith("chunkwise-", StringComparison.Ordinal)
            ? int.Parse(form["chunkwise-".Length..], CultureInfo.InvariantCulture)
            : ForwardMode.DefaultChunkSize;

    /// <summary>The library's trainer, its windows replayed from the fixture.</summary>
    private Run TrainWithTrainer(TorchscaleTrajectory f, TrainingSettings settings)
    {
        using var model = LanguageModel.Load(device, f.Folder, weightType: TensorDType.Float32);
        using var dataset = TokenDataset.FromIds(f.Windows.SelectMany(w => w.Cast<int>()).ToArray(), model.VocabSize);
        var output = Path.Combine(Path.GetTempPath(), $"retnet-trajectory-{Guid.NewGuid():N}");
        using var trainer = Trainer.StartReplaying(model, new TrainingData(dataset), settings, output,
            new ReplayedWindows(f.Windows));
        var steps = new List<TrainingStep>();
        while (trainer.Step < settings.Steps)
            steps.Add(trainer.RunStep());
        return new Run(steps.Select(s => s.Loss).ToList(), steps.Select(s => s.LearningRate).ToList(),
            steps.Select(s => s.GradientNorm).ToList(), model.ExportWeights());
    }

    /// <summary>
    /// What <see cref="Trainer.RunStep"/> does, written out with the public parts (zero, forward and backward, global
    /// norm, clip scale, schedule, AdamW), so that a control can change one of them: which parameters decay, and how
    /// many steps the optimiser believes it has taken.
    /// </summary>
    private Run TrainByHand(TorchscaleTrajectory f, Func<string, int, bool> decays, long optimizerStepsBefore)
    {
        var settings = f.Settings;
        using var model = LanguageModel.Load(device, f.Folder, weightType: TensorDType.Float32);
        using var gradients = model.CreateGradients();
        using var optimizer = new AdamW(model.Parameters
            .Select(p => new OptimizedParameter(p.Key, p.Value, decays(p.Key, p.Value.Rank))).ToList(), settings.Optimizer);
        if (optimizerStepsBefore > 0)
            optimizer.ImportState(optimizer.ExportState() with { StepCount = optimizerStepsBefore });
        var list = gradients.Tensors.Values.ToList();
        var schedule = settings.LearningRates;
        var (losses, rates, norms) = (new List<double>(), new List<double>(), new List<double>());
        for (var step = 1; step <= settings.Steps; step++)
        {
            gradients.Zero();
            losses.Add(model.ForwardBackward(f.Windows[step - 1], gradients, settings.Mode));
            var norm = GradientClipping.GlobalNorm(list);
            rates.Add(schedule.At(step));
            norms.Add(norm);
            optimizer.Step(gradients.Tensors, schedule.At(step), GradientClipping.ClipScale(norm, settings.Clip));
        }
        return new Run(losses, rates, norms, model.ExportWeights());
    }

    /// <summary>Every step's loss within <see cref="LossTolerance"/> of torchscale's, and every final weight tensor
    /// within <see cref="WeightTolerance"/> of its largest |value|.</summary>
    private static List<Closeness> Compare(TorchscaleTrajectory f, Run run)
    {
        Assert.Equal(f.Losses.Count, run.Losses.Count);
        var checks = new List<Closeness>();
        for (var k = 0; k < f.Losses.Count; k++)
            checks.Add(Numerics.Check($"step {k + 1} loss", [(float)run.Losses[k]], [f.Losses[k]], LossTolerance));
        Assert.Equal(f.Final.Keys.Order(StringComparer.Ordinal), run.Weights.Keys.Order(StringComparer.Ordinal));
        foreach (var (name, expected) in f.Final)
        {
            Assert.Equal(expected.Shape, run.Weights[name].Shape);
            checks.Add(Numerics.Check($"{name} after step {f.Losses.Count}", run.Weights[name].Data, expected.Data,
                WeightTolerance));
        }
        return checks;
    }

    private sealed record Run(IReadOnlyList<double> Losses, IReadOnlyList<double> Rates, IReadOnlyList<double> Norms,
        IReadOnlyDictionary<string, HostTensor> Weights);

    /// <summary>The fixture's windows, one [B, T + 1] batch per call, in order.</summary>
    private sealed class ReplayedWindows(IReadOnlyList<int[,]> batches) : IWindowSource
    {
        private int next;

        public void Next(int[,] windows)
        {
            if (next == batches.Count)
                throw new InvalidOperationException($"All {batches.Count} recorded batches were replayed.");
            Array.Copy(batches[next++], windows, windows.Length);
        }
    }
}

/// <summary>
/// A fixture folder of tools/torchscale-trajectory: the initial model folder (config.json, model.safetensors with
/// torchscale's keys), windows.txt (one window of T + 1 ids a line, B lines a step), trajectory.json (settings and
/// every step's loss, learning rate and pre-clip gradient norm) and final.safetensors (the parameters after the last
/// step).
/// </summary>
public sealed record TorchscaleTrajectory(string Folder, TrainingSettings Settings, IReadOnlyList<int[,]> Windows,
    IReadOnlyList<double> Losses, IReadOnlyList<double> Rates, IReadOnlyList<double> Norms, int ClippedSteps,
    IReadOnlyList<string> Decayed, IReadOnlyDictionary<string, HostTensor> Final)
{
    /// <summary>The fixtures' folder in the test output.</summary>
    public static string Root { get; } = Path.Combine(AppContext.BaseDirectory, "Fixtures", "TorchscaleTrajectory");

    /// <summary>Reads the fixture <paramref name="name"/>.</summary>
    public static TorchscaleTrajectory Load(string name)
    {
        var folder = Path.Combine(Root, name);
        using var json = JsonDocument.Parse(File.ReadAllText(Path.Combine(folder, "trajectory.json")));
        var root = json.RootElement;
        var s = root.GetProperty("settings");
        double D(string key) => s.GetProperty(key).GetDouble();
        int I(string key) => s.GetProperty(key).GetInt32();
        Assert.Equal("cosine", s.GetProperty("schedule").GetString());
        var settings = new TrainingSettings
        {
            Steps = I("steps"), Batch = I("batch"), SeqLen = I("seq_len"), LearningRate = D("lr"), Warmup = I("warmup"),
            Schedule = ScheduleKind.Cosine, MinLrRatio = D("min_lr_ratio"), Beta1 = D("beta1"), Beta2 = D("beta2"),
            Eps = D("eps"), WeightDecay = D("weight_decay"), Clip = D("clip"),
        };
        var steps = root.GetProperty("steps").EnumerateArray().ToList();
        var lines = File.ReadAllLines(Path.Combine(folder, "windows.txt"));
        Assert.Equal(settings.Steps * settings.Batch, lines.Length);
        var windows = new List<int[,]>();
        for (var step = 0; step < settings.Steps; step++)
        {
            var batch = new int[settings.Batch, settings.SeqLen + 1];
            for (var b = 0; b < settings.Batch; b++)
            {
                var ids = lines[step * settings.Batch + b].Split(' ');
                Assert.Equal(settings.SeqLen + 1, ids.Length);
                for (var t = 0; t <= settings.SeqLen; t++)
                    batch[b, t] = int.Parse(ids[t], CultureInfo.InvariantCulture);
            }
            windows.Add(batch);
        }
        return new TorchscaleTrajectory(folder, settings, windows,
            steps.Select(e => e.GetProperty("loss").GetDouble()).ToList(),
            steps.Select(e => e.GetProperty("lr").GetDouble()).ToList(),
            steps.Select(e => e.GetProperty("grad_norm").GetDouble()).ToList(),
            root.GetProperty("clipped_steps").GetInt32(),
            root.GetProperty("decayed_parameters").EnumerateArray().Select(e => e.GetString()!).ToList(),
            Safetensors.Read(Path.Combine(folder, "final.safetensors")).Tensors);
    }
}
