using System.CommandLine;
using System.Text.Json;
using RetNet.Ilgpu.Benchmarks;
using RetNet.Ilgpu.Devices;
using RetNet.Ilgpu.IO;
using RetNet.Ilgpu.Model;
using RetNet.Ilgpu.Tensors;

namespace RetNet.Ilgpu.Cli.Commands;

/// <summary><c>retnet bench …</c>: timings measured in one run, medians after warm-up, with achieved rates.</summary>
internal static class BenchCommand
{
    private static readonly JsonSerializerOptions JsonOptions = new(JsonSerializerDefaults.Web) { WriteIndented = true };

    public static Command Create() => new("bench", "Measure kernels on a device (medians after warm-up).")
    {
        Gemm(),
        Retention(),
        Decode(),
        Train(),
        Serve(),
    };

    private static Command Serve()
    {
        var device = CommonOptions.Device();
        var json = CommonOptions.Json();
        var architecture = ArchitectureOption(", served with its KV cache");
        architecture.DefaultValueFactory = _ => $"{DecodeBenchmarkOptions.Retnet},{DecodeBenchmarkOptions.Transformer}";
        var preset = PresetOption("tiny");
        var concurrency = new Option<string>("--concurrency")
        {
            Description = "Comma-separated concurrency levels: clients with one streaming request in flight each.",
            DefaultValueFactory = _ => "1,4,16,64",
        };
        var requests = new Option<int>("--requests")
        {
            Description = "Requests per level at least (a level sends max(this, 4 × concurrency)).",
            DefaultValueFactory = _ => 64,
        };
        var promptTokens = new Option<int>("--prompt-tokens")
        {
            Description = "Tokens per prompt (random letters).", DefaultValueFactory = _ => 16,
        };
        var maxTokens = new Option<int>("--max-tokens")
        {
            Description = "Tokens each request generates (ignore_eos).", DefaultValueFactory = _ => 128,
        };
        var rangeRatio = new Option<double>("--range-ratio")
        {
            Description = "How much requests' lengths vary, in [0, 1): each generates a length drawn uniformly from " +
                          "[max-tokens·(1 − r), max-tokens·(1 + r)] (vLLM's random-range-ratio); 0 (the default): all " +
                          "the same, so requests admitted together finish together.",
            DefaultValueFactory = _ => 0,
        };
        var timeLimit = new Option<int>("--time-limit")
        {
            Description = "Seconds a level may run at most; what is in flight then is cancelled and the level marked.",
            DefaultValueFactory = _ => 120,
        };
        var weightType = new Option<string>("--dtype")
        {
            Description = "Storage type of the weight matrices: fp32, bf16 or fp16.", DefaultValueFactory = _ => "fp32",
        };
        var rounds = new Option<int>("--rounds")
        {
            Description = "Measure every level this many times, the levels in turn round after round, and report " +
                          "each level's median round by tokens/s (a slow spell of the machine then falls on every " +
                          "level alike).",
            DefaultValueFactory = _ => 1,
        };
        var plot = new Option<FileInfo?>("--plot")
        {
            Description = "Also draw the results as a PNG (three panels: tokens/s, inter-token latency p50 and time " +
                          "to first token p50 against concurrency), written to a temporary name, then renamed.",
        };
        var command = new Command("serve",
            "Serve each model in process on a free loopback port (retnet serve's server) and drive it over HTTP with " +
            "streaming completions at each concurrency: aggregate tokens/s, time to first token and inter-token " +
            "latency (p50, p99).")
        {
            device, json, architecture, preset, concurrency, requests, promptTokens, maxTokens, rangeRatio, timeLimit,
            weightType, rounds, plot,
        };
        SetAction(command, (parse, interrupted) =>
        {
            var seconds = parse.GetValue(timeLimit);
            if (seconds < 1)
                throw new ArgumentException($"--time-limit: expected seconds ≥ 1; got {seconds}.");
            var options = new ServeBenchmarkOptions
            {
                Architectures = ParseArchitectures(parse.GetValue(architecture) ?? ""),
                Config = RetNetConfig.Preset(parse.GetValue(preset) ?? "tiny"),
                Concurrency = ParsePositiveList(parse.GetValue(concurrency) ?? "", "--concurrency"),
                Requests = parse.GetValue(requests),
                PromptTokens = parse.GetValue(promptTokens),
                MaxTokens = parse.GetValue(maxTokens),
                RangeRatio = parse.GetValue(rangeRatio),
                LevelTimeLimit = TimeSpan.FromSeconds(seconds),
                Rounds = parse.GetValue(rounds) is var n and >= 1 ? n
                    : throw new ArgumentException($"--rounds: expected ≥ 1; got {parse.GetValue(rounds)}."),
                WeightType = ParseWeightTypes(parse.GetValue(weightType) ?? "") is [var single] ? single
                    : throw new ArgumentException("--dtype: expected one of fp32, bf16, fp16."),
            };
            using var opened = CommonOptions.OpenDevice(parse.GetValue(device));
            Console.WriteLine($"model: {string.Join(", ", options.Architectures)} {parse.GetValue(preset)} " +
                              $"(d={options.Config.EmbedDim}, {options.Config.Layers} layers), prompts of " +
                              $"{options.PromptTokens} tokens, {options.MaxTokens} generated per request" +
                              (options.RangeRatio > 0 ? $" (± {options.RangeRatio:P0})" : "") +
                              ", streaming over loopback HTTP");
            PrintBaseline(options.Architectures, options.Config);
            var print = Format.StreamingTable(["model", "concurrency", "requests", "tokens/s", "TTFT p50 ms",
                "TTFT p99 ms", "ITL p50 ms", "ITL p99 ms", "mean batch", "step p50 ms", "CPU µs/token"],
                [11, 11, 8, 10, 11, 11, 10, 10, 10, 11, 12]);
            var results = ServeBenchmark.Run(opened, options, r => print([r.Model, r.Concurrency.ToString(),
                r.Errors == 0 ? r.Requests.ToString() : $"{r.Requests}+{r.Errors}!",
                Format.Number(r.TokensPerSecond, "0"), Format.Number(r.TtftP50Ms, "0.00"),
                Format.Number(r.TtftP99Ms, "0.00"), Format.Number(r.ItlP50Ms, "0.000"),
                Format.Number(r.ItlP99Ms, "0.000"), Format.Number(r.MeanBatch, "0.0"),
                Format.Number(r.StepP50Ms, "0.000"), Format.Number(r.CpuMicrosecondsPerToken, "0.0")]), interrupted);
            foreach (var r in results.Where(r => r.RoundTokensPerSecond is not null))
                Console.WriteLine($"{r.Model} at concurrency {r.Concurrency}: tokens/s by round " +
                                  string.Join(", ", r.RoundTokensPerSecond!.Select(t => Format.Number(t, "0"))) +
                                  " (the table shows the median round)");
            foreach (var r in results.Where(r => r.Errors > 0 || r.TimedOut))
                Console.WriteLine($"{r.Model} at concurrency {r.Concurrency}: {r.Errors} request(s) failed" +
                                  (r.TimedOut ? $", the level hit the {options.LevelTimeLimit.TotalSeconds:0} s limit" : ""));
            foreach (var group in results.GroupBy(r => r.Model))
            {
                var first = group.First();
                foreach (var r in group.Skip(1))
                    Console.WriteLine($"{group.Key}: aggregate tokens/s at concurrency {r.Concurrency} is " +
                                      $"{Format.Number(r.TokensPerSecond / first.TokensPerSecond, "0.00")}× " +
                                      $"concurrency {first.Concurrency}");
            }
            foreach (var t in results.Where(r => r.Model == DecodeBenchmarkOptions.Transformer))
            {
                var r = results.FirstOrDefault(x =>
                    x.Model == DecodeBenchmarkOptions.Retnet && x.Concurrency == t.Concurrency);
                if (r is not null)
                    Console.WriteLine($"concurrency {t.Concurrency}: transformer/retnet inter-token latency p50 " +
                                      $"{Format.Number(t.ItlP50Ms / r.ItlP50Ms, "0.00")}×, tokens/s retnet/transformer " +
                                      $"{Format.Number(r.TokensPerSecond / t.TokensPerSecond, "0.00")}×");
            }
            if (parse.GetValue(plot) is { } picture && results.Count > 0)
                Plots.Serve(picture.FullName, results,
                    $"{parse.GetValue(preset)}, prompts {options.PromptTokens}, {opened.Kind}");
            WriteJson(parse.GetValue(json), results.Select(r => new
            {
                model = r.Model,
                concurrency = r.Concurrency,
                requests = r.Requests,
                errors = r.Errors,
                promptTokens = r.PromptTokens,
                completionTokens = r.CompletionTokens,
                seconds = r.Seconds,
                tokensPerSecond = r.TokensPerSecond,
                ttftP50Ms = r.TtftP50Ms,
                ttftP99Ms = r.TtftP99Ms,
                itlP50Ms = r.ItlP50Ms,
                itlP99Ms = r.ItlP99Ms,
                meanBatch = r.MeanBatch,
                stepP50Ms = r.StepP50Ms,
                cpuSeconds = r.CpuSeconds,
                cpuMicrosecondsPerToken = r.CpuMicrosecondsPerToken,
                roundTokensPerSecond = r.RoundTokensPerSecond,
                timedOut = r.TimedOut,
                maxTokens = options.MaxTokens,
                rangeRatio = options.RangeRatio,
                dtype = TensorDTypes.Name(options.WeightType),
                device = opened.Description.Name,
            }));
            return results.Count;
        });
        return command;
    }

