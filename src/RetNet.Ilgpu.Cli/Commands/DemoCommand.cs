using System.CommandLine;
using System.Diagnostics;
using RetNet.Ilgpu.Benchmarks;
using RetNet.Ilgpu.Generation;
using RetNet.Ilgpu.Kernels.Gemm;
using RetNet.Ilgpu.Model;
using RetNet.Ilgpu.Retention;
using RetNet.Ilgpu.Tensors;
using RetNet.Ilgpu.Tokenizers;
using RetNet.Ilgpu.Training;
using RetNet.Ilgpu.DemoData;

namespace RetNet.Ilgpu.Cli.Commands;

/// <summary>
/// <c>retnet demo</c>: the project's main job. Opens the chosen device, trains a tiny RetNet on English text that
/// ships with the .NET SDK and samples from it, shows a small RetNet's three forms agreeing and its flat decoding cost,
/// runs kernels against their double-precision references and compile-checks every kernel for PTX and OpenCL.
/// </summary>
internal static class DemoCommand
{
    public static Command Create()
    {
        var device = CommonOptions.Device();
        var command = new Command("demo",
            "Train a tiny RetNet on English text and sample from it; show the three forms agreeing and O(1) decoding; " +
            "check kernels against references.")
        {
            device,
        };
        command.SetAction(parse => CommonOptions.Run(() =>
        {
            using var opened = CommonOptions.OpenDevice(parse.GetValue(device));
            var trainingOk = RunTraining(opened);
            Console.WriteLine();
            var modelOk = RunModel(opened);
            Console.WriteLine();
            Console.WriteLine("kernels against their double-precision references:");
            var gemmOk = RunGemm(opened);
            var retentionOk = RunRetention(opened);
            var kernelsOk = KernelsCommand.Check(quiet: true) == 0;
            var ok = trainingOk && modelOk && gemmOk && retentionOk && kernelsOk;
            Console.WriteLine(ok ? "demo: all checks passed" : "demo: FAILED");
            return ok ? 0 : 1;
        }));
        return command;
    }

    /// <summary>
    /// Trains the tiny preset for a few seconds on the CPU (host execution) on the prose of the SDK's
    /// reference documentation (byte tokens), prints the loss as it falls and the held-out loss before and after, then
    /// continues a prompt with the trained model. Fails if the loss did not fall.
    /// </summary>
    private static bool RunTraining(Devices.RetNetDevice device)
    {
        var folder = Path.Combine(Path.GetTempPath(), $"retnet-demo-{Guid.NewGuid():N}");
        try
        {
            var train = Path.Combine(folder, "train.txt");
            var validation = Path.Combine(folder, "validation.txt");
            SdkCorpus.Write(train, validation, 1_000_000, 20_000);
            using (var initial = LanguageModel.Create(device, RetNetConfig.Preset("tiny"), seed: 2307))
                initial.Save(Path.Combine(folder, "model"));
            var settings = new TrainingSettings
            {
                Steps = 200, Batch = 8, SeqLen = 64, LearningRate = 3e-3, Warmup = 20, Clip = 2.0, ChunkSize = 16,
                Seed = 2307,
                Data = [train], ValidationData = [validation], Tokenizer = TokenizerKind.Byte,
            };
            using var trainer = Trainer.Start(device, Path.Combine(folder, "model"), settings, Path.Combine(folder, "run"));
            Console.WriteLine($"training: tiny RetNet ({trainer.Model.ParameterCount:N0} parameters) on " +
                              $"{trainer.TrainingTokens:N0} bytes of English from {SdkCorpus.Find()}, " +
                              $"{settings.Steps} steps of {settings.Batch}×{settings.SeqLen} byte tokens, AdamW, " +
                              $"{settings.Mode} retention");
            var before = trainer.EvaluateValidation();
            var losses = new List<double>();
            var timer = Stopwatch.StartNew();
            while (trainer.Step < settings.Steps)
            {
                var step = trainer.RunStep();
                losses.Add(step.Loss);
                if (step.Step % (settings.Steps / 8) == 0 || step.Step == 1)
                    Console.WriteLine($"  step {step.Step,4}: loss {Format.Number(step.Loss, "0.000")} nats/byte");
            }
            var tokensPerSecond = settings.Steps * settings.Batch * settings.SeqLen / timer.Elapsed.TotalSeconds;
            var after = trainer.EvaluateValidation();
            var firstLosses = losses.Take(5).Average();
            var lastLosses = losses.TakeLast(5).Average();
            var fell = lastLosses < firstLosses - 0.5 && after.Loss < before.Loss - 0.5;
            Console.WriteLine($"  training loss {Format.Number(firstLosses, "0.000")} → {Format.Number(lastLosses, "0.000")}, " +
                              $"held-out loss {Format.Number(before.Loss, "0.000")} → {Format.Number(after.Loss, "0.000")} " +
                              $"nats/byte, {Format.Number(tokensPerSecond, "0")} tokens/s {(fell ? "ok" : "FAIL: the loss did not fall")}");
            using var decoder = new ModelTokenDecoder(trainer.Model);
            var options = new SamplingOptions { Temperature = 0.7, TopK = 20, Seed = 2307, MaxTokens = 80 };
            var sample = string.Concat(TextGenerator.Generate(decoder, ByteTokenizer.Instance, "The ", options));
            Console.WriteLine($"  sample: \"The {sample.Replace('\n', ' ')}\"");
            return fell;
        }
        finally
        {
            if (Directory.Exists(folder))
                Directory.Delete(folder, recursive: true);
        }
    }

