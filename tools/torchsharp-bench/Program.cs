using System.Globalization;
using System.Reflection;
using System.Text.Json;
using TorchSharp;
using TorchSharpBench;

// The TorchSharp-cpu peer of `retnet bench gemm|retention|decode --device cpu`: the same work written with torch
// operators, timed on this machine, so the library's CPU numbers stand next to libtorch's. See README.md.
string? jsonPath = null;
int repetitions = 21, decodeSteps = 200, threads = Environment.ProcessorCount;
for (var i = 0; i < args.Length; i++)
{
    string Value() => i + 1 < args.Length ? args[++i] : throw new ArgumentException($"{args[i]} needs a value.");
    switch (args[i])
    {
        case "--json": jsonPath = Value(); break;
        case "--repetitions": repetitions = int.Parse(Value(), CultureInfo.InvariantCulture); break;
        case "--decode-steps": decodeSteps = int.Parse(Value(), CultureInfo.InvariantCulture); break;
        case "--threads": threads = int.Parse(Value(), CultureInfo.InvariantCulture); break;
        default:
            Console.Error.WriteLine("usage: torchsharp-bench [--json FILE] [--repetitions N (21)] [--decode-steps N (200)] " +
                                $"[--threads N ({Environment.ProcessorCount}, the processor count)]");
            return 2;
    }
}

torch.set_num_threads(threads);
var torchSharp = typeof(torch).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion;
Console.WriteLine($"TorchSharp {torchSharp}, libtorch {torch.__version__}, " +
                  $"intra-op threads {torch.get_num_threads()} (ProcessorCount {Environment.ProcessorCount}), " +
                  $"inter-op threads {torch.get_num_interop_threads()}");

var (error, controlError) = ChunkwiseRetention.Check();
Console.WriteLine($"check: chunkwise vs naive parallel, float64, T=256, o and dq dk dv: max relative error {error:E2} " +
                  $"(limit 1e-9); negative control with γ_0 off by 1e-6: {controlError:E2}");
if (!(error <= 1e-9) || !(controlError > 1e-9))
{
    Console.Error.WriteLine("check failed: the torch chunkwise form does not match the naive parallel form " +
                            "(or the negative control was not rejected).");
    return 1;
}

var results = new List<Result>();
void Print(Result r)
{
    results.Add(r);
    Console.WriteLine($"{r.Work,-27} {r.Shape,-34} {r.MedianMs,10:0.000} {r.Gflops,9:0.00} {r.MinMs,10:0.000}");
}
Console.WriteLine($"{"work",-27} {"shape",-34} {"median ms",10} {"GFLOP/s",9} {"min ms",10}");
foreach (var n in new[] { 128, 512 })
    Print(GemmBenchmark.Run(n, n, n, repetitions));
foreach (var t in new[] { 512, 4096 })
foreach (var r in RetentionBenchmark.Run(t, repetitions))
    Print(r);
foreach (var b in new[] { 1, 4 })
    Print(DecodeBenchmark.Run(b, position: 1024, decodeSteps));

if (jsonPath is not null)
{
    File.WriteAllText(jsonPath, JsonSerializer.Serialize(results,
        new JsonSerializerOptions { PropertyNamingPolicy = JsonNamingPolicy.CamelCase, WriteIndented = true }));
    Console.WriteLine($"wrote {jsonPath}");
}
return 0;