    private static Command Train()
    {
        var device = CommonOptions.Device();
        var json = CommonOptions.Json();
        var architecture = ArchitectureOption("");
        var preset = PresetOption("tiny");
        var seqLens = new Option<string>("--seq-lens") { Description = "Comma-separated sequence lengths.", DefaultValueFactory = _ => "512,1024,2048,4096,8192" };
        var batch = new Option<int>("--batch") { Description = "Windows per step.", DefaultValueFactory = _ => 1 };
        var form = CommonOptions.TrainingForm("chunkwise or parallel.");
        var chunk = new Option<int>("--chunk-size") { Description = "Chunk size of the chunkwise form.", DefaultValueFactory = _ => ForwardMode.DefaultChunkSize };
        var steps = new Option<int>("--steps") { Description = "Timed steps per length.", DefaultValueFactory = _ => 3 };
        var checkpoint = new Option<bool>("--checkpoint-activations") { Description = "Keep only block inputs; recompute in backward." };
        var computeType = new Option<string>("--dtype")
        {
            Description = "The type the passes read the weight matrices in: fp32, or bf16/fp16 copies of the fp32 master " +
                          "weights (mixed precision; gradients, activations and AdamW stay fp32).",
            DefaultValueFactory = _ => "fp32",
        };
        var plot = Plot();
        var command = new Command("train",
            "Median time, tokens/s and peak device bytes of one optimiser step (training pass, clipping, AdamW) per sequence length.")
        {
            device, json, architecture, preset, seqLens, batch, form, chunk, steps, checkpoint, computeType, plot,
        };
        SetAction(command, (parse, interrupted) =>
        {
            var options = new TrainBenchmarkOptions
            {
                Architectures = ParseArchitectures(parse.GetValue(architecture) ?? ""),
                Config = RetNetConfig.Preset(parse.GetValue(preset) ?? "tiny"),
                SeqLens = ParsePositiveList(parse.GetValue(seqLens) ?? "", "--seq-lens"),
                Batch = parse.GetValue(batch),
                Mode = ForwardMode.Of(parse.GetValue(form), parse.GetValue(chunk)),
                Steps = parse.GetValue(steps),
                CheckpointActivations = parse.GetValue(checkpoint),
                ComputeType = ParseWeightTypes(parse.GetValue(computeType) ?? "") is [var single] ? single
                    : throw new ArgumentException("--dtype: expected one of fp32, bf16, fp16."),
            };
            using var opened = CommonOptions.OpenDevice(parse.GetValue(device));
            Console.WriteLine($"model: {string.Join(", ", options.Architectures)} {parse.GetValue(preset)} " +
                              $"(d={options.Config.EmbedDim}, {options.Config.Layers} layers), batch {options.Batch}, " +
                              $"{options.Mode}, weights read as {TensorDTypes.Name(options.ComputeType)}" +
                              (options.CheckpointActivations ? ", activations checkpointed" : ""));
            PrintBaseline(options.Architectures, options.Config);
            var print = Format.StreamingTable(["model", "form", "seq len", "ms/step", "tokens/s", "peak bytes",
                "linear GFLOP/s"], [11, 14, 7, 10, 10, 12, 14]);
            var results = TrainBenchmark.Run(opened, options, r => print([r.Model, r.Form, r.SeqLen.ToString(),
                Format.Number(r.MsPerStep, "0.0"), Format.Number(r.TokensPerSecond, "0"), r.PeakBytes.ToString(),
                Format.Number(r.LinearGflops, "0.00")]), interrupted);
            foreach (var group in results.GroupBy(r => r.Model).Where(g => g.Count() > 1))
            {
                var first = group.First();
                var last = group.Last();
                Console.WriteLine($"{group.Key}: from T={first.SeqLen} to T={last.SeqLen}: time ×" +
                                  $"{Format.Number(last.MsPerStep / first.MsPerStep, "0.00")}, peak bytes ×" +
                                  $"{Format.Number((double)last.PeakBytes / first.PeakBytes, "0.00")} for " +
                                  $"×{Format.Number((double)last.SeqLen / first.SeqLen, "0")} tokens");
            }
            foreach (var t in results.Where(r => r.Model == DecodeBenchmarkOptions.Transformer))
            {
                var r = results.FirstOrDefault(x => x.Model == DecodeBenchmarkOptions.Retnet && x.SeqLen == t.SeqLen);
                if (r is not null)
                    Console.WriteLine($"T={t.SeqLen}: retnet/transformer tokens/s " +
                                      $"{Format.Number(r.TokensPerSecond / t.TokensPerSecond, "0.00")}×, peak bytes " +
                                      $"{Format.Number(r.PeakBytes / (double)t.PeakBytes, "0.00")}×");
            }
            if (parse.GetValue(plot) is { } picture && results.Count > 0)
                Plots.Train(picture.FullName, results,
                    $"{parse.GetValue(preset)} preset, batch {options.Batch}, {opened.Kind}");
            WriteJson(parse.GetValue(json), results.Select(r => new
            {
                model = r.Model,
                form = r.Form,
                batch = r.Batch,
                seqLen = r.SeqLen,
                msPerStep = r.MsPerStep,
                tokensPerSecond = r.TokensPerSecond,
                peakBytes = r.PeakBytes,
                linearGflops = r.LinearGflops,
                dtype = TensorDTypes.Name(r.ComputeType),
                device = opened.Description.Name,
            }));
            return results.Count;
        });
        return command;
    }

