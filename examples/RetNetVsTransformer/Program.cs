// RetNet against the baseline Transformer on real text: both models at (nearly) the same parameter count, trained on
// the same bytes with the same recipe and steps, validation loss measured side by side at the same steps. Writes
// the curves as CSV (step, retnet_train, transformer_train, retnet_val, transformer_val) and, with --plot, as a PNG.
//
//   dotnet run --project examples/RetNetVsTransformer -c Release -- [--steps N] [--preset tiny|small] [--device cpu]
//       [--seq-len T] [--batch B] [--eval-every K] [--csv FILE] [--plot FILE.png]
using System.Diagnostics;
using System.Globalization;
using RetNet.Ilgpu.DemoData;
using RetNet.Ilgpu.Devices;
using RetNet.Ilgpu.IO;
using RetNet.Ilgpu.Model;
using RetNet.Ilgpu.Tokenizers;
using RetNet.Ilgpu.Training;

var options = ParseOptions(args);
var steps = int.Parse(options.GetValueOrDefault("steps", "300"), CultureInfo.InvariantCulture);
var preset = options.GetValueOrDefault("preset", "tiny");
var seqLen = int.Parse(options.GetValueOrDefault("seq-len", "128"), CultureInfo.InvariantCulture);
var batch = int.Parse(options.GetValueOrDefault("batch", "8"), CultureInfo.InvariantCulture);
var evalEvery = int.Parse(options.GetValueOrDefault("eval-every", "50"), CultureInfo.InvariantCulture);
var csv = options.GetValueOrDefault("csv", "retnet-vs-transformer.csv");
var plotPath = options.GetValueOrDefault("plot");
var kind = DeviceKinds.Parse(options.GetValueOrDefault("device", "auto"), "--device");

var folder = Path.Combine(Path.GetTempPath(), $"retnet-vs-transformer-{Guid.NewGuid():N}");
try
{
    using var device = RetNetDevice.Open(kind);
    var train = Path.Combine(folder, "train.txt");
    var validation = Path.Combine(folder, "validation.txt");
    var split = SdkCorpus.Write(train, validation, 2_000_000, 200_000);
    Console.WriteLine($"device: {device}; data: {split.TrainBytes:N0} training and {split.ValidationBytes:N0} " +
                      $"held-out bytes of English prose from {SdkCorpus.Find()}");

    var retnetConfig = RetNetConfig.Preset(preset);
    var transformerConfig = TransformerConfig.Matching(retnetConfig);
    using (var retnet = LanguageModel.Create(device, retnetConfig, seed: 1))
        retnet.Save(Path.Combine(folder, "retnet"));
    using (var transformer = LanguageModel.Create(device, transformerConfig, seed: 1))
        transformer.Save(Path.Combine(folder, "transformer"));

    // The recipe of docs/BENCHMARKS.md's training comparison: AdamW (0.9, 0.98), warm-up then cosine to 10%.
    var settings = new TrainingSettings
    {
        Steps = steps, Batch = batch, SeqLen = seqLen, LearningRate = 3e-3, Warmup = Math.Max(1, steps / 10),
        MinLrRatio = 0.1, WeightDecay = 0.01, Clip = 2.0, Seed = 0, Data = [train], ValidationData = [validation],
        Tokenizer = TokenizerKind.Byte,
    };
    var curves = new SortedDictionary<int, double[]>();
    var summaries = new List<string>();
    foreach (var (name, column) in new[] { ("retnet", 0), ("transformer", 1) })
    {
        using var trainer = Trainer.Start(device, Path.Combine(folder, name), settings, Path.Combine(folder, name + "-run"));
        Console.WriteLine($"{name}: {trainer.Model.ParameterCount:N0} parameters, {steps} steps of {batch}×{seqLen} bytes");
        var timer = Stopwatch.StartNew();
        var window = new List<double>();
        while (trainer.Step < steps)
        {
            var step = trainer.RunStep();
            window.Add(step.Loss);
            if (step.Step % evalEvery != 0 && step.Step != steps)
                continue;
            var seconds = timer.Elapsed.TotalSeconds;
            timer.Stop();
            var held = trainer.EvaluateValidation();
            timer.Start();
            var row = curves.TryGetValue(step.Step, out var existing) ? existing : curves[step.Step] = new double[4];
            row[column] = window.Average();
            row[2 + column] = held.Loss;
            window.Clear();
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"  step {step.Step,5}: train {row[column]:F4}, held-out {held.Loss:F4} nats/byte " +
                $"({held.BitsPerByte:F4} bits/byte), {step.Step * (long)batch * seqLen / seconds:F0} tokens/s"));
        }
        summaries.Add(string.Create(CultureInfo.InvariantCulture,
            $"{name}: final held-out loss {curves[steps][2 + column]:F4} nats/byte"));
    }
    var lines = new List<string> { "step,retnet_train,transformer_train,retnet_val,transformer_val" };
    lines.AddRange(curves.Select(kv => string.Create(CultureInfo.InvariantCulture,
        $"{kv.Key},{kv.Value[0]:F5},{kv.Value[1]:F5},{kv.Value[2]:F5},{kv.Value[3]:F5}")));
    AtomicFile.WriteAllText(csv, string.Join('\n', lines) + "\n");
    if (plotPath is not null)
        Plot(plotPath, curves, $"{preset} preset, {batch}×{seqLen} bytes a step, {device.Kind}");
    foreach (var summary in summaries)
        Console.WriteLine(summary);
    Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
        $"held-out loss, retnet − transformer: {curves[steps][2] - curves[steps][3]:+0.0000;-0.0000} nats/byte; " +
        $"curves in {Path.GetFullPath(csv)}"));
}
finally
{
    if (Directory.Exists(folder))
        Directory.Delete(folder, recursive: true);
}

