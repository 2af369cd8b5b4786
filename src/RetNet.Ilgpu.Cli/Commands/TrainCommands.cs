using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using RetNet.Ilgpu.DemoData;
using RetNet.Ilgpu.IO;
using RetNet.Ilgpu.Model;
using RetNet.Ilgpu.Tensors;
using RetNet.Ilgpu.Tokenizers;
using RetNet.Ilgpu.Training;
using RetNet.Ilgpu.Training.Data;
using RetNet.Ilgpu.Training.Distributed;

namespace RetNet.Ilgpu.Cli.Commands;

/// <summary><c>retnet train</c> and <c>retnet eval</c>.</summary>
internal static class TrainCommands
{
    private static readonly JsonSerializerOptions LogJson = new() { WriteIndented = false };

    public static Command Train()
    {
        var defaults = new TrainingSettings();
        var model = new Option<DirectoryInfo?>("--model") { Description = "The model folder to start from." };
        var resume = new Option<DirectoryInfo?>("--resume") { Description = "A checkpoint folder to continue to its --steps." };
        var data = new Option<string?>("--data") { Description = "Training data: text or llm.c .bin files, comma-separated." };
        var validation = new Option<string?>("--val-data") { Description = "Validation data, comma-separated." };
        var output = new Option<DirectoryInfo?>("--output") { Description = "The checkpoint folder to write (with --resume: default the same)." };
        var tokenizer = CommonOptions.Tokenizer("byte, gpt2, sentencepiece (the model folder's tokenizer.model) or auto " +
                                                "(the folder's tokenizer.model if it has one, else from the vocabulary " +
                                                "size), for text.");
        var steps = new Option<int>("--steps") { Description = "The schedule's length in optimiser steps." };
        var stopAfter = new Option<int?>("--stop-after") { Description = "Stop after this step as if interrupted, leaving a resumable checkpoint." };
        var batch = new Option<int>("--batch") { Description = "Windows per micro-batch.", DefaultValueFactory = _ => defaults.Batch };
        var seqLen = new Option<int>("--seq-len") { Description = "Predicted tokens per window.", DefaultValueFactory = _ => defaults.SeqLen };
        var accumulation = new Option<int>("--grad-accum") { Description = "Micro-batches per optimiser step (under mpirun, per rank: a step averages ranks × this).", DefaultValueFactory = _ => 1 };
        var rate = new Option<double>("--lr") { Description = "Peak learning rate.", DefaultValueFactory = _ => defaults.LearningRate };
        var warmup = new Option<int>("--warmup") { Description = "Linear warm-up steps.", DefaultValueFactory = _ => 0 };
        var schedule = CommonOptions.Choice("--schedule", "cosine, linear, polynomial or constant.", defaults.Schedule,
            LearningRateSchedule.Parse, "cosine|linear|polynomial|constant");
        var minRatio = new Option<double>("--min-lr-ratio") { Description = "Final learning rate / peak.", DefaultValueFactory = _ => defaults.MinLrRatio };
        var decay = new Option<double>("--weight-decay") { Description = "Decoupled weight decay of the matrices.", DefaultValueFactory = _ => defaults.WeightDecay };
        var betas = new Option<string>("--betas") { Description = "AdamW's β1,β2.", DefaultValueFactory = _ => "0.9,0.98" };
        var eps = new Option<double>("--eps") { Description = "AdamW's eps.", DefaultValueFactory = _ => defaults.Eps };
        var clip = new Option<double>("--clip") { Description = "Clip the global gradient norm to this (0: off).", DefaultValueFactory = _ => defaults.Clip };
        var form = CommonOptions.TrainingForm("Retention form of training: chunkwise or parallel.");
        var chunk = new Option<int>("--chunk-size") { Description = "Chunk size of the chunkwise form.", DefaultValueFactory = _ => ForwardMode.DefaultChunkSize };
        var checkpointActivations = new Option<bool>("--checkpoint-activations")
        {
            Description = "Keep only each block's input and recompute its activations in the backward pass.",
        };
        var computeType = CommonOptions.Choice("--dtype",
            "Read the weight matrices in the passes as fp32, or as bf16/fp16 copies of the fp32 master weights (mixed " +
            "precision; gradients, activations and AdamW stay fp32).", defaults.ComputeType, TensorDTypes.Parse,
            "fp32|bf16|fp16");
        var onNonFinite = CommonOptions.Choice("--on-non-finite",
            "When a step's loss or gradient norm is not finite: stop (with an error naming the step) or skip the step " +
            "(weights untouched, counted in the log).", defaults.OnNonFinite,
            text => text.Trim().ToLowerInvariant() switch
            {
                "stop" => NonFiniteStepPolicy.Stop,
                "skip" => NonFiniteStepPolicy.Skip,
                _ => throw new ArgumentException($"'{text}' is not stop or skip.", nameof(text)),
            }, "stop|skip");
        var evalEvery = new Option<int>("--eval-every") { Description = "Evaluate on --val-data every N steps (0: at the end).", DefaultValueFactory = _ => 0 };
        var saveEvery = new Option<int>("--save-every") { Description = "Checkpoint every N steps (0: at the end).", DefaultValueFactory = _ => 0 };
        var seed = new Option<ulong>("--seed") { Description = "Seed of the window sampler.", DefaultValueFactory = _ => 0 };
        var log = new Option<FileInfo?>("--log") { Description = "Append every step and evaluation to this JSONL file." };
        var device = CommonOptions.Device();
        var collectiveTimeout = new Option<int>("--collective-timeout")
        {
            Description = "Under mpirun: the most seconds one rank waits for the others in a collective call before " +
                          "it ends itself, and with it the job.",
            DefaultValueFactory = _ => 900,
        };
        var command = new Command("train",
            "Train a model on text or token files; checkpoints are resumable and bit-identical on one device. Under " +
            "mpirun, every process trains data-parallel (docs/DISTRIBUTED.md).")
        {
            model, resume, data, validation, output, tokenizer, steps, stopAfter, batch, seqLen, accumulation, rate,
            warmup, schedule, minRatio, decay, betas, eps, clip, form, chunk, checkpointActivations, evalEvery, saveEvery,
            seed, log, device, computeType, onNonFinite, collectiveTimeout,
        };
        command.SetAction(parse =>
        {
            MpiLaunch? launch = null;
            var code = CommonOptions.Run(() =>
            {
                launch = MpiLaunch.FromEnvironment();
                return 0;
            });
            if (code != 0)
                return code;
            if (launch is null)
                return CommonOptions.Run(() => Train(parse, reducer: null, Interruption.Listen()));
            var seconds = parse.GetValue(collectiveTimeout);
            if (seconds < 1)
                return CommonOptions.Run(() => throw new ArgumentException(
                    $"--collective-timeout is {seconds}; expected ≥ 1 second."));
            return Distributed(launch, TimeSpan.FromSeconds(seconds),
                reducer => Train(parse, reducer, CancellationToken.None));
        });
        return command;

        int Train(ParseResult parse, MpiGradientReducer? reducer, CancellationToken interrupted)
        {
            using var opened = CommonOptions.OpenDevice(parse.GetValue(device), reducer?.LocalRank ?? 0);
            Trainer trainer;
            if (parse.GetValue(resume) is { } checkpoint)
            {
                trainer = Trainer.Resume(opened, checkpoint.FullName, parse.GetValue(output)?.FullName, reducer);
                Console.WriteLine($"resuming {checkpoint.FullName} at step {trainer.Step} of {trainer.Settings.Steps}");
            }
            else
            {
                var start = parse.GetValue(model) ?? throw new ArgumentException("Give --model DIR (or --resume DIR).");
                var target = parse.GetValue(output) ?? throw new ArgumentException("Give --output DIR.");
                var betaParts = (parse.GetValue(betas) ?? "").Split(',');
                if (betaParts.Length != 2 ||
                    !double.TryParse(betaParts[0], NumberStyles.Float, CultureInfo.InvariantCulture, out var beta1) ||
                    !double.TryParse(betaParts[1], NumberStyles.Float, CultureInfo.InvariantCulture, out var beta2))
                    throw new ArgumentException($"--betas is '{parse.GetValue(betas)}'; expected two numbers, e.g. 0.9,0.98.");
                var settings = new TrainingSettings
                {
                    Steps = parse.GetValue(steps), Batch = parse.GetValue(batch), SeqLen = parse.GetValue(seqLen),
                    GradAccum = parse.GetValue(accumulation), LearningRate = parse.GetValue(rate),
                    Warmup = parse.GetValue(warmup), Schedule = parse.GetValue(schedule),
                    MinLrRatio = parse.GetValue(minRatio), WeightDecay = parse.GetValue(decay), Beta1 = beta1,
                    Beta2 = beta2, Eps = parse.GetValue(eps), Clip = parse.GetValue(clip),
                    Form = parse.GetValue(form), ChunkSize = parse.GetValue(chunk),
                    CheckpointActivations = parse.GetValue(checkpointActivations),
                    ComputeType = parse.GetValue(computeType), OnNonFinite = parse.GetValue(onNonFinite),
                    EvalEvery = parse.GetValue(evalEvery), SaveEvery = parse.GetValue(saveEvery),
                    Seed = parse.GetValue(seed), Tokenizer = parse.GetValue(tokenizer),
                    Data = TokenDataset.ParsePathList(parse.GetValue(data) ?? ""),
                    ValidationData = parse.GetValue(validation) is { } v ? TokenDataset.ParsePathList(v) : [],
                };
                trainer = Trainer.Start(opened, start.FullName, settings, target.FullName, reducer);
            }
            using (trainer)
            {
                if (reducer is null || reducer.Rank == 0)
                {
                    foreach (var notice in trainer.Model.Notices)
                        Console.Error.WriteLine($"note: {notice}");
                }
                return Run(trainer, reducer, parse.GetValue(stopAfter), parse.GetValue(log)?.FullName, interrupted);
            }
        }
    }

