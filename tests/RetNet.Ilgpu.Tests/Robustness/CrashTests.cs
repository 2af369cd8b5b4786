using System.Globalization;
using RetNet.Ilgpu.IO;
using RetNet.Ilgpu.Model;
using RetNet.Ilgpu.Tests.Support;
using RetNet.Ilgpu.Training;
using RetNet.Ilgpu.Training.Data;
using Xunit.Abstractions;

namespace RetNet.Ilgpu.Tests.Robustness;

/// <summary>
/// Kills a real writer (the retnet tool, or <see cref="CrashChild"/>) with SIGKILL after a random, seeded delay, many
/// times, and after every kill loads what it was writing: the previous version or the new one must load, whole,
/// never a mix and never a torn file. <c>RETNET_CRASH_ROUNDS</c> sets the kills per writer (default 24).
/// </summary>
[Collection(DeviceCollection.Name)]
public sealed class CrashTests(DeviceFixture fixture, ITestOutputHelper log) : IDisposable
{
    private readonly RetNetDevice device = fixture.Device;
    private readonly string root = Directory.CreateTempSubdirectory("retnet-crash-").FullName;

    public void Dispose() => Directory.Delete(root, recursive: true);

    private static int Rounds =>
        int.TryParse(Environment.GetEnvironmentVariable("RETNET_CRASH_ROUNDS"), NumberStyles.Integer,
            CultureInfo.InvariantCulture, out var rounds) && rounds > 0 ? rounds : 24;

    /// <summary>Runs <see cref="Rounds"/> kills of <paramref name="child"/>(round), each after a delay drawn
    /// uniformly from [low, high] × the run's duration, checking the target after each; returns how many kills landed
    /// before the child finished. The duration starts at the calibrated one and follows the shortest complete round,
    /// since a machine shared with other jobs makes any single timing unreliable.</summary>
    private static int KillRounds(int seed, TimeSpan duration, double low, double high,
        Func<int, (string Dll, string[] Arguments)> child, Action<int> check)
    {
        var random = new Random(seed);
        var killed = 0;
        for (var round = 0; round < Rounds; round++)
        {
            var (dll, arguments) = child(round);
            var delay = duration * (low + random.NextDouble() * (high - low));
            if (ChildProcess.RunAndKill(dll, arguments, delay) is { } ran)
                duration = ran < duration ? ran : duration;
            else
                killed++;
            check(round);
        }
        return killed;
    }

    private static TimeSpan Calibrate(string dll, params string[] arguments)
    {
        var (code, seconds, output) = ChildProcess.Run(dll, arguments);
        Assert.True(code == 0, $"dotnet {dll} {string.Join(' ', arguments)} failed:\n{string.Join('\n', output)}");
        return TimeSpan.FromSeconds(seconds);
    }

    private static int LeftoverTemporaries(string folder) =>
        Directory.GetFiles(folder, "*.tmp").Length;

    [Fact]
    public void Init_of_alternating_architectures_into_one_folder_always_leaves_one_whole_model()
    {
        var folder = Path.Combine(root, "model");
        string[] Init(int round) => round % 2 == 0
            ? ["init", "--preset", "tiny", "--output", folder, "--device", "cpu"]
            : ["init", "--preset", "tiny", "--arch", "transformer", "--output", folder, "--device", "cpu"];
        var retnet = (Config: RetNetConfig.Preset("tiny").ToJson(), Weights: WeightLayout.Initialize(RetNetConfig.Preset("tiny"), 0));
        var transformer = (Config: TransformerConfig.Preset("tiny").ToJson(),
            Weights: TransformerConfig.Preset("tiny").InitialWeights(0));
        // The first run of a process is slower (cold caches): time the second and third.
        Calibrate(ChildProcess.RetnetDll, Init(0));
        var duration = TimeSpan.FromTicks(Math.Min(Calibrate(ChildProcess.RetnetDll, Init(0)).Ticks,
            Calibrate(ChildProcess.RetnetDll, Init(1)).Ticks));
        var seen = new Dictionary<string, int>();
        var notices = 0;
        // A one-write process spends most of its life starting up: aim the kills at its second half, where it writes.
        var killed = KillRounds(seed: 11, duration, 0.4, 1.1, round => (ChildProcess.RetnetDll, Init(round)), _ =>
        {
            using var model = LanguageModel.Load(device, folder);
            var expected = model.Architecture == "transformer" ? transformer : retnet;
            Assert.Equal(expected.Config, model.Config.ToJson());
            foreach (var (name, tensor) in model.ExportWeights())
                Assert.True(tensor.Data.AsSpan().SequenceEqual(expected.Weights[name].Data), $"{model.Architecture} {name}");
            seen[model.Architecture] = seen.GetValueOrDefault(model.Architecture) + 1;
            notices += model.Notices.Count;
        });
        log.WriteLine($"init: {Rounds} rounds, {killed} killed mid-run; loaded {string.Join(", ", seen)}; " +
                      $"{notices} loads used the config saved with the weights; " +
                      $"{LeftoverTemporaries(folder)} temporary files left by kills");
    }

