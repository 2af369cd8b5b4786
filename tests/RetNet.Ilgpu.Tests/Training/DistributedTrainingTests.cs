using System.Diagnostics;
using RetNet.Ilgpu.IO;
using RetNet.Ilgpu.Model;
using RetNet.Ilgpu.Tests.Model;
using RetNet.Ilgpu.Tests.Robustness;
using RetNet.Ilgpu.Training;
using RetNet.Ilgpu.Training.Data;

namespace RetNet.Ilgpu.Tests.Training;

/// <summary>
/// A fact that runs <c>retnet train</c> under OpenMPI's mpirun: skipped where mpirun is not on the PATH, and outside the
/// host CPU lane (the children train on the CPU with host execution; the other lanes would only repeat that).
/// </summary>
public sealed class FactWithMpirunAttribute : FactAttribute
{
    /// <summary>Sets <see cref="FactAttribute.Skip"/> where the job cannot or need not run.</summary>
    public FactWithMpirunAttribute()
    {
        var execution = Environment.GetEnvironmentVariable(CpuExecutions.EnvironmentVariable);
        if (MpiJob.Mpirun is null)
            Skip = "mpirun is not on the PATH (Debian: apt-get install openmpi-bin).";
        else if (!string.IsNullOrEmpty(execution) && !execution.Equals("host", StringComparison.OrdinalIgnoreCase))
            Skip = $"{CpuExecutions.EnvironmentVariable} is '{execution}': the MPI jobs run in the host CPU lane only.";
    }
}

/// <summary>Runs <c>mpirun … dotnet retnet.dll …</c> as a child process, every wait bounded.</summary>
public static class MpiJob
{
    /// <summary>mpirun's path on the PATH, or null.</summary>
    public static string? Mpirun { get; } = (Environment.GetEnvironmentVariable("PATH") ?? "")
        .Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries)
        .Select(folder => Path.Combine(folder, "mpirun"))
        .FirstOrDefault(File.Exists);

    /// <summary>mpirun --oversubscribe with <paramref name="arguments"/>, where every "retnet" is replaced by
    /// <c>dotnet retnet.dll</c>.</summary>
    public static Process Start(IEnumerable<string> arguments, List<string> output)
    {
        var info = new ProcessStartInfo(Mpirun ?? throw new InvalidOperationException("mpirun is not on the PATH."))
        {
            RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false,
        };
        // OpenMPI refuses to run as root without both; the test machines and containers often are root.
        info.Environment["OMPI_ALLOW_RUN_AS_ROOT"] = "1";
        info.Environment["OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"] = "1";
        info.Environment[CpuExecutions.EnvironmentVariable] = "host";
        info.ArgumentList.Add("--oversubscribe");
        foreach (var argument in arguments)
        {
            if (argument != "retnet")
            {
                info.ArgumentList.Add(argument);
                continue;
            }
            info.ArgumentList.Add("dotnet");
            info.ArgumentList.Add(ChildProcess.RetnetDll);
        }
        return ChildProcess.Drained(
            Process.Start(info) ?? throw new InvalidOperationException("mpirun did not start."), output);
    }

    /// <summary>Runs the job to its end, killing its process tree after <paramref name="timeout"/> (default 60 s).</summary>
    public static (int ExitCode, string Output) Run(IEnumerable<string> arguments, TimeSpan? timeout = null)
    {
        var output = new List<string>();
        using var process = Start(arguments, output);
        Finish(process, output, timeout ?? TimeSpan.FromSeconds(60));
        lock (output)
            return (process.ExitCode, string.Join('\n', output));
    }

    /// <summary>Waits for the job at most <paramref name="timeout"/>; past it kills the whole tree and fails.</summary>
    public static void Finish(Process process, List<string> output, TimeSpan timeout)
    {
        if (!process.WaitForExit(timeout))
        {
            process.Kill(entireProcessTree: true);
            process.WaitForExit(TimeSpan.FromSeconds(10));
            lock (output)
                Assert.Fail($"the MPI job ran past {timeout.TotalSeconds} s:\n{string.Join('\n', output.TakeLast(30))}");
        }
        process.WaitForExit();
    }
}