    private static Command Decode()
    {
        var device = CommonOptions.Device();
        var json = CommonOptions.Json();
        var preset = PresetOption("small");
        var positions = new Option<string>("--positions")
        {
            Description = "Comma-separated positions to decode at.",
            DefaultValueFactory = _ => "64,256,1024,4096",
        };
        var batches = new Option<string>("--batches") { Description = "Comma-separated batch sizes.", DefaultValueFactory = _ => "1,4" };
        var steps = new Option<int>("--steps") { Description = "Timed steps per point.", DefaultValueFactory = _ => 16 };
        var arch = ArchitectureOption(", decoding with a KV cache");
        var dtypes = new Option<string>("--dtype")
        {
            Description = "Comma-separated storage types of the weight matrices, each a model of its own: fp32, bf16, " +
                          "fp16 (arithmetic and the state stay fp32).",
            DefaultValueFactory = _ => "fp32",
        };
        var plot = Plot();
        var modelDir = new Option<DirectoryInfo?>("--model")
        {
            Description = "Decode this model folder at batch 1 instead of a preset: median ms/token, the weight bytes a " +
                          "step reads and the GB/s that makes beside a read-bandwidth probe of this machine measured in " +
                          "the same run, and peak resident memory against the weight file. Weights are memory-mapped " +
                          "(read in place on the CPU) unless --copy-weights; --dtype defaults to the checkpoint's type.",
        };
        var copyWeights = new Option<bool>("--copy-weights")
        {
            Description = "With --model: read the weights file into memory and copy the weights, as before mapping.",
        };
        var probeMiB = new Option<int>("--probe-mib")
        {
            Description = "With --model: MiB of the read-bandwidth probe's buffer (default: 1024, less when memory is short).",
        };
        var warmupSeconds = new Option<double>("--warmup-seconds")
        {
            Description = "With --model: untimed steps run at least this long (and at least 3 steps).",
            DefaultValueFactory = _ => 2,
        };
        var command = new Command("decode",
            "Median per-token decode time at growing positions, with the decoding state's (or KV cache's) and the weights' bytes.")
        {
            device, json, preset, positions, batches, steps, arch, dtypes, plot, modelDir, copyWeights, probeMiB,
            warmupSeconds,
        };
        SetAction(command, (parse, interrupted) =>
        {
            if (parse.GetValue(modelDir) is { } folder)
            {
                var explicitType = parse.GetResult(dtypes) is { Implicit: false };
                var modelOptions = new ModelDecodeOptions
                {
                    Folder = folder.FullName,
                    CopyWeights = parse.GetValue(copyWeights),
                    WeightType = !explicitType ? null
                        : ParseWeightTypes(parse.GetValue(dtypes) ?? "") is [var single] ? single
                        : throw new ArgumentException("--dtype: with --model, expected one of fp32, bf16, fp16."),
                    Steps = parse.GetValue(steps),
                    WarmupTime = TimeSpan.FromSeconds(parse.GetValue(warmupSeconds)),
                    ProbeBytes = parse.GetValue(probeMiB) is > 0 and var mib ? mib * (1L << 20) : null,
                };
                using var device1 = CommonOptions.OpenDevice(parse.GetValue(device));
                var r = ModelDecodeBenchmark.Run(device1, modelOptions, line => Console.Error.WriteLine(line));
                Console.WriteLine($"model: {folder.FullName} ({r.Architecture}, {r.Parameters:N0} parameters, " +
                                  $"{TensorDTypes.Name(r.WeightType)} matrices, weights " +
                                  (r.Mapped ? $"memory-mapped: {r.ReadOnlyWeights} read in place" : "copied") + ")");
                Console.WriteLine($"read-bandwidth probe: {Format.Number(r.ProbeGigabytesPerSecond, "0.00")} GB/s " +
                                  $"({Environment.ProcessorCount} threads, sequential, median)");
                Console.WriteLine($"decode, batch 1: {Format.Number(r.MsPerToken, "0.00")} ms/token (median of " +
                                  $"{modelOptions.Steps}); weights read per token {r.BytesPerToken:N0} bytes " +
                                  $"(state {r.StateBytes:N0}) → {Format.Number(r.GigabytesPerSecond, "0.00")} GB/s = " +
                                  $"{Format.Number(100 * r.BandwidthRatio, "0.0")}% of the probe");
                Console.WriteLine($"peak resident memory (VmHWM): {r.PeakResidentBytes:N0} bytes = " +
                                  $"{Format.Number(r.ResidentRatio, "0.000")}× the weight file ({r.WeightFileBytes:N0} bytes)");
                WriteJson(parse.GetValue(json), new[]
                {
                    new
                    {
                        model = folder.FullName,
                        architecture = r.Architecture,
                        dtype = TensorDTypes.Name(r.WeightType),
                        mapped = r.Mapped,
                        readOnlyWeights = r.ReadOnlyWeights,
                        parameters = r.Parameters,
                        weightFileBytes = r.WeightFileBytes,
                        bytesPerToken = r.BytesPerToken,
                        stateBytes = r.StateBytes,
                        msPerToken = r.MsPerToken,
                        gbps = r.GigabytesPerSecond,
                        probeGbps = r.ProbeGigabytesPerSecond,
                        bandwidthRatio = r.BandwidthRatio,
                        peakResidentBytes = r.PeakResidentBytes,
                        residentRatio = r.ResidentRatio,
                        device = device1.Description.Name,
                        deviceKind = device1.Kind.ToString(),
                    },
                });
                return 1;
            }
            var options = new DecodeBenchmarkOptions
            {
                Config = RetNetConfig.Preset(parse.GetValue(preset) ?? "small"),
                Positions = ParsePositiveList(parse.GetValue(positions) ?? "", "--positions"),
                Batches = ParsePositiveList(parse.GetValue(batches) ?? "", "--batches"),
                Steps = parse.GetValue(steps),
                Architectures = ParseArchitectures(parse.GetValue(arch) ?? ""),
                WeightTypes = ParseWeightTypes(parse.GetValue(dtypes) ?? ""),
            };
            using var opened = CommonOptions.OpenDevice(parse.GetValue(device));
            Console.WriteLine($"model: {parse.GetValue(preset)} (d={options.Config.EmbedDim}, {options.Config.Layers} layers, " +
                              $"{options.Config.RetentionHeads} heads, vocab {options.Config.VocabSize})");
            PrintBaseline(options.Architectures, options.Config);
            var print = Format.StreamingTable(["model", "dtype", "batch", "position", "ms/token", "state bytes",
                "weight bytes", "device bytes", "GB/s"], [11, 5, 5, 8, 9, 11, 12, 12, 7]);
            var results = DecodeBenchmark.Run(opened, options, r => print([r.Model, TensorDTypes.Name(r.WeightType),
                r.Batch.ToString(), r.Position.ToString(), Format.Number(r.MsPerToken, "0.000"), r.StateBytes.ToString(),
                r.WeightBytes.ToString(), r.DeviceBytes.ToString(), Format.Number(r.GigabytesPerSecond, "0.00")]),
                interrupted);
            foreach (var r in results.Where(r => r.WeightType != TensorDType.Float32))
            {
                var wide = results.FirstOrDefault(x => x.Model == r.Model && x.WeightType == TensorDType.Float32 &&
                                                       x.Batch == r.Batch && x.Position == r.Position);
                if (wide is not null && r.Position == options.Positions[^1])
                    Console.WriteLine($"{r.Model} batch {r.Batch}, position {r.Position}: {TensorDTypes.Name(r.WeightType)}/fp32 " +
                                      $"ms/token {Format.Number(r.MsPerToken / wide.MsPerToken, "0.00")}×, weight bytes " +
                                      $"{Format.Number(r.WeightBytes / (double)wide.WeightBytes, "0.00")}×, device bytes " +
                                      $"{Format.Number(r.DeviceBytes / (double)wide.DeviceBytes, "0.00")}×");
            }
            foreach (var group in results.GroupBy(r => (r.Model, r.WeightType, r.Batch)))
            {
                var first = group.MinBy(r => r.Position)!;
                var last = group.MaxBy(r => r.Position)!;
                var bytes = group.All(r => r.StateBytes == first.StateBytes)
                    ? $"constant ({first.StateBytes})"
                    : $"{first.StateBytes} → {last.StateBytes} (×{Format.Number(last.StateBytes / (double)first.StateBytes, "0.#")})";
                Console.WriteLine($"{group.Key.Model} {TensorDTypes.Name(group.Key.WeightType)} batch {group.Key.Batch}: ms/token at position {last.Position} is " +
                                  $"{Format.Number(100 * (last.MsPerToken / first.MsPerToken - 1), "+0.0;-0.0")}% vs " +
                                  $"position {first.Position}; state bytes {bytes}");
            }
            foreach (var t in results.Where(r => r.Model == DecodeBenchmarkOptions.Transformer))
            {
                var r = results.FirstOrDefault(x => x.Model == DecodeBenchmarkOptions.Retnet && x.Batch == t.Batch &&
                                                    x.Position == t.Position && x.WeightType == t.WeightType);
                if (r is not null && t.Position == options.Positions[^1])
                    Console.WriteLine($"{TensorDTypes.Name(t.WeightType)} batch {t.Batch}, position {t.Position}: transformer/retnet ms/token " +
                                      $"{Format.Number(t.MsPerToken / r.MsPerToken, "0.00")}×, KV cache/retnet state bytes " +
                                      $"{Format.Number(t.StateBytes / (double)r.StateBytes, "0.0")}×");
            }
            if (parse.GetValue(plot) is { } picture && results.Count > 0)
                Plots.Decode(picture.FullName, results, $"{parse.GetValue(preset)} preset, {opened.Kind}");
            WriteJson(parse.GetValue(json), results.Select(r => new
            {
                model = r.Model,
                batch = r.Batch,
                position = r.Position,
                msPerToken = r.MsPerToken,
                stateBytes = r.StateBytes,
                weightBytes = r.WeightBytes,
                dtype = TensorDTypes.Name(r.WeightType),
                deviceBytes = r.DeviceBytes,
                gbps = r.GigabytesPerSecond,
                device = opened.Description.Name,
                deviceKind = opened.Kind.ToString(),
            }));
            return results.Count;
        });
        return command;
    }