    /// <summary>
    /// A small RetNet: the parallel, chunkwise and recurrent forms give the same logits, and decoding costs the same
    /// per token at every position with a state of constant size.
    /// </summary>
    private static bool RunModel(Devices.RetNetDevice device)
    {
        const string preset = "small";
        var config = RetNetConfig.Preset(preset);
        using var model = LanguageModel.Create(device, config, seed: 2307);
        Console.WriteLine($"model: {preset} RetNet, {config.Layers} layers, d={config.EmbedDim}, {config.RetentionHeads} heads, " +
                          $"vocab {config.VocabSize}, {model.ParameterCount:N0} parameters ({Format.Bytes(model.WeightBytes)})");

        const int tokens = 96;
        var random = new Random(1);
        var ids = new int[2, tokens];
        for (var b = 0; b < 2; b++)
            for (var t = 0; t < tokens; t++)
                ids[b, t] = random.Next(config.VocabSize);
        float[] Logits(ForwardMode mode)
        {
            using var logits = model.Forward(ids, mode);
            return logits.ToHost();
        }
        var parallel = Logits(ForwardMode.Parallel);
        var maxRef = parallel.Max(v => Math.Abs((double)v));
        var ok = true;
        Console.WriteLine($"logits of 2 × {tokens} tokens, max |logit| {maxRef:G3}; each form against the parallel form:");
        foreach (var mode in new[] { ForwardMode.Chunkwise(16), ForwardMode.Chunkwise(64), ForwardMode.Recurrent })
        {
            var (maxDiff, _) = MaxDiff(Logits(mode), parallel.Select(v => (double)v).ToArray());
            var relative = maxDiff / maxRef;
            var pass = relative <= 2e-4;
            ok &= pass;
            Console.WriteLine($"  {mode,-14} max |Δ| {maxDiff:G3} ({relative:G3} of max |logit|) {(pass ? "ok" : "FAIL")}");
        }

        Console.WriteLine("decoding: prefill to each position, then time single-token steps (batch 1):");
        var results = DecodeBenchmark.Run(device, new DecodeBenchmarkOptions
        {
            Config = config,
            Positions = [64, 256, 1024],
            Batches = [1],
            Steps = 8,
            Seed = 2307,
        }, r => Console.WriteLine($"  position {r.Position,5}: {Format.Number(r.MsPerToken, "0.00"),7} ms/token, " +
                                  $"state {Format.Bytes(r.StateBytes)}"));
        var stateConstant = results.All(r => r.StateBytes == results[0].StateBytes);
        ok &= stateConstant;
        Console.WriteLine($"  ms/token at position {results[^1].Position} vs {results[0].Position}: " +
                          $"{Format.Number(100 * (results[^1].MsPerToken / results[0].MsPerToken - 1), "+0;-0")}%; " +
                          $"state size {(stateConstant ? "constant" : "CHANGED")} (a Transformer's KV cache grows with " +
                          "every token)");
        return ok;
    }

    /// <summary>A Linear-layer-shaped product: x [batch, tokens, in] · Wᵀ with W [out, in] broadcast over the batch.</summary>
    private static bool RunGemm(Devices.RetNetDevice device)
    {
        const int batch = 2, tokens = 96, input = 72, output = 80;
        var random = new Random(2307);
        float[] Random(int n) => Enumerable.Range(0, n).Select(_ => (float)(random.NextDouble() * 2 - 1)).ToArray();
        var x = Random(batch * tokens * input);
        var w = Random(output * input);

        using var tx = Tensor.FromHost(device, x, batch, tokens, input);
        using var tw = Tensor.FromHost(device, w, output, input);
        using var ty = Tensor.Uninitialized(device, batch, tokens, output);
        // The variant Auto picks: the host SIMD GEMM on the CPU accelerator, the tiled kernel elsewhere.
        var variant = device.IsCpuSimulator ? GemmVariant.HostSimd : GemmVariant.Tiled;
        Gemm.Run(tx, tw, ty, transposeB: true, variant: variant);
        device.Synchronize();
        var timer = Stopwatch.StartNew();
        Gemm.Run(tx, tw, ty, transposeB: true, variant: variant);
        device.Synchronize();
        var elapsed = timer.Elapsed.TotalMilliseconds;

        var shape = GemmShape.Of(tx, tw, transposeB: true);
        var expected = GemmReference.Forward(shape, x, w);
        var (maxDiff, maxRef) = MaxDiff(ty.ToHost(), expected);
        // The project's fp32 tolerance rule: max |Δ| ≤ 1e-4 · max |reference|.
        var bound = 1e-4 * maxRef;
        var ok = maxDiff <= bound;
        Console.WriteLine(
            $"gemm ({variant}): x [{batch}, {tokens}, {input}] · Wᵀ, W [{output}, {input}] → [{batch}, {tokens}, {output}] " +
            $"in {Format.Number(elapsed, "0.##")} ms ({Format.Number(shape.Flops / elapsed / 1e6, "0.###")} GFLOP/s); " +
            $"max |Δ| vs double reference {maxDiff:G3} (bound {bound:G3}) {(ok ? "ok" : "FAIL")}");
        return ok;
    }

