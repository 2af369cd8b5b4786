using System.CommandLine;
using RetNet.Ilgpu.Kernels;

namespace RetNet.Ilgpu.Cli.Commands;

/// <summary><c>retnet kernels [--check]</c>: the kernel registry, optionally compiled for every GPU target.</summary>
internal static class KernelsCommand
{
    public static Command Create()
    {
        var check = new Option<bool>("--check")
        {
            Description = "Compile every kernel to PTX (sm_80, sm_90) and OpenCL C (AMD, Intel); exit 1 if any fails.",
        };
        var command = new Command("kernels", "List the library's kernels; with --check, compile each for every GPU target.")
        {
            check,
        };
        command.SetAction(parse => CommonOptions.Run(() =>
        {
            if (!parse.GetValue(check))
            {
                Console.Write(Format.Table(["kernel", "grouping"],
                    KernelRegistry.All.Select(k => (IReadOnlyList<string>)[k.Name, k.Grouping.ToString()])));
                Console.WriteLine($"{KernelRegistry.All.Count} kernels (each specialisation counted)");
                return 0;
            }
            return Check();
        }));
        return command;
    }

    /// <summary>Prints the kernel × target table and returns 0 when everything compiled.</summary>
    public static int Check(bool quiet = false)
    {
        var results = KernelCompileCheck.Run(KernelRegistry.All, KernelCompileCheck.Targets);
        var failures = results.Where(r => !r.Succeeded).ToList();
        if (!quiet)
        {
            Console.Write(Format.Table(
                ["kernel", .. KernelCompileCheck.Targets.Select(KernelCompileCheck.Title)],
                results.GroupBy(r => r.Kernel.Name).Select(g => (IReadOnlyList<string>)
                    [g.Key, .. g.OrderBy(r => r.Target).Select(r => r.Succeeded ? "ok" : "FAIL")])));
            foreach (var failure in failures)
                Console.WriteLine($"FAIL {failure.Kernel.Name} [{KernelCompileCheck.Title(failure.Target)}]: {failure.Error}");
        }
        Console.WriteLine($"kernel check: {KernelRegistry.All.Count} kernels × {KernelCompileCheck.Targets.Count} targets, " +
                          $"{results.Count - failures.Count} compiled, {failures.Count} failed");
        return failures.Count == 0 ? 0 : 1;
    }
}
