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
        var ptx = new Option<string?>("--ptx")
        {
            Description = "Write every kernel's PTX (sm_80, sm_90) into this folder with manifest.json (the launch " +
                          "geometry on an NVIDIA GPU): the input of tools/kernel-report/report.sh.",
        };
        var filter = new Option<string?>("--filter")
        {
            Description = "With --ptx: only kernels whose name contains this text.",
        };
        var command = new Command("kernels",
            "List the library's kernels; with --check, compile each for every GPU target; with --ptx, export PTX.")
        {
            check, ptx, filter,
        };
        command.SetAction(parse => CommonOptions.Run(() =>
        {
            if (parse.GetValue(ptx) is { } directory)
                return WritePtx(directory, parse.GetValue(filter));
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

    /// <summary>Writes the PTX export; 1 when the filter matches no kernel.</summary>
    private static int WritePtx(string directory, string? filter)
    {
        var kernels = KernelRegistry.All
            .Where(k => filter is null || k.Name.Contains(filter, StringComparison.OrdinalIgnoreCase))
            .ToList();
        if (kernels.Count == 0)
        {
            Console.Error.WriteLine($"No kernel name contains '{filter}'.");
            return 1;
        }
        var entries = KernelPtxExport.Write(directory, kernels);
        Console.WriteLine($"wrote {entries.Count} kernels × {KernelPtxExport.Architectures.Count} architectures and " +
                          $"{KernelPtxExport.ManifestName} to {Path.GetFullPath(directory)}");
        return 0;
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