// Loss against step: both models' training loss (the mean since the previous point) and held-out loss.
static void Plot(string path, SortedDictionary<int, double[]> curves, string title)
{
    var plot = new ScottPlot.Plot();
    var steps = curves.Keys.Select(s => (double)s).ToArray();
    string[] labels = ["RetNet, training", "Transformer, training", "RetNet, held-out", "Transformer, held-out"];
    for (var column = 0; column < labels.Length; column++)
    {
        var line = plot.Add.Scatter(steps, curves.Values.Select(v => v[column]).ToArray());
        line.LegendText = labels[column];
        line.LinePattern = column < 2 ? ScottPlot.LinePattern.Dashed : ScottPlot.LinePattern.Solid;
    }
    plot.Title($"{title}: loss by step");
    plot.Axes.Bottom.Label.Text = "optimiser step";
    plot.Axes.Left.Label.Text = "loss (nats per byte)";
    plot.ShowLegend(ScottPlot.Alignment.UpperRight);
    var full = Path.GetFullPath(path);
    var temporary = Path.Combine(Path.GetDirectoryName(full)!, $".{Guid.NewGuid():N}.png");
    plot.SavePng(temporary, 800, 480);
    File.Move(temporary, full, overwrite: true);
    Console.WriteLine($"wrote {full}");
}

static Dictionary<string, string> ParseOptions(string[] args)
{
    var result = new Dictionary<string, string>();
    for (var i = 0; i < args.Length; i++)
    {
        if (!args[i].StartsWith("--", StringComparison.Ordinal) || i + 1 >= args.Length)
            throw new ArgumentException($"Expected --name value pairs; got '{args[i]}'.");
        result[args[i][2..]] = args[++i];
    }
    var known = new[] { "steps", "preset", "seq-len", "batch", "eval-every", "csv", "plot", "device" };
    foreach (var key in result.Keys.Where(k => !known.Contains(k)))
        throw new ArgumentException($"Unknown option --{key}; expected --{string.Join(", --", known)}.");
    return result;
}