    /// <summary>
    /// One rank of a data-parallel run under mpirun: initialises MPI, silences the standard output of every rank but 0,
    /// and runs <paramref name="train"/>. A failure every rank meets alike (the ranks disagree on the run) ends each
    /// rank with exit code 1 after MPI_Finalize; a failure of this rank alone calls MPI_Abort, which ends the whole job
    /// at once, so that no rank waits for one that has gone. Ctrl+C is left to mpirun, which ends the job: the last
    /// checkpoint, written whole, is where a resumed run continues.
    /// </summary>
    private static int Distributed(MpiLaunch launch, TimeSpan collectiveTimeout, Func<MpiGradientReducer, int> train)
    {
        MpiWorld world;
        try
        {
            world = MpiWorld.Initialize(launch, collectiveTimeout);
        }
        catch (Exception e) when (CommonOptions.IsUserError(e))
        {
            Console.Error.WriteLine($"error (rank {launch.Rank} of {launch.Size}): {CommonOptions.UserMessage(e)}");
            return 1;
        }
        using (world)
        {
            if (world.Rank != 0)
                Console.SetOut(TextWriter.Null);
            Console.WriteLine($"data-parallel: {world.Size} ranks through {world.LibraryPath}; each step sums their " +
                              "gradients in rank order");
            try
            {
                return train(new MpiGradientReducer(world));
            }
            catch (RanksDisagreeException e)
            {
                Console.Error.WriteLine($"error (rank {world.Rank} of {world.Size}): {e.Message}");
                return 1;
            }
            catch (Exception e)
            {
                Console.Error.WriteLine($"error (rank {world.Rank} of {world.Size}): " +
                                        (CommonOptions.IsUserError(e) ? CommonOptions.UserMessage(e) : e.ToString()));
                world.Abort(1);
                return 1;
            }
        }
    }