/// <summary>
/// Data-parallel training under mpirun takes exactly the steps of one process accumulating all the ranks' micro-batches;
/// the ranks refuse to start when they disagree; a rank that dies ends the job and leaves the last checkpoint whole.
/// </summary>
public sealed class DistributedTrainingTests : IDisposable
{
    private const int Steps = 3;
    private readonly string root = Directory.CreateTempSubdirectory("retnet-mpi-").FullName;
    private readonly string model;
    private readonly string data;

    public DistributedTrainingTests()
    {
        model = Path.Combine(root, "model");
        data = Path.Combine(root, "train.bin");
        using var device = RetNetDevice.Open(DeviceKind.Cpu, CpuExecution.Host);
        using (var created = LanguageModel.Create(device, ModelTestSupport.Micro(), seed: 5))
            created.Save(model);
        TokenDataset.WriteTokenFile(data, Enumerable.Range(0, 2_000).Select(i => (i * 7 + i / 13) % 40).ToArray());
    }

    public void Dispose() => Directory.Delete(root, recursive: true);

    private string[] Train(string output, int accumulation, int steps = Steps) =>
    [
        "train", "--model", model, "--data", data, "--output", output, "--steps", steps.ToString(), "--batch", "2",
        "--seq-len", "8", "--chunk-size", "4", "--grad-accum", accumulation.ToString(), "--device", "cpu",
    ];

    private string OneProcess(string name, int accumulation)
    {
        var output = Path.Combine(root, name);
        var (code, _, lines) = ChildProcess.Run(ChildProcess.RetnetDll, Train(output, accumulation));
        Assert.True(code == 0, string.Join('\n', lines));
        return output;
    }

    private static void Succeeded((int ExitCode, string Output) job) => Assert.True(job.ExitCode == 0, job.Output);

    [FactWithMpirun]
    public void Two_ranks_with_grad_accum_1_write_the_bytes_of_one_process_with_grad_accum_2_also_across_a_resume()
    {
        var single = OneProcess("single", accumulation: 2);
        var ranks = Path.Combine(root, "two-ranks");
        Succeeded(MpiJob.Run(["-np", "2", "retnet", .. Train(ranks, 1), "--stop-after", "2"]));
        var resumed = MpiJob.Run(["-np", "2", "retnet", "train", "--resume", ranks]);
        Succeeded(resumed);
        Assert.Contains($"resuming {ranks} at step 2 of {Steps}", resumed.Output);

        Assert.Null(FirstDifference(single, ranks));

        // Negative controls, through the same comparison: a reducer that drops rank 1's gradient, and one that takes
        // rank 0's twice (an allgather that returned its own bucket), each write other bytes.
        Assert.NotNull(FirstDifference(single, InProcessRun("drops-rank-1", new RankZeroOnly(duplicate: false))));
        Assert.NotNull(FirstDifference(single, InProcessRun("rank-0-twice", new RankZeroOnly(duplicate: true))));
        // What makes the controls fair: this process, training as one worker, writes the expected bytes.
        Assert.Null(FirstDifference(single, InProcessRun("one-worker", SingleWorker.Instance)));
    }

    [FactWithMpirun]
    public void Three_ranks_match_one_process_with_grad_accum_3_within_1e5_of_each_tensors_largest_value()
    {
        var single = OneProcess("single", accumulation: 3);
        var ranks = Path.Combine(root, "three-ranks");
        Succeeded(MpiJob.Run(["-np", "3", "retnet", .. Train(ranks, 1)]));
        var expected = Safetensors.Read(Path.Combine(single, "model.safetensors")).Tensors;

        Assert.Null(Mismatch(expected, Safetensors.Read(Path.Combine(ranks, "model.safetensors")).Tensors));
        // Negative control: the micro-batches of two ranks rather than three are rejected.
        var two = InProcessRun("two", SingleWorker.Instance);
        Assert.NotNull(Mismatch(expected, Safetensors.Read(Path.Combine(two, "model.safetensors")).Tensors));
    }