    [Fact]
    public void Forward_output_is_always_one_whole_result()
    {
        var model = Path.Combine(root, "model");
        using (var created = LanguageModel.Create(device, RetNetConfig.Preset("tiny"), seed: 2))
            created.Save(model);
        var tokens = new[] { Path.Combine(root, "a.txt"), Path.Combine(root, "b.txt") };
        File.WriteAllText(tokens[0], "1 2 3 4 5 6 7 8\n");
        File.WriteAllText(tokens[1], "9 8 7 6 5\n4 3 2 1 0\n");
        var output = Path.Combine(root, "logits.safetensors");
        string[] Forward(int round) =>
            ["forward", "--model", model, "--tokens", tokens[round % 2], "--output", output, "--device", "cpu"];
        var expected = new float[2][];
        var duration = TimeSpan.MaxValue;
        for (var i = 0; i < 3; i++)
        {
            var seconds = Calibrate(ChildProcess.RetnetDll, Forward(i % 2));
            if (i > 0)
                duration = TimeSpan.FromTicks(Math.Min(duration.Ticks, seconds.Ticks));
            expected[i % 2] = Safetensors.Read(output).Tensors["logits"].Data;
        }
        var seen = new int[2];
        var killed = KillRounds(seed: 12, duration, 0.4, 1.1, round => (ChildProcess.RetnetDll, Forward(round)), _ =>
        {
            var logits = Safetensors.Read(output).Tensors["logits"].Data;
            var which = Array.FindIndex(expected, e => e.AsSpan().SequenceEqual(logits));
            Assert.True(which >= 0, "the logits are neither run's");
            seen[which]++;
        });
        log.WriteLine($"forward: {Rounds} rounds, {killed} killed mid-run; loaded a {seen[0]}×, b {seen[1]}×");
    }

    [Fact]
    public void A_training_checkpoint_saved_every_step_always_resumes()
    {
        var model = Path.Combine(root, "model");
        using (var created = LanguageModel.Create(device, Model.ModelTestSupport.Micro(), seed: 3))
            created.Save(model);
        var data = Path.Combine(root, "train.bin");
        TokenDataset.WriteTokenFile(data, Enumerable.Range(0, 400).Select(i => (i * 7) % 40).ToArray());
        var checkpoint = Path.Combine(root, "checkpoint");
        string[] Train(int steps) =>
        [
            "train", "--model", model, "--data", data, "--output", checkpoint, "--steps", steps.ToString(CultureInfo.InvariantCulture),
            "--save-every", "1", "--batch", "2", "--seq-len", "8", "--chunk-size", "4", "--device", "cpu",
        ];
        var duration = Calibrate(ChildProcess.RetnetDll, Train(4));
        var steps = new List<int>();
        var killed = KillRounds(seed: 13, duration, 0, 1.5, _ => (ChildProcess.RetnetDll, Train(200)), _ =>
        {
            using (var trainer = Trainer.Resume(device, checkpoint))
            {
                steps.Add(trainer.Step);
                // A kill before the new run's first save leaves the calibration run's finished checkpoint.
                if (trainer.Step < trainer.Settings.Steps)
                    trainer.RunStep();
            }
            using var loaded = LanguageModel.Load(device, checkpoint);
            Assert.Equal(Model.ModelTestSupport.Micro(), loaded.Config);
        });
        log.WriteLine($"train: {Rounds} rounds, {killed} killed mid-run; resumed at steps {string.Join(",", steps)}; " +
                      $"{LeftoverTemporaries(checkpoint)} temporary files left by kills");
    }

    [Fact]
    public void Decoding_state_and_KV_cache_saves_always_load()
    {
        var folder = Path.Combine(root, "states");
        Directory.CreateDirectory(folder);
        var duration = Calibrate(ChildProcess.TestDll, "states", folder, "3");
        using var retnet = LanguageModel.Create(device, CrashChild.RetNet, seed: 1);
        using var transformer = LanguageModel.Create(device, CrashChild.Transformer, seed: 1);
        var batches = new HashSet<int>();
        var killed = KillRounds(seed: 14, duration, 0, 1.5, _ => (ChildProcess.TestDll, ["states", folder, "0"]), _ =>
        {
            using (var state = DecodingState.Load(Path.Combine(folder, CrashChild.StateFile), retnet))
                batches.Add(state.Batch);
            using var cache = DecodingState.Load(Path.Combine(folder, CrashChild.CacheFile), transformer);
            Assert.All(cache.Positions, length => Assert.InRange(length, 2, 7));
        });
        log.WriteLine($"states: {Rounds} rounds, {killed} killed mid-run; loaded batch sizes {string.Join(",", batches)}");
    }
}