    /// <summary>The trainer's step loop (<see cref="Trainer.Run"/>), printing each step and evaluation. Ctrl+C stops
    /// it at the next step boundary; the checkpoint is then saved so that no finished step is lost, and the run exits
    /// with <see cref="Interruption.ExitCode"/>.</summary>
    private static int Run(Trainer trainer, IGradientReducer? reducer, int? stopAfter, string? logPath,
        CancellationToken interrupted)
    {
        var s = trainer.Settings;
        var stop = Math.Min(stopAfter ?? s.Steps, s.Steps);
        var workers = reducer?.Workers ?? 1;
        // mpirun hands its ranks a terminal of its own and forwards their output: one line per step reads there.
        var live = !Console.IsOutputRedirected && workers == 1;
        var leader = reducer is null || reducer.Rank == 0;
        using var log = logPath is null || !leader ? null : new StreamWriter(logPath, append: true);
        var ranks = workers > 1 ? $"{workers} ranks × " : "";
        Console.WriteLine($"training {trainer.Model.ParameterCount:N0} parameters on {trainer.TrainingTokens:N0} tokens: " +
                          $"{s.Steps} steps of {ranks}{s.GradAccum}×{s.Batch}×{s.SeqLen} tokens, {trainer.Model.Architecture} " +
                          $"({s.Mode} for retention), weights read as {TensorDTypes.Name(s.ComputeType)}, lr " +
                          $"{s.LearningRate} ({s.Schedule.ToString().ToLowerInvariant()}, warm-up {s.Warmup}), " +
                          $"checkpoints in {trainer.OutputFolder}");
        double seconds = 0;
        long tokens = 0;
        var done = 0;
        void OnStep(TrainingStep r)
        {
            seconds += r.Seconds;
            tokens += r.Tokens;
            done++;
            var eta = TimeSpan.FromSeconds(seconds / done * (stop - r.Step));
            var skipped = r.Skipped ? $"  SKIPPED (not finite; {trainer.SkippedSteps} so far)" : "";
            var reduce = workers > 1
                ? string.Create(CultureInfo.InvariantCulture, $"  reduce {r.ReduceSeconds * 1e3:F1} of {r.Seconds * 1e3:F1} ms")
                : "";
            var line = string.Create(CultureInfo.InvariantCulture,
                $"step {r.Step}/{s.Steps}  loss {r.Loss:F4}  lr {r.LearningRate:E2}  grad norm {r.GradientNorm:F3}  " +
                $"{tokens / seconds:F0} tokens/s{reduce}  ETA {eta:hh\\:mm\\:ss}{skipped}");
            if (live)
                Console.Write($"\r{line}   ");
            else
                Console.WriteLine(line);
            Write(log, new { type = "step", step = r.Step, loss = r.Loss, lr = r.LearningRate,
                grad_norm = double.IsFinite(r.GradientNorm) ? r.GradientNorm : (double?)null,
                tokens_per_second = r.Tokens / r.Seconds, skipped = r.Skipped, step_ms = r.Seconds * 1e3,
                reduce_ms = r.ReduceSeconds * 1e3 });
        }
        void OnEvaluation(int step, Evaluation e)
        {
            if (live)
                Console.WriteLine();
            Console.WriteLine($"eval at step {step}: {Describe(e)}");
            Write(log, new { type = "eval", step, loss = e.Loss, perplexity = e.Perplexity, tokens = e.Tokens,
                bitsPerByte = e.BitsPerByte });
        }
        var run = trainer.Run(stop, OnStep, OnEvaluation, interrupted);
        if (live)
            Console.WriteLine();
        if (run.Interrupted)
        {
            Console.WriteLine($"interrupted after step {trainer.Step} of {s.Steps}; saved {trainer.OutputFolder}; " +
                              $"resume with: retnet train --resume {trainer.OutputFolder}");
            return Interruption.ExitCode;
        }
        var skipped = trainer.SkippedSteps > 0 ? $", {trainer.SkippedSteps} steps skipped (not finite)" : "";
        Console.WriteLine(trainer.Step >= s.Steps
            ? $"done: {trainer.Step} steps{skipped}, {run.Tokens / Math.Max(run.Seconds, 1e-9):F0} tokens/s; wrote {trainer.OutputFolder}"
            : $"stopped after step {trainer.Step} of {s.Steps}{skipped}; resume with: retnet train --resume {trainer.OutputFolder}");
        return 0;
    }