    [FactWithMpirun]
    public void Ranks_started_with_different_steps_all_fail_naming_the_setting_and_both_values()
    {
        var output = Path.Combine(root, "mpmd");
        var job = MpiJob.Run(["-np", "1", "retnet", .. Train(output, 1, steps: 3), ":", "-np", "1", "retnet",
            .. Train(output, 1, steps: 4)]);

        Assert.NotEqual(0, job.ExitCode);
        Assert.Contains("error (rank 0 of 2): The 2 ranks of this run disagree on --steps (rank 0 has '3', rank 1 has '4')",
            job.Output);
        Assert.Contains("error (rank 1 of 2)", job.Output);
        Assert.False(File.Exists(Path.Combine(output, Trainer.StateFile)), "no checkpoint may be written");
        // The negative control is the first fact's jobs: ranks started alike train and write.
    }

    [FactWithMpirun]
    public void A_rank_that_fails_alone_aborts_the_whole_job_instead_of_leaving_the_others_waiting()
    {
        var output = Path.Combine(root, "failed-alone");
        var missing = Path.Combine(root, "missing.bin");
        var alone = Train(output, 1);
        alone[Array.IndexOf(alone, data)] = missing;

        var job = MpiJob.Run(["-np", "1", "retnet", .. Train(output, 1), ":", "-np", "1", "retnet", .. alone]);

        Assert.NotEqual(0, job.ExitCode);
        Assert.Contains("error (rank 1 of 2):", job.Output);
        Assert.Contains("MPI_ABORT was invoked on rank 1", job.Output);
        Assert.False(File.Exists(Path.Combine(output, Trainer.StateFile)), "no checkpoint may be written");
    }

    [FactWithMpirun]
    public void Resuming_with_another_world_size_is_refused_naming_both_sizes()
    {
        var checkpoint = InProcessRun("one-worker", SingleWorker.Instance, stopAfter: 1);

        var job = MpiJob.Run(["-np", "2", "retnet", "train", "--resume", checkpoint]);

        Assert.NotEqual(0, job.ExitCode);
        Assert.Contains("was trained by 1 data-parallel worker(s); this run has 2", job.Output);
    }

    [FactWithMpirun]
    public void A_rank_killed_mid_run_ends_the_job_within_a_minute_and_leaves_the_last_checkpoint_whole()
    {
        var checkpoint = Path.Combine(root, "killed");
        var output = new List<string>();
        using var job = MpiJob.Start(["-np", "2", "retnet", .. Train(checkpoint, 1, steps: 100_000), "--save-every", "1"],
            output);
        var watch = Stopwatch.StartNew();
        bool Printed(string text)
        {
            lock (output)
                return output.Any(line => line.Contains(text, StringComparison.Ordinal));
        }
        while (!Printed("step 3/") && !job.HasExited && watch.Elapsed < TimeSpan.FromSeconds(60))
            Thread.Sleep(20);
        Assert.False(job.HasExited, string.Join('\n', output));
        var rank1 = RankProcess(job.Id, rank: 1);
        Assert.True(rank1 is not null, "rank 1's process was not found among mpirun's descendants");
        rank1.Kill();

        var killed = Stopwatch.StartNew();
        MpiJob.Finish(job, output, TimeSpan.FromSeconds(60));
        Assert.NotEqual(0, job.ExitCode);
        Assert.True(killed.Elapsed < TimeSpan.FromSeconds(60), $"the job took {killed.Elapsed} to end");
        var state = Safetensors.Read(Path.Combine(checkpoint, Trainer.StateFile));
        Assert.True(int.Parse(state.Metadata["step"]) >= 3);
        using var device = RetNetDevice.Open(DeviceKind.Cpu, CpuExecution.Host);
        using var saved = LanguageModel.Load(device, checkpoint);
        Assert.Equal(ModelTestSupport.Micro().VocabSize, saved.VocabSize);
    }

