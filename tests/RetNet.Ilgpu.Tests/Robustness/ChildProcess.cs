using System.Diagnostics;

namespace RetNet.Ilgpu.Tests.Robustness;

/// <summary>Runs the built retnet tool, or this test assembly's <see cref="CrashChild"/>, as a child process.</summary>
public static class ChildProcess
{
    /// <summary>The retnet tool built beside this test assembly: src/RetNet.Ilgpu.Cli/bin/CONFIGURATION/TFM/retnet.dll
    /// for tests/RetNet.Ilgpu.Tests/bin/CONFIGURATION/TFM/ (the test project references the tool so that it is built
    /// first).</summary>
    public static string RetnetDll
    {
        get
        {
            var output = new DirectoryInfo(AppContext.BaseDirectory.TrimEnd(Path.DirectorySeparatorChar));
            var framework = output.Name;
            var configuration = output.Parent!.Name;
            var repository = output.Parent.Parent!.Parent!.Parent!.Parent!.FullName;
            var path = Path.Combine(repository, "src", "RetNet.Ilgpu.Cli", "bin", configuration, framework, "retnet.dll");
            return File.Exists(path)
                ? path
                : throw new FileNotFoundException($"The retnet tool is not built at {path}; build the solution first.", path);
        }
    }

    /// <summary>This test assembly, whose entry point is <see cref="CrashChild.Main"/>.</summary>
    public static string TestDll => typeof(CrashChild).Assembly.Location;

    /// <summary>Starts <c>dotnet DLL ARGS…</c> with its output drained (and kept in <paramref name="output"/>).</summary>
    public static Process Start(string dll, IEnumerable<string> arguments, List<string>? output = null)
    {
        var info = new ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false,
        };
        // What is written, and how, does not depend on how the CPU accelerator runs kernels: children always take
        // the fast host execution, also in the simulator lane.
        info.Environment["RETNET_CPU_EXECUTION"] = "host";
        info.ArgumentList.Add(dll);
        foreach (var argument in arguments)
            info.ArgumentList.Add(argument);
        return Drained(Process.Start(info) ?? throw new InvalidOperationException("dotnet did not start."), output);
    }

    /// <summary>Reads a started process's standard output and error as they come (a full pipe would block it),
    /// keeping the lines in <paramref name="output"/> when given.</summary>
    public static Process Drained(Process process, List<string>? output)
    {
        void Keep(object sender, DataReceivedEventArgs e)
        {
            if (e.Data is not null && output is not null)
                lock (output)
                    output.Add(e.Data);
        }
        process.OutputDataReceived += Keep;
        process.ErrorDataReceived += Keep;
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return process;
    }

    /// <summary>Runs to the end (at most <paramref name="timeout"/>); the exit code and the seconds it took.</summary>
    public static (int ExitCode, double Seconds, List<string> Output) Run(string dll, IEnumerable<string> arguments,
        TimeSpan? timeout = null)
    {
        var output = new List<string>();
        var watch = Stopwatch.StartNew();
        using var process = Start(dll, arguments, output);
        if (!process.WaitForExit(timeout ?? TimeSpan.FromSeconds(60)))
        {
            process.Kill();
            throw new TimeoutException($"dotnet {dll} {string.Join(' ', arguments)} ran past its time:\n" +
                                       string.Join('\n', output));
        }
        process.WaitForExit();
        return (process.ExitCode, watch.Elapsed.TotalSeconds, output);
    }

    /// <summary>Starts the child and kills it (SIGKILL on Unix: no handler runs) after <paramref name="delay"/>, or
    /// lets it finish first; null when it was killed, else how long it ran.</summary>
    public static TimeSpan? RunAndKill(string dll, IEnumerable<string> arguments, TimeSpan delay)
    {
        var watch = Stopwatch.StartNew();
        using var process = Start(dll, arguments);
        if (process.WaitForExit(delay))
            return watch.Elapsed;
        process.Kill();
        process.WaitForExit();
        return null;
    }
}