    private static string Describe(Evaluation e)
    {
        var bits = e.BitsPerByte is { } bpb ? string.Create(CultureInfo.InvariantCulture, $", {bpb:F4} bits/byte") : "";
        return string.Create(CultureInfo.InvariantCulture,
            $"loss {e.Loss:F4} nats/token, perplexity {e.Perplexity:F2}{bits} over {e.Tokens:N0} tokens");
    }

    private static void Write(StreamWriter? log, object record)
    {
        if (log is null)
            return;
        log.WriteLine(JsonSerializer.Serialize(record, LogJson));
        log.Flush();
    }

    public static Command Corpus()
    {
        var train = new Option<FileInfo>("--train") { Description = "The training text file to write.", Required = true };
        var validation = new Option<FileInfo>("--val") { Description = "The held-out text file to write.", Required = true };
        var trainBytes = new Option<int>("--train-bytes") { Description = "At most this many UTF-8 bytes of training text.", DefaultValueFactory = _ => 2_000_000 };
        var validationBytes = new Option<int>("--val-bytes") { Description = "At most this many bytes of held-out text.", DefaultValueFactory = _ => 200_000 };
        var command = new Command("corpus",
            "Write English text found on every machine with the .NET SDK (the prose of its reference documentation) " +
            $"as a training file and a held-out file (every {SdkCorpus.ValidationEvery}th paragraph).")
        {
            train, validation, trainBytes, validationBytes,
        };
        command.SetAction(parse => CommonOptions.Run(() =>
        {
            var split = SdkCorpus.Write(parse.GetValue(train)!.FullName, parse.GetValue(validation)!.FullName,
                parse.GetValue(trainBytes), parse.GetValue(validationBytes));
            Console.WriteLine($"from {SdkCorpus.Find()}: wrote {split.TrainBytes:N0} bytes ({split.TrainParagraphs:N0} " +
                              $"paragraphs) of training text and {split.ValidationBytes:N0} bytes " +
                              $"({split.ValidationParagraphs:N0}) held out");
            return 0;
        }));
        return command;
    }