    /// <summary>The descendant of <paramref name="ancestor"/> whose environment says OMPI_COMM_WORLD_RANK =
    /// <paramref name="rank"/> (Linux /proc).</summary>
    private static Process? RankProcess(int ancestor, int rank)
    {
        var marker = $"OMPI_COMM_WORLD_RANK={rank}";
        foreach (var folder in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(folder), out var pid) || !Descends(pid, ancestor))
                continue;
            try
            {
                if (File.ReadAllText(Path.Combine(folder, "environ")).Split('\0').Contains(marker))
                    return Process.GetProcessById(pid);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException)
            {
                // The process ended while being read.
            }
        }
        return null;
    }

    private static bool Descends(int pid, int ancestor)
    {
        for (var hops = 0; hops < 16 && pid > 1; hops++)
        {
            string stat;
            try
            {
                stat = File.ReadAllText($"/proc/{pid}/stat");
            }
            catch (IOException)
            {
                return false;
            }
            // "pid (comm) state ppid …": the command may hold spaces and parentheses, so read after the last ')'.
            pid = int.Parse(stat[(stat.LastIndexOf(')') + 2)..].Split(' ')[1]);
            if (pid == ancestor)
                return true;
        }
        return false;
    }

    /// <summary>Where the model.safetensors of two checkpoint folders first differ, by tensor and element, or null when
    /// their bytes are equal.</summary>
    private static string? FirstDifference(string expectedFolder, string actualFolder)
    {
        var (expected, actual) = (Path.Combine(expectedFolder, "model.safetensors"),
            Path.Combine(actualFolder, "model.safetensors"));
        if (File.ReadAllBytes(expected).AsSpan().SequenceEqual(File.ReadAllBytes(actual)))
            return null;
        var (e, a) = (Safetensors.Read(expected).Tensors, Safetensors.Read(actual).Tensors);
        foreach (var (name, tensor) in e)
        {
            if (!a.TryGetValue(name, out var other))
                return $"{name} is missing";
            var index = tensor.Data.AsSpan().CommonPrefixLength(other.Data);
            if (index < tensor.Data.Length)
                return $"{name}[{index}]: {tensor.Data[index]:R} against {other.Data[index]:R}";
        }
        return "the files differ outside the tensors";
    }

    /// <summary>The name of the first tensor whose largest difference exceeds 1e-5 of its largest |value|, or null.</summary>
    private static string? Mismatch(IReadOnlyDictionary<string, HostTensor> expected,
        IReadOnlyDictionary<string, HostTensor> actual)
    {
        Assert.Equal(expected.Keys.Order(), actual.Keys.Order());
        foreach (var (name, tensor) in expected)
        {
            var (e, a) = (tensor.Data, actual[name].Data);
            var scale = e.Max(v => Math.Abs(v));
            var difference = e.Zip(a, (x, y) => Math.Abs(x - y)).Max();
            if (!(difference <= 1e-5 * scale))
                return $"{name}: largest difference {difference} against largest |value| {scale}";
        }
        return null;
    }

    /// <summary>Trains in this process as worker 0 with <paramref name="reducer"/>, with the settings of
    /// <see cref="Train"/> for one process with <c>--grad-accum 2</c> (as 2 workers × 1 when the reducer has 2), and
    /// returns the checkpoint folder it writes (after <paramref name="stopAfter"/> steps when given).</summary>
    private string InProcessRun(string name, IGradientReducer reducer, int? stopAfter = null)
    {
        var output = Path.Combine(root, name);
        using var device = RetNetDevice.Open(DeviceKind.Cpu, CpuExecution.Host);
        using var loaded = LanguageModel.Load(device, model, weightType: TensorDType.Float32);
        using var train = TokenDataset.Open([data], null, loaded.VocabSize);
        var settings = new TrainingSettings
        {
            Steps = Steps, Batch = 2, SeqLen = 8, ChunkSize = 4, GradAccum = 2 / reducer.Workers, Data = [data],
        };
        using (var trainer = Trainer.Start(loaded, new TrainingData(train), settings, output, reducer))
            trainer.Run(stopAfter);
        return output;
    }

    /// <summary>Worker 0 of 2 that never hears from worker 1: the sum is its own gradient, or twice it.</summary>
    private sealed class RankZeroOnly(bool duplicate) : IGradientReducer
    {
        public int Workers => 2;

        public int Rank => 0;

        public double Reduce(ModelGradients gradients, double loss)
        {
            if (!duplicate)
                return loss;
            foreach (var tensor in gradients.Tensors.Values)
            {
                var values = tensor.ToHost();
                RankOrderSum.Sum([.. values, .. values], 2, values);
                tensor.CopyFromHost(values);
            }
            return 2 * loss;
        }

        public void Broadcast(IReadOnlyList<Tensor> tensors)
        {
        }

        public void Agree(IReadOnlyList<KeyValuePair<string, string>> facts)
        {
        }
    }
}
