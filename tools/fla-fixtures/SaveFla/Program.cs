// Writes an fla-convention RetNet model folder through the library's public API, for tools/fla-fixtures/check_saved.py.
//
//   dotnet run --project tools/fla-fixtures/SaveFla -c Release -- OUTPUT [--preset fla-tiny] [--seed N] [--dtype fp32|bf16]
//       [--init-range X] [--tied] [--unfused-norm] [--max-shard-bytes N]
//
// The model is LanguageModel.Create(preset, seed) with initializer_range X (default 0.15: fla's 0.02 gives logits near
// zero); its norm weights (1 at init, where a check that ignores them cannot fail) are set to 1 + 0.2·N(0, 1) and the
// model is rebuilt with LanguageModel.FromWeights(weightType). It is saved with LanguageModel.Save, or, with
// --max-shard-bytes, with ModelFolder.Write(folder, config.ToJson(), ExportWeights(), {"format": "pt"}, N) (what
// Save does, with a shard limit small enough to shard a tiny model).
using RetNet.Ilgpu.Devices;
using RetNet.Ilgpu.IO;
using RetNet.Ilgpu.Model;
using RetNet.Ilgpu.Tensors;

var output = args.Length > 0 && !args[0].StartsWith("--") ? args[0] : throw new ArgumentException("usage: SaveFla OUTPUT [options]");
string Option(string name, string fallback)
{
    var i = Array.IndexOf(args, name);
    return i >= 0 && i + 1 < args.Length ? args[i + 1] : fallback;
}
var preset = Option("--preset", "fla-tiny");
var seed = int.Parse(Option("--seed", "0"));
var dtype = Option("--dtype", "fp32") switch
{
    "fp32" => TensorDType.Float32,
    "bf16" => TensorDType.BFloat16,
    var other => throw new ArgumentException($"--dtype {other}"),
};
var range = double.Parse(Option("--init-range", "0.15"), System.Globalization.CultureInfo.InvariantCulture);
long? maxShard = Array.IndexOf(args, "--max-shard-bytes") >= 0 ? long.Parse(Option("--max-shard-bytes", "0")) : null;

var config = FlaRetNetConfig.Preset(preset) with { InitializerRange = range, TieWordEmbeddings = args.Contains("--tied"),
    FuseNorm = !args.Contains("--unfused-norm") };
using var device = RetNetDevice.Open(DeviceKind.Cpu);
IReadOnlyDictionary<string, HostTensor> weights;
using (var created = LanguageModel.Create(device, config, seed))
    weights = created.ExportWeights();
var random = new Random(seed + 1);
var perturbed = new Dictionary<string, HostTensor>();
foreach (var (name, tensor) in weights)
{
    if (tensor.Shape.Length != 1)
    {
        perturbed.Add(name, tensor);
        continue;
    }
    var data = new float[tensor.Length];
    for (var i = 0; i < data.Length; i++)
    {
        // Box–Muller.
        var u = 1 - random.NextDouble();
        var v = random.NextDouble();
        data[i] = (float)(1 + 0.2 * Math.Sqrt(-2 * Math.Log(u)) * Math.Cos(2 * Math.PI * v));
    }
    perturbed.Add(name, new HostTensor(tensor.Shape, data));
}
using var model = LanguageModel.FromWeights(device, config, perturbed, weightType: dtype);
if (maxShard is { } limit)
    ModelFolder.Write(output, model.Config.ToJson(), model.ExportWeights(), new Dictionary<string, string> { ["format"] = "pt" },
        limit);
else
    model.Save(output);
Console.WriteLine($"wrote {output}: {preset}, seed {seed}, {dtype}, init range {range}, tied {config.TieWordEmbeddings}, fuse_norm {config.FuseNorm}" +
                  (maxShard is { } m ? $", shards of at most {m} bytes" : ""));
