using System.CommandLine;
using System.Globalization;
using RetNet.Ilgpu.Generation;
using RetNet.Ilgpu.IO;
using RetNet.Ilgpu.Model;
using RetNet.Ilgpu.Tokenizers;

namespace RetNet.Ilgpu.Cli.Commands;

/// <summary><c>retnet init</c>, <c>forward</c>, <c>gradients</c> and <c>generate</c>: make a model folder, run one
/// over token ids, take the gradients of its next-token loss, continue a prompt.</summary>
internal static class ModelCommands
{
    public static Command Init()
    {
        var preset = new Option<string?>("--preset")
        {
            Description = $"A preset: torchscale's RetNet {string.Join(", ", RetNetConfig.PresetNames)} (for the " +
                          "transformer: the baseline with that RetNet preset's parameter count); fla's RetNet " +
                          $"{string.Join(", ", FlaRetNetConfig.PresetNames)} (fla-1.3b and fla-2.7b are the configs of " +
                          "fla-hub's pretrained RetNets, written in bf16 and in shards above 2 GiB).",
        };
        var config = new Option<FileInfo?>("--config")
        {
            Description = "A config.json: torchscale's or fla's field names for RetNet (told apart by their keys), " +
                          "the library's Transformer format for --arch transformer.",
        };
        var arch = CommonOptions.Architecture();
        var output = new Option<DirectoryInfo>("--output") { Description = "The model folder to write.", Required = true };
        var seed = new Option<int>("--seed") { Description = "Initialisation seed.", DefaultValueFactory = _ => 0 };
        var device = CommonOptions.Device();
        var weightType = CommonOptions.WeightType();
        weightType.Description = "Store the weight matrices as fp32, bf16 or fp16 (rounded from the fp32 " +
                                 "initialisation); default: the type the config names (fla's torch_dtype), else fp32.";
        var command = new Command("init",
            "Write a randomly initialised model folder (config.json + model.safetensors, or shards and their index; " +
            "RetNet in torchscale's or fla's layout).")
        {
            preset, config, output, seed, device, arch, weightType,
        };
        command.SetAction(parse => CommonOptions.Run(() =>
        {
            var presetName = parse.GetValue(preset);
            var configFile = parse.GetValue(config);
            if ((presetName is null) == (configFile is null))
                throw new ArgumentException("Give exactly one of --preset NAME or --config FILE.");
            ModelConfig model = parse.GetValue(arch) == CommonOptions.TransformerArch
                ? presetName is not null ? TransformerConfig.Preset(presetName) : TransformerConfig.Load(configFile!.FullName)
                : presetName is not null
                    ? FlaRetNetConfig.PresetNames.Contains(presetName.ToLowerInvariant())
                        ? FlaRetNetConfig.Preset(presetName)
                        : RetNetConfig.Preset(presetName)
                    : ModelConfig.Load(configFile!.FullName);
            if (parse.GetValue(arch) != CommonOptions.TransformerArch && model.Architecture != CommonOptions.RetNetArch)
                throw new ArgumentException($"--config {configFile!.FullName} describes a {model.Architecture}; give " +
                                            $"--arch {model.Architecture} to write one.");
            using var opened = CommonOptions.OpenDevice(parse.GetValue(device));
            using var created = LanguageModel.Create(opened, model, parse.GetValue(seed),
                parse.GetValue(weightType) ?? model.StoredType ?? Tensors.TensorDType.Float32);
            var folder = parse.GetValue(output)!.FullName;
            created.Save(folder);
            Console.WriteLine($"wrote {folder}: {created.Architecture}, {created.ParameterCount:N0} parameters " +
                              $"({Format.Bytes(created.WeightBytes)}), {model.Summary}");
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
        var mode = CommonOptions.InferenceForm("parallel, chunkwise or recurrent (retention; attention has one form).");
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
        var weightType = CommonOptions.WeightType();
        var command = new Command("forward", "Run a model over token ids and write the logits to a safetensors file.")
        {
            modelDir, tokens, mode, chunk, output, device, weightType,
        };
        command.SetAction(parse => CommonOptions.Run(() =>
        {
            var ids = ReadTokens(parse.GetValue(tokens)!.FullName);
            var forwardMode = ForwardMode.Of(parse.GetValue(mode), parse.GetValue(chunk));
            using var opened = CommonOptions.OpenDevice(parse.GetValue(device));
            using var model = CommonOptions.LoadAnyModel(opened, parse.GetValue(modelDir)!, parse.GetValue(weightType));
            // Refuses non-finite logits (an exception naming the block where they first appear): nothing is written.
            using var logits = model.Forward(ids, forwardMode);
            var path = parse.GetValue(output)!.FullName;
            Safetensors.Write(path, new Dictionary<string, HostTensor> { ["logits"] = HostTensor.From(logits) },
                new Dictionary<string, string> { ["model_type"] = model.Architecture, ["mode"] = forwardMode.ToString() });
            Console.WriteLine($"wrote {path}: logits {Tensors.ShapeCheck.Format(logits.Shape)} ({model.Architecture}, " +
                              $"{forwardMode})");
            return 0;
        }));
        return command;
    }

    public static Command Gradients()
    {
        var modelDir = new Option<DirectoryInfo>("--model") { Description = "A model folder.", Required = true };
        var tokens = new Option<FileInfo>("--tokens")
        {
            Description = "Token rows: one sequence per line, ids separated by spaces, all lines the same length " +
                          "(at least 2): tokens[:, 1:] are predicted from tokens[:, :-1].",
            Required = true,
        };
        var form = CommonOptions.TrainingForm("The retention form of the training pass: chunkwise or parallel.");
        var chunk = new Option<int>("--chunk-size")
        {
            Description = "Chunk size for --form chunkwise.",
            DefaultValueFactory = _ => ForwardMode.DefaultChunkSize,
        };
        var output = new Option<FileInfo>("--output")
        {
            Description = "The safetensors file to write: the gradient of every parameter (F32, the checkpoint's " +
                          "names), the loss in __metadata__ as \"loss\".",
            Required = true,
        };
        var device = CommonOptions.Device();
        var command = new Command("gradients",
            "The mean next-token cross-entropy of token rows and the gradient of every parameter, to a safetensors file.")
        {
            modelDir, tokens, form, chunk, output, device,
        };
        command.SetAction(parse => CommonOptions.Run(() =>
        {
            var windows = ReadTokens(parse.GetValue(tokens)!.FullName);
            var mode = ForwardMode.Of(parse.GetValue(form), parse.GetValue(chunk));
            using var opened = CommonOptions.OpenDevice(parse.GetValue(device));
            using var model = CommonOptions.LoadAnyModel(opened, parse.GetValue(modelDir)!, mapWeights: false);
            using var gradients = model.CreateGradients();
            var loss = model.ForwardBackward(windows, gradients, mode);
            var path = parse.GetValue(output)!.FullName;
            var lossText = loss.ToString("R", CultureInfo.InvariantCulture);
            Safetensors.Write(path, gradients.ToHost(), new Dictionary<string, string>
            {
                ["format"] = "pt", ["loss"] = lossText, ["model_type"] = model.Architecture, ["form"] = mode.ToString(),
            });
            Console.WriteLine($"loss {lossText} nats/token over {windows.GetLength(0)}×{windows.GetLength(1) - 1} " +
                              $"predicted tokens ({model.Architecture}, {mode}); wrote {path}: " +
                              $"{gradients.Tensors.Count} gradients");
            return 0;
        }));
        return command;
    }

    public static Command Generate()
    {
        var modelDir = new Option<DirectoryInfo>("--model") { Description = "A model folder.", Required = true };
        var prompt = new Option<string>("--prompt") { Description = "The text to continue.", Required = true };
        var maxTokens = new Option<int>("--max-tokens") { Description = "Tokens to generate at most.", DefaultValueFactory = _ => 64 };
        var temperature = new Option<double>("--temperature")
        {
            Description = "Sampling temperature; 0 is greedy.",
            DefaultValueFactory = _ => 1.0,
        };
        var topK = new Option<int>("--top-k") { Description = "Keep the K most likely tokens; 0 is off.", DefaultValueFactory = _ => 0 };
        var topP = new Option<double>("--top-p")
        {
            Description = "Keep the smallest set of tokens with this total probability; 1 is off.",
            DefaultValueFactory = _ => 1.0,
        };
        var seed = new Option<int?>("--seed") { Description = "Seed for reproducible sampling." };
        var tokenizer = CommonOptions.Tokenizer("byte, gpt2, sentencepiece (the model folder's tokenizer.model), or auto " +
                                                "(the folder's tokenizer.model if it has one, else byte for a " +
                                                "256-token vocabulary, gpt2 for 50257).");
        var device = CommonOptions.Device();
        var weightType = CommonOptions.WeightType();
        var command = new Command("generate", "Continue a prompt with a model, streaming the text as it is produced.")
        {
            modelDir, prompt, maxTokens, temperature, topK, topP, seed, tokenizer, device, weightType,
        };
        command.SetAction(parse => CommonOptions.Run(() =>
        {
            var interrupted = Interruption.Listen();
            using var opened = CommonOptions.OpenDevice(parse.GetValue(device));
            var folder = parse.GetValue(modelDir)!;
            using var decoder = CommonOptions.LoadDecoder(opened, folder, parse.GetValue(weightType));
            var text = TextTokenizers.ForModel(parse.GetValue(tokenizer), folder.FullName, decoder.VocabularySize)
                ?? throw new ArgumentException($"--tokenizer auto: the model folder has no " +
                                               $"{SentencePieceTokenizer.FileName} and no built-in tokenizer has the " +
                                               $"model's vocabulary of {decoder.VocabularySize} (byte: 256, gpt2: " +
                                               $"50257); choose one with --tokenizer " +
                                               $"{string.Join("|", TextTokenizers.Names)}.");
            var options = new SamplingOptions
            {
                MaxTokens = parse.GetValue(maxTokens),
                Temperature = parse.GetValue(temperature),
                TopK = parse.GetValue(topK),
                TopP = parse.GetValue(topP),
                Seed = parse.GetValue(seed),
                StopTokens = text.EndOfText is { } end ? new HashSet<int> { end } : new HashSet<int>(),
            };
            Console.WriteLine($"tokenizer: {text.Name}; sampling: {(options.IsGreedy ? "greedy" : $"temperature {options.Temperature}, top-k {options.TopK}, top-p {options.TopP}")}");
            var promptText = parse.GetValue(prompt) ?? "";
            Console.Write(promptText);
            try
            {
                foreach (var piece in TextGenerator.Generate(decoder, text, promptText, options, interrupted))
                {
                    Console.Write(piece);
                    Console.Out.Flush();
                }
            }
            catch (OperationCanceledException)
            {
                // The text generated so far has been printed (the last piece flushed before the exception).
                Console.WriteLine();
                Console.Error.WriteLine("interrupted: generation stopped at Ctrl+C");
                return Interruption.ExitCode;
            }
            Console.WriteLine();
            return 0;
        }));
        return command;
    }

    /// <summary>Reads one sequence of ids per non-empty line; every line must have the same length.</summary>
    internal static int[,] ReadTokens(string path)
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
