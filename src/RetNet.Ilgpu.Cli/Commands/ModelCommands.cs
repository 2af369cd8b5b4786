using System.CommandLine;
using System.Globalization;
using RetNet.Ilgpu.IO;
using RetNet.Ilgpu.Model;

namespace RetNet.Ilgpu.Cli.Commands;

/// <summary><c>retnet init</c> and <c>retnet forward</c>: make a model folder, run one over token ids.</summary>
internal static class ModelCommands
{
    public static Command Init()
    {
        var preset = new Option<string?>("--preset") { Description = $"A preset: {string.Join(", ", RetNetConfig.PresetNames)}." };
        var config = new Option<FileInfo?>("--config") { Description = "A config.json with torchscale's field names." };
        var output = new Option<DirectoryInfo>("--output") { Description = "The model folder to write.", Required = true };
        var seed = new Option<int>("--seed") { Description = "Initialisation seed.", DefaultValueFactory = _ => 0 };
        var device = CommonOptions.Device();
        var command = new Command("init",
            "Write a randomly initialised model folder (config.json + model.safetensors in torchscale's layout).")
        {
            preset, config, output, seed, device,
        };
        command.SetAction(parse => CommonOptions.Run(() =>
        {
            var presetName = parse.GetValue(preset);
            var configFile = parse.GetValue(config);
            if ((presetName is null) == (configFile is null))
                throw new ArgumentException("Give exactly one of --preset NAME or --config FILE.");
            var settings = presetName is not null ? RetNetConfig.Preset(presetName) : RetNetConfig.Load(configFile!.FullName);
            settings.Validate();
            using var opened = CommonOptions.OpenDevice(parse.GetValue(device));
            using var model = RetNetModel.Create(opened, settings, parse.GetValue(seed));
            var folder = parse.GetValue(output)!.FullName;
            model.Save(folder);
            Console.WriteLine($"wrote {folder}: {model.ParameterCount:N0} parameters ({Format.Bytes(model.WeightBytes)}), " +
                              $"{settings.Layers} layers, d={settings.EmbedDim}, heads={settings.RetentionHeads}, " +
                              $"vocab={settings.VocabSize}");
            return 0;
        }));
        return command;
    }

    public static Command Forward()
    {
        var modelDir = new Option<DirectoryInfo>("--model") { Description = "A model folder.", Required = true };
        var tokens = new Option<FileInfo>("--tokens")
        {
            Description = "Token ids: one sequence per line, ids separated by spaces, all lines the same length.",
            Required = true,
        };
        var mode = new Option<string>("--mode")
        {
            Description = "parallel, chunkwise or recurrent.",
            DefaultValueFactory = _ => "parallel",
        };
        mode.AcceptOnlyFromAmong("parallel", "chunkwise", "recurrent");
        var chunk = new Option<int>("--chunk-size")
        {
            Description = "Chunk size for --mode chunkwise.",
            DefaultValueFactory = _ => ForwardMode.DefaultChunkSize,
        };
        var output = new Option<FileInfo>("--output")
        {
            Description = "The safetensors file to write, with tensor 'logits' [B, T, vocab] F32.",
            Required = true,
        };
        var device = CommonOptions.Device();
        var command = new Command("forward", "Run a model over token ids and write the logits to a safetensors file.")
        {
            modelDir, tokens, mode, chunk, output, device,
        };
        command.SetAction(parse => CommonOptions.Run(() =>
        {
            var ids = ReadTokens(parse.GetValue(tokens)!.FullName);
            var forwardMode = parse.GetValue(mode) switch
            {
                "chunkwise" => ForwardMode.Chunkwise(parse.GetValue(chunk)),
                "recurrent" => ForwardMode.Recurrent,
                _ => ForwardMode.Parallel,
            };
            using var opened = CommonOptions.OpenDevice(parse.GetValue(device));
            using var model = RetNetModel.Load(opened, parse.GetValue(modelDir)!.FullName);
            using var logits = model.Forward(ids, forwardMode);
            var path = parse.GetValue(output)!.FullName;
            Safetensors.Write(path, new Dictionary<string, HostTensor> { ["logits"] = HostTensor.From(logits) },
                new Dictionary<string, string> { ["mode"] = forwardMode.ToString() });
            Console.WriteLine($"wrote {path}: logits {Tensors.ShapeCheck.Format(logits.Shape)} ({forwardMode})");
            return 0;
        }));
        return command;
    }

    /// <summary>Reads one sequence of ids per non-empty line; every line must have the same length.</summary>
    private static int[,] ReadTokens(string path)
    {
        var rows = new List<int[]>();
        var lineNumber = 0;
        foreach (var line in File.ReadLines(path))
        {
            lineNumber++;
            if (string.IsNullOrWhiteSpace(line))
                continue;
            var parts = line.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries);
            var row = new int[parts.Length];
            for (var i = 0; i < parts.Length; i++)
            {
                if (!int.TryParse(parts[i], NumberStyles.Integer, CultureInfo.InvariantCulture, out row[i]))
                    throw new ArgumentException($"--tokens: {path} line {lineNumber}, item {i + 1} is '{parts[i]}'; " +
                                                "expected an integer token id.");
            }
            if (rows.Count > 0 && row.Length != rows[0].Length)
                throw new ArgumentException($"--tokens: {path} line {lineNumber} has {row.Length} ids; expected " +
                                            $"{rows[0].Length} like the first sequence (all lines the same length).");
            rows.Add(row);
        }
        if (rows.Count == 0)
            throw new ArgumentException($"--tokens: {path} has no token ids.");
        var tokens = new int[rows.Count, rows[0].Length];
        for (var b = 0; b < rows.Count; b++)
            for (var t = 0; t < rows[b].Length; t++)
                tokens[b, t] = rows[b][t];
        return tokens;
    }
}