    private static Command Retention()
    {
        var device = CommonOptions.Device();
        var json = CommonOptions.Json();
        var batch = new Option<int>("--batch") { Description = "Batch size B.", DefaultValueFactory = _ => 1 };
        var heads = new Option<int>("--heads") { Description = "Heads H.", DefaultValueFactory = _ => 4 };
        var dk = new Option<int>("--dk") { Description = "Key head dimension.", DefaultValueFactory = _ => 64 };
        var dv = new Option<int>("--dv") { Description = "Value head dimension.", DefaultValueFactory = _ => 64 };
        var chunk = new Option<int>("--chunk-size") { Description = "Chunk size C.", DefaultValueFactory = _ => 64 };
        var seqLens = new Option<string>("--seq-lens")
        {
            Description = "Comma-separated sequence lengths.",
            DefaultValueFactory = _ => "256,512,1024,2048,4096",
        };
        var repetitions = new Option<int>("--repetitions")
        {
            Description = "Timed runs per case (fewer when a case exceeds --seconds-per-case); the median is reported.",
            DefaultValueFactory = _ => 5,
        };
        var secondsPerCase = new Option<double>("--seconds-per-case")
        {
            Description = "Stop repeating a case after this many seconds (at least one run).",
            DefaultValueFactory = _ => 10,
        };
        var command = new Command("retention",
            "Time each retention form (median, peak device bytes) forward and forward+backward over sequence lengths.")
        {
            device, json, batch, heads, dk, dv, chunk, seqLens, repetitions, secondsPerCase,
        };
        SetAction(command, (parse, interrupted) =>
        {
            var options = new RetentionBenchmarkOptions
            {
                Batch = parse.GetValue(batch),
                Heads = parse.GetValue(heads),
                KeyDim = parse.GetValue(dk),
                ValueDim = parse.GetValue(dv),
                ChunkSize = parse.GetValue(chunk),
                SeqLens = ParsePositiveList(parse.GetValue(seqLens) ?? "", "--seq-lens"),
                Repetitions = parse.GetValue(repetitions),
                SecondsPerCase = parse.GetValue(secondsPerCase),
            };
            using var opened = CommonOptions.OpenDevice(parse.GetValue(device));
            var peak = PeakOf(opened);
            Console.WriteLine($"B={options.Batch} H={options.Heads} Dk={options.KeyDim} Dv={options.ValueDim} " +
                              $"C={options.ChunkSize}");
            var print = Format.StreamingTable(
                ["form", "direction", "T", "median ms", "peak bytes", "GFLOP/s", "GB/s", .. peak is null ? [] : new[] { "% peak" }],
                [9, 16, 5, 10, 11, 8, 8, .. peak is null ? [] : new[] { 7 }]);
            var results = RetentionBenchmark.Run(opened, options, r => print(
            [
                r.Form, r.Direction, r.SeqLen.ToString(), Format.Number(r.MedianMs, "0.00"), r.PeakBytes.ToString(),
                Format.Number(RetentionBenchmark.GflopsPerSecond(r), "0.000"),
                Format.Number(RetentionBenchmark.GigabytesPerSecond(r), "0.000"),
                .. peak is null ? [] : new[] { Format.Number(100 * RetentionBenchmark.GflopsPerSecond(r) / peak.GFlops, "0.0") },
            ]), interrupted);
            PrintScaling(results, options);
            WriteJson(parse.GetValue(json), results.Select(r => new
                {
                    form = r.Form,
                    direction = r.Direction,
                    batch = r.Batch,
                    heads = r.Heads,
                    dk = r.Dk,
                    dv = r.Dv,
                    seqLen = r.SeqLen,
                    chunkSize = r.ChunkSize,
                    medianMs = r.MedianMs,
                    peakBytes = r.PeakBytes,
                    gflops = RetentionBenchmark.GflopsPerSecond(r),
                    gbps = RetentionBenchmark.GigabytesPerSecond(r),
                    fractionOfPeak = peak is null ? (double?)null : RetentionBenchmark.GflopsPerSecond(r) / peak.GFlops,
                    device = opened.Description.Name,
                    deviceKind = opened.Kind.ToString(),
                }));
            return results.Count;
        });
        return command;
    }