    /// <summary>
    /// The three forms of retention on one input: parallel, chunkwise and token-by-token recurrent outputs and final
    /// states, each against the double-precision reference.
    /// </summary>
    private static bool RunRetention(Devices.RetNetDevice device)
    {
        var shape = new RetentionShape(Batch: 1, SeqLen: 192, Heads: 4, KeyDim: 32, ValueDim: 32);
        const int chunkSize = 64;
        var decay = DecaySchedule.Torchscale(shape.Heads);
        var random = new Random(2023);
        float[] Random(int n) => Enumerable.Range(0, n).Select(_ => (float)(random.NextDouble() * 2 - 1)).ToArray();
        var (q, k, v) = (Random(shape.QueryLength), Random(shape.QueryLength), Random(shape.ValueLength));
        var reference = RetentionReference.Parallel(shape, decay, q, k, v);

        using var tq = Tensor.FromHost(device, q, shape.QueryShape);
        using var tk = Tensor.FromHost(device, k, shape.QueryShape);
        using var tv = Tensor.FromHost(device, v, shape.ValueShape);
        using var output = Tensor.Zeros(device, shape.ValueShape);
        using var state = Tensor.Zeros(device, shape.StateShape);
        var ok = true;
        void Report(string form, double ms)
        {
            var (outputDiff, outputRef) = MaxDiff(output.ToHost(), reference.Output);
            var (stateDiff, stateRef) = MaxDiff(state.ToHost(), reference.FinalState);
            var pass = outputDiff <= 1e-4 * outputRef && stateDiff <= 1e-4 * stateRef;
            ok &= pass;
            Console.WriteLine($"retention {form,-10} {Format.Number(ms, "0.##"),8} ms   max |Δ| output {outputDiff:G3}, " +
                              $"final state {stateDiff:G3} {(pass ? "ok" : "FAIL")}");
        }

        Console.WriteLine($"retention: B={shape.Batch} T={shape.SeqLen} H={shape.Heads} Dk={shape.KeyDim} " +
                          $"Dv={shape.ValueDim}, torchscale decay, vs double reference (bound 1e-4·max |ref|); " +
                          "times are first calls and include loading the kernels");
        var timer = Stopwatch.StartNew();
        ParallelRetention.Forward(tq, tk, tv, decay, output, finalState: state);
        device.Synchronize();
        Report("parallel", timer.Elapsed.TotalMilliseconds);

        timer.Restart();
        ChunkwiseRetention.Forward(tq, tk, tv, decay, chunkSize, output, finalState: state);
        device.Synchronize();
        Report($"chunk={chunkSize}", timer.Elapsed.TotalMilliseconds);

        // Token by token, as in decoding: each step reads and advances the state in place.
        using var zero = Tensor.Zeros(device, shape.StateShape);
        state.CopyFrom(zero);
        timer.Restart();
        // With B = 1, token t of a [1, T, H, D] tensor is row t of its [T, H, D] view: no copies.
        Tensor Token(Tensor x, int t) => x.Reshape(shape.SeqLen, shape.Heads, -1).Slice(t, 1).Reshape(1, 1, shape.Heads, -1);
        for (var t = 0; t < shape.SeqLen; t++)
            RecurrentRetention.Forward(Token(tq, t), Token(tk, t), Token(tv, t), decay, Token(output, t), state);
        device.Synchronize();
        Report("recurrent", timer.Elapsed.TotalMilliseconds);
        return ok;
    }

    private static (double MaxDiff, double MaxRef) MaxDiff(float[] actual, double[] expected)
    {
        double maxDiff = 0, maxRef = 0;
        for (var i = 0; i < expected.Length; i++)
        {
            maxDiff = Math.Max(maxDiff, Math.Abs(actual[i] - expected[i]));
            maxRef = Math.Max(maxRef, Math.Abs(expected[i]));
        }
        return (maxDiff, maxRef);
    }
}