    public static Command Eval()
    {
        var model = new Option<DirectoryInfo>("--model") { Description = "A model folder.", Required = true };
        var data = new Option<string>("--data") { Description = "Text or llm.c .bin files, comma-separated.", Required = true };
        var tokenizer = CommonOptions.Tokenizer("byte, gpt2, sentencepiece (the model folder's tokenizer.model) or auto " +
                                                "(that if the folder has one, else from the vocabulary size), for text.");
        var seqLen = new Option<int>("--seq-len") { Description = "Predicted tokens per window (windows of T + 1, stride T).", Required = true };
        var batch = new Option<int>("--batch") { Description = "Windows per forward pass.", DefaultValueFactory = _ => 8 };
        var form = CommonOptions.TrainingForm("chunkwise or parallel.");
        var chunk = new Option<int>("--chunk-size") { Description = "Chunk size of the chunkwise form.", DefaultValueFactory = _ => ForwardMode.DefaultChunkSize };
        var json = CommonOptions.Json();
        var device = CommonOptions.Device();
        var command = new Command("eval",
            "The mean next-token loss of a model over whole data (windows of T + 1 tokens, stride T), perplexity and bits per byte.")
        {
            model, data, tokenizer, seqLen, batch, form, chunk, json, device,
        };
        command.SetAction(parse => CommonOptions.Run(() =>
        {
            var t = parse.GetValue(seqLen);
            var b = parse.GetValue(batch);
            if (t < 1 || b < 1)
                throw new ArgumentException($"--seq-len {t} and --batch {b} must be ≥ 1.");
            using var opened = CommonOptions.OpenDevice(parse.GetValue(device));
            var folder = parse.GetValue(model)!;
            using var loaded = CommonOptions.LoadAnyModel(opened, folder);
            var text = TextTokenizers.ForModel(parse.GetValue(tokenizer), folder.FullName, loaded.VocabSize);
            using var dataset = TokenDataset.Open(TokenDataset.ParsePathList(parse.GetValue(data)!), text,
                loaded.VocabSize);
            var mode = ForwardMode.Of(parse.GetValue(form), parse.GetValue(chunk));
            var e = loaded.Evaluate(dataset, t, b, mode, text);
            Console.WriteLine(Describe(e));
            if (parse.GetValue(json) is { } file)
                AtomicFile.WriteAllText(file.FullName, JsonSerializer.Serialize(new
                {
                    loss = e.Loss, perplexity = e.Perplexity, tokens = e.Tokens, bitsPerByte = e.BitsPerByte,
                }, new JsonSerializerOptions { WriteIndented = true }));
            return 0;
        }));
        return command;
    }
}