    /// <summary>The ratios the retention claims rest on, read off this run's table.</summary>
    private static void PrintScaling(IReadOnlyList<RetentionBenchmarkResult> results, RetentionBenchmarkOptions options)
    {
        var lengths = options.SeqLens.Distinct().Order().ToList();
        if (lengths.Count < 2)
            return;
        var (shortest, longest) = (lengths.Count > 2 && lengths.Contains(512) ? 512 : lengths[0], lengths[^1]);
        RetentionBenchmarkResult? Find(string form, string direction, int t) =>
            results.FirstOrDefault(r => r.Form == form && r.Direction == direction && r.SeqLen == t);
        foreach (var direction in RetentionBenchmark.Directions)
        {
            var chunkShort = Find("chunkwise", direction, shortest);
            var chunkLong = Find("chunkwise", direction, longest);
            var parallelLong = Find("parallel", direction, longest);
            if (chunkShort is null || chunkLong is null || parallelLong is null)
                continue;
            Console.WriteLine(
                $"{direction}: chunkwise time T={longest}/T={shortest} = " +
                $"{Format.Number(chunkLong.MedianMs / chunkShort.MedianMs, "0.00")} (T ratio {longest / (double)shortest:0.##}), " +
                $"peak bytes ratio {Format.Number(chunkLong.PeakBytes / (double)chunkShort.PeakBytes, "0.00")}; " +
                $"parallel/chunkwise time at T={longest} = {Format.Number(parallelLong.MedianMs / chunkLong.MedianMs, "0.00")}");
        }
        var parallel = Find("parallel", "forward", longest);
        if (parallel is not null)
        {
            var scores = 4.0 * options.Batch * options.Heads * longest * longest;
            Console.WriteLine($"parallel forward peak at T={longest}: {parallel.PeakBytes} bytes; T×T fp32 score " +
                              $"buffers for all B·H heads would be {scores:0} bytes ({Format.Number(scores / parallel.PeakBytes, "0.#")}×)");
        }
    }

    /// <summary>On ILGPU's CPU accelerator (whose work runs on this machine's cores), the CPU's nominal fp32 peak,
    /// printed once; null elsewhere or when the OS reports no clock.</summary>
    private static CpuPeak? PeakOf(RetNetDevice device)
    {
        var peak = device.IsCpuSimulator ? CpuPeak.Detect() : null;
        if (peak is not null)
            Console.WriteLine(peak.Describe());
        return peak;
    }

    /// <summary>
    /// Runs <paramref name="measure"/> (which returns how many results it measured) as the command's action, with
    /// Ctrl+C listened for: exit code 0, or after Ctrl+C (the results so far already printed and written) a line
    /// saying so and <see cref="Interruption.ExitCode"/>.
    /// </summary>
    private static void SetAction(Command command, Func<ParseResult, CancellationToken, int> measure) =>
        command.SetAction(parse => CommonOptions.Run(() =>
        {
            var interrupted = Interruption.Listen();
            var measured = measure(parse, interrupted);
            if (!interrupted.IsCancellationRequested)
                return 0;
            Console.Error.WriteLine($"interrupted: {measured} result(s) measured before Ctrl+C are above (and in --json)");
            return Interruption.ExitCode;
        }));

    /// <summary>With the Transformer among <paramref name="architectures"/>, the baseline's size next to RetNet's.</summary>
    private static void PrintBaseline(IReadOnlyList<string> architectures, RetNetConfig config)
    {
        if (!architectures.Contains(DecodeBenchmarkOptions.Transformer))
            return;
        var transformer = TransformerConfig.Matching(config);
        Console.WriteLine($"transformer: ffn {transformer.FfnEmbedDim}, {transformer.ParameterCount()} parameters " +
                          $"(RetNet: {config.ParameterCount()})");
    }

    /// <summary>Writes the records as an indented JSON array, atomically, when a file was asked for.</summary>
    private static void WriteJson<T>(FileInfo? file, IEnumerable<T> records)
    {
        if (file is null)
            return;
        AtomicFile.WriteAllText(file.FullName, JsonSerializer.Serialize(records.ToList(), JsonOptions));
        Console.WriteLine($"wrote {file.FullName}");
    }

    /// <summary>--arch: the models to measure, RetNet by default; <paramref name="transformerNote"/> ends the
    /// Transformer's description.</summary>
    private static Option<string> ArchitectureOption(string transformerNote) => new("--arch")
    {
        Description = "Comma-separated models: retnet, transformer (the baseline with the parameter count of the " +
                      $"RetNet preset{transformerNote}).",
        DefaultValueFactory = _ => DecodeBenchmarkOptions.Retnet,
    };

    /// <summary>--preset: the RetNet preset measured, <paramref name="defaultPreset"/> by default.</summary>
    private static Option<string> PresetOption(string defaultPreset) => new("--preset")
    {
        Description = $"Model preset ({string.Join(", ", RetNetConfig.PresetNames)}).",
        DefaultValueFactory = _ => defaultPreset,
    };

    /// <summary>--plot FILE.png: also draw the results.</summary>
    private static Option<FileInfo?> Plot() => new("--plot")
    {
        Description = "Also draw the results as a PNG (two panels: time and memory), written to a temporary name, then renamed.",
    };

    private static IReadOnlyList<string> ParseArchitectures(string text)
    {
        var items = text.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries)
            .Select(i => i.ToLowerInvariant()).ToList();
        if (items.Count == 0 || items.Any(i => i is not (DecodeBenchmarkOptions.Retnet or DecodeBenchmarkOptions.Transformer)) ||
            items.Distinct().Count() != items.Count)
            throw new ArgumentException($"--arch: '{text}' is not a comma-separated list of retnet and/or transformer.");
        return items;
    }

