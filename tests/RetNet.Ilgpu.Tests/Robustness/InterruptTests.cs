using System.Diagnostics;
using RetNet.Ilgpu.Model;
using RetNet.Ilgpu.Tests.Model;
using RetNet.Ilgpu.Tests.Support;
using RetNet.Ilgpu.Training;
using RetNet.Ilgpu.Training.Data;

namespace RetNet.Ilgpu.Tests.Robustness;

/// <summary>
/// A fact that needs POSIX signals: skipped on Windows, where a console's Ctrl+C cannot be sent to one child, and where
/// this process ignores SIGINT (a command started in the background by a non-interactive shell does): a child inherits
/// that, so no Ctrl+C could reach it.
/// </summary>
public sealed class FactWithPosixSignalsAttribute : FactAttribute
{
    /// <summary>Sets <see cref="FactAttribute.Skip"/> where SIGINT cannot reach a child.</summary>
    public FactWithPosixSignalsAttribute()
    {
        if (OperatingSystem.IsWindows())
            Skip = "SIGINT cannot be sent to a single child process on Windows.";
        else if (SigIntIgnored())
            Skip = "this process ignores SIGINT (started in the background by a non-interactive shell), and so would " +
                   "the child: run the tests in the foreground to check Ctrl+C.";
    }

    // /proc/self/status lists the ignored signals as a hexadecimal mask (bit n − 1 for signal n; SIGINT is 2).
    private static bool SigIntIgnored()
    {
        const string path = "/proc/self/status";
        if (!File.Exists(path))
            return false;
        var line = File.ReadLines(path).FirstOrDefault(l => l.StartsWith("SigIgn:", StringComparison.Ordinal));
        return line is not null &&
               (Convert.ToUInt64(line["SigIgn:".Length..].Trim(), 16) & (1UL << 1)) != 0;
    }
}

/// <summary>Ctrl+C (SIGINT) stops <c>retnet train</c> at a step boundary with a resumable checkpoint.</summary>
[Collection(DeviceCollection.Name)]
public sealed class InterruptTests(DeviceFixture fixture) : IDisposable
{
    private readonly string root = Directory.CreateTempSubdirectory("retnet-interrupt-").FullName;

    public void Dispose() => Directory.Delete(root, recursive: true);

    [FactWithPosixSignals]
    public void Sigint_stops_training_at_a_step_boundary_saves_a_resumable_checkpoint_and_exits_130()
    {
        var model = Path.Combine(root, "model");
        using (var created = LanguageModel.Create(fixture.Device, ModelTestSupport.Micro(), seed: 3))
            created.Save(model);
        var data = Path.Combine(root, "train.bin");
        TokenDataset.WriteTokenFile(data, Enumerable.Range(0, 400).Select(i => (i * 7) % 40).ToArray());
        var checkpoint = Path.Combine(root, "checkpoint");
        var output = new List<string>();
        using var process = ChildProcess.Start(ChildProcess.RetnetDll,
        [
            "train", "--model", model, "--data", data, "--output", checkpoint, "--steps", "100000", "--batch", "2",
            "--seq-len", "8", "--chunk-size", "4", "--device", "cpu",
        ], output);
        var watch = Stopwatch.StartNew();
        bool Printed(string prefix)
        {
            lock (output)
                return output.Any(line => line.StartsWith(prefix, StringComparison.Ordinal));
        }
        while (!Printed("step 3/") && !process.HasExited && watch.Elapsed < TimeSpan.FromSeconds(60))
            Thread.Sleep(20);
        Assert.False(process.HasExited, string.Join('\n', output));
        // Through libc rather than the kill program, which a minimal system (the OpenCL lane's chroot) may lack.
        Assert.Equal(0, Signal(process.Id, SigInt));
        if (!process.WaitForExit(TimeSpan.FromSeconds(60)))
        {
            lock (output)
                Assert.Fail($"the run did not stop after SIGINT; its output:\n{string.Join('\n', output.TakeLast(20))}");
        }
        process.WaitForExit();

        var text = string.Join('\n', output);
        Assert.Equal(130, process.ExitCode);
        Assert.Contains($"resume with: retnet train --resume {checkpoint}", text);
        using var resumed = Trainer.Resume(fixture.Device, checkpoint);
        Assert.InRange(resumed.Step, 3, 99_999);
        Assert.Contains($"interrupted after step {resumed.Step} of 100000", text);
        Assert.Contains($"step {resumed.Step}/100000", text);
        Assert.DoesNotContain($"step {resumed.Step + 1}/100000", text);
        resumed.RunStep();
    }

    private const int SigInt = 2;

    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "kill", SetLastError = true)]
    private static extern int Signal(int pid, int signal);
}
