using System.CommandLine;
using System.Text.Json;
using RetNet.Ilgpu.Benchmarks;
using RetNet.Ilgpu.IO;

namespace RetNet.Ilgpu.Cli.Commands;

/// <summary><c>retnet bench …</c>: timings measured in one run, medians after warm-up, with achieved rates.</summary>
internal static class BenchCommand
{
    private static readonly JsonSerializerOptions JsonOptions = new(JsonSerializerDefaults.Web) { WriteIndented = true };

    public static Command Create() => new("bench", "Measure kernels on a device (medians after warm-up).")
    {
        Gemm(),
    };

    private static Command Gemm()
    {
        var device = CommonOptions.Device();
        var json = CommonOptions.Json();
        var warmup = new Option<int>("--warmup") { Description = "Untimed runs first.", DefaultValueFactory = _ => 2 };
        var repetitions = new Option<int>("--repetitions")
        {
            Description = "Timed runs; the median is reported.",
            DefaultValueFactory = _ => 5,
        };
        var shapes = new Option<string?>("--shapes")
        {
            Description = "Comma-separated MxNxK shapes, e.g. 256x256x256,512x512x128 (default: sized for the device).",
        };
        var command = new Command("gemm",
            "Time the tiled and the barrier-free GEMM kernels next to the plain C# reference on the same shapes.")
        {
            device, json, warmup, repetitions, shapes,
        };
        command.SetAction(parse => CommonOptions.Run(() =>
        {
            var reps = parse.GetValue(repetitions);
            var warm = parse.GetValue(warmup);
            if (reps < 1)
                throw new ArgumentException($"--repetitions must be ≥ 1; got {reps}.");
            if (warm < 0)
                throw new ArgumentException($"--warmup must be ≥ 0; got {warm}.");
            var requested = ParseShapes(parse.GetValue(shapes));
            using var opened = CommonOptions.OpenDevice(parse.GetValue(device));
            var results = GemmBenchmark.Run(opened, requested ?? GemmBenchmark.DefaultShapes(opened), warm, reps);
            var reference = results.Where(r => r.Implementation == "csharp-reference")
                .ToDictionary(r => (r.M, r.N, r.K), r => r.MedianMs);
            Console.Write(Format.Table(
                ["M×N×K", "implementation", "median ms", "GFLOP/s", "vs C# loop"],
                results.Select(r => (IReadOnlyList<string>)
                [
                    $"{r.M}×{r.N}×{r.K}", r.Implementation, Format.Number(r.MedianMs, "0.###"),
                    Format.Number(r.GFlops, "0.###"),
                    reference.TryGetValue((r.M, r.N, r.K), out var cs) ? Format.Number(cs / r.MedianMs, "0.##") + "×" : "",
                ])));
            var file = parse.GetValue(json);
            if (file is not null)
            {
                var records = results.Select(r => new
                {
                    device = opened.Description.Name,
                    deviceKind = opened.Kind.ToString(),
                    implementation = r.Implementation,
                    m = r.M,
                    n = r.N,
                    k = r.K,
                    medianMs = r.MedianMs,
                    gflops = r.GFlops,
                });
                AtomicFile.WriteAllText(file.FullName, JsonSerializer.Serialize(records, JsonOptions));
                Console.WriteLine($"wrote {file.FullName}");
            }
            return 0;
        }));
        return command;
    }

    private static IReadOnlyList<(int M, int N, int K)>? ParseShapes(string? text)
    {
        if (string.IsNullOrWhiteSpace(text))
            return null;
        return text.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries).Select(item =>
        {
            var parts = item.Split('x', 'X', '×');
            if (parts.Length != 3 || !parts.All(p => int.TryParse(p, out var v) && v > 0))
                throw new ArgumentException($"--shapes: '{item}' is not MxNxK with three positive integers.");
            return (int.Parse(parts[0]), int.Parse(parts[1]), int.Parse(parts[2]));
        }).ToList();
    }
}