    private static IReadOnlyList<TensorDType> ParseWeightTypes(string text)
    {
        var items = text.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
        try
        {
            var types = items.Select(TensorDTypes.Parse).ToList();
            if (types.Count == 0 || types.Distinct().Count() != types.Count)
                throw new ArgumentException("empty or repeated");
            return types;
        }
        catch (ArgumentException)
        {
            throw new ArgumentException(
                $"--dtype: '{text}' is not a comma-separated list of {string.Join(", ", TensorDTypes.Names)}, each once.");
        }
    }

    private static IReadOnlyList<int> ParsePositiveList(string text, string option)
    {
        var items = text.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
        if (items.Length == 0 || !items.All(i => int.TryParse(i, out var v) && v > 0))
            throw new ArgumentException($"{option}: '{text}' is not a comma-separated list of positive integers.");
        return items.Select(int.Parse).ToList();
    }

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
        var dtype = new Option<string>("--dtype")
        {
            Description = "How B is stored: fp32, fp16 or bf16 (read directly, accumulated in fp32; A and C stay fp32).",
            DefaultValueFactory = _ => "fp32",
        };
        var transposeB = new Option<bool>("--transpose-b")
        {
            Description = "Store B as [N, K], a Linear layer's weight (M = 1 is then a decoding step's product).",
        };
        var implementations = new Option<string?>("--implementations")
        {
            Description = "Comma-separated subset of tiled, simple, host-simd, small-rows, csharp-reference to time (default: all; small-rows only with --transpose-b and M ≤ 8).",
        };
        var command = new Command("gemm",
            "Time the tiled and the barrier-free GEMM kernels (and, on the CPU accelerator, the host SIMD GEMM) next to the plain C# reference on the same shapes.")
        {
            device, json, warmup, repetitions, shapes, dtype, transposeB, implementations,
        };
        SetAction(command, (parse, interrupted) =>
        {
            var reps = parse.GetValue(repetitions);
            var warm = parse.GetValue(warmup);
            if (reps < 1)
                throw new ArgumentException($"--repetitions must be ≥ 1; got {reps}.");
            if (warm < 0)
                throw new ArgumentException($"--warmup must be ≥ 0; got {warm}.");
            var requested = ParseShapes(parse.GetValue(shapes));
            var dtypeB = ParseDType(parse.GetValue(dtype)!);
            using var opened = CommonOptions.OpenDevice(parse.GetValue(device));
            var peak = PeakOf(opened);
            var results = GemmBenchmark.Run(opened, requested ?? GemmBenchmark.DefaultShapes(opened), warm, reps,
                interrupted, dtypeB, parse.GetValue(transposeB), ParseImplementations(parse.GetValue(implementations)));
            var reference = results.Where(r => r.Implementation == "csharp-reference")
                .ToDictionary(r => (r.M, r.N, r.K), r => r.MedianMs);
            Console.Write(Format.Table(
                ["M×N×K", "B", "implementation", "median ms", "GFLOP/s", "B GB/s", "vs C# loop",
                    .. peak is null ? [] : new[] { "% peak" }],
                results.Select(r => (IReadOnlyList<string>)
                [
                    $"{r.M}×{r.N}×{r.K}", TensorDTypes.Name(r.DTypeB) + (r.TransposeB ? " [N,K]" : " [K,N]"),
                    r.Implementation, Format.Number(r.MedianMs, "0.###"), Format.Number(r.GFlops, "0.###"),
                    Format.Number(r.WeightGBps, "0.##"),
                    reference.TryGetValue((r.M, r.N, r.K), out var cs) ? Format.Number(cs / r.MedianMs, "0.##") + "×" : "",
                    .. peak is null ? [] : new[] { Format.Number(100 * r.GFlops / peak.GFlops, "0.0") },
                ])));
            WriteJson(parse.GetValue(json), results.Select(r => new
                {
                    device = opened.Description.Name,
                    deviceKind = opened.Kind.ToString(),
                    implementation = r.Implementation,
                    m = r.M,
                    n = r.N,
                    k = r.K,
                    dtypeB = TensorDTypes.Name(r.DTypeB),
                    transposeB = r.TransposeB,
                    medianMs = r.MedianMs,
                    gflops = r.GFlops,
                    weightGbps = r.WeightGBps,
                    fractionOfPeak = peak is null ? (double?)null : r.GFlops / peak.GFlops,
                }));
            return results.Count;
        });
        return command;
    }

    private static IReadOnlyCollection<string>? ParseImplementations(string? text)
    {
        if (string.IsNullOrWhiteSpace(text))
            return null;
        var items = text.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
        if (items.Length == 0 || items.Any(i => !GemmBenchmark.Implementations.Contains(i)))
            throw new ArgumentException(
                $"--implementations: '{text}' is not a comma-separated list of " +
                $"{string.Join(", ", GemmBenchmark.Implementations)}.");
        return items;
    }

    private static TensorDType ParseDType(string text)
    {
        try
        {
            return TensorDTypes.Parse(text);
        }
        catch (ArgumentException error)
        {
            throw new ArgumentException($"--dtype: '{text}' is not one of {string.Join(", ", TensorDTypes.Names)}.",
                error);
        }
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
