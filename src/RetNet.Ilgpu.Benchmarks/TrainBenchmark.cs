using RetNet.Ilgpu.Devices;
using RetNet.Ilgpu.Model;
using RetNet.Ilgpu.Tensors;
using RetNet.Ilgpu.Training;

namespace RetNet.Ilgpu.Benchmarks;

/// <summary>One measured case of <see cref="TrainBenchmark"/>.</summary>
/// <param name="Model">The architecture ("retnet" or "transformer").</param>
/// <param name="Form">The retention form of the training pass ("attention" for the Transformer).</param>
/// <param name="Batch">Windows per step, B.</param>
/// <param name="SeqLen">Predicted tokens per window, T.</param>
/// <param name="MsPerStep">Median wall time of one optimiser step (training pass, clipping norm, AdamW).</param>
/// <param name="TokensPerSecond">B·T / the median step time.</param>
/// <param name="PeakBytes">The most device memory allocated through the library during the timed steps: weights,
/// gradients, moments and the training pass's activations.</param>
/// <param name="LinearGflops">The linear layers' share of the work per second: 6 · (weights of every matrix the
/// model multiplies by, the output projection included, the embedding gather not) · tokens / time, the usual
/// forward + backward estimate. The token mixer's own products (retention, attention) are not counted, so the two
/// models are compared on the same measure; NaN when not measured.</param>
/// <param name="ComputeType">The type the passes read the weight matrices in (fp32, or 16-bit copies of the fp32
/// masters: mixed precision).</param>
public sealed record TrainBenchmarkResult(string Model, string Form, int Batch, int SeqLen, double MsPerStep,
    double TokensPerSecond, long PeakBytes, double LinearGflops = double.NaN,
    TensorDType ComputeType = TensorDType.Float32);

/// <summary>What <see cref="TrainBenchmark.Run"/> measures.</summary>
public sealed record TrainBenchmarkOptions
{
    /// <summary>The architectures, each measured at every length: "retnet", "transformer" or both.</summary>
    public IReadOnlyList<string> Architectures { get; init; } = [DecodeBenchmarkOptions.Retnet];

    /// <summary>The model's config; the tiny preset by default. The Transformer is
    /// <see cref="TransformerConfig.Matching"/> of it.</summary>
    public RetNetConfig Config { get; init; } = RetNetConfig.Preset("tiny");

    /// <summary>The sequence lengths, each measured in turn.</summary>
    public IReadOnlyList<int> SeqLens { get; init; } = [512, 1024, 2048, 4096, 8192];

    /// <summary>Windows per step.</summary>
    public int Batch { get; init; } = 1;

    /// <summary>The retention form of the training pass.</summary>
    public ForwardMode Mode { get; init; } = ForwardMode.Chunkwise();

    /// <summary>Whether the training pass keeps only block inputs and recomputes the rest.</summary>
    public bool CheckpointActivations { get; init; }

    /// <summary>Timed steps per length (the median is reported) after one untimed step.</summary>
    public int Steps { get; init; } = 3;

    /// <summary>The type the forward and backward passes read the weight matrices in: fp32, or bf16/fp16 copies of the
    /// fp32 master weights (mixed precision, as <c>retnet train --dtype</c> runs it).</summary>
    public TensorDType ComputeType { get; init; } = TensorDType.Float32;

    /// <summary>Seed of the weights and the random tokens.</summary>
    public int Seed { get; init; }
}

/// <summary>
/// The cost of one optimiser step against sequence length: random token windows through
/// <see cref="ILanguageModel.ForwardBackward"/>, the global gradient norm and an AdamW update, as <see cref="Trainer"/>
/// runs them. Chunkwise time and memory should grow linearly with T.
/// </summary>
public static class TrainBenchmark
{
    /// <summary>Measures every length of <paramref name="options"/>.</summary>
    /// <exception cref="ArgumentException">An unknown architecture, a length, batch or step count &lt; 1, a recurrent
    /// form, or an invalid config.</exception>
    /// <param name="device">The device to measure.</param>
    /// <param name="options">Sizes; null for the defaults.</param>
    /// <param name="progress">Called with each result as soon as it is measured.</param>
    /// <param name="cancellationToken">Checked before each measurement, never inside one: once cancelled, the run
    /// stops and returns the results measured so far (check the token to tell a partial list from a whole one).</param>
    public static IReadOnlyList<TrainBenchmarkResult> Run(RetNetDevice device, TrainBenchmarkOptions? options = null,
        Action<TrainBenchmarkResult>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(device);
        options ??= new TrainBenchmarkOptions();
        Architectures.Validate(options.Architectures);
        if (options.SeqLens.Count == 0 || options.SeqLens.Any(t => t < 1) || options.Batch < 1 || options.Steps < 1)
            throw new ArgumentException(
                "Argument 'options' needs lengths, a batch and a step count, each ≥ 1.", nameof(options));
        if (options.Mode.Form == RetentionForm.Recurrent)
            throw new ArgumentException("Argument 'options' has the recurrent form; training runs parallel or chunkwise.",
                nameof(options));
        if (!Enum.IsDefined(options.ComputeType))
            throw new ArgumentException($"Argument 'options' has compute type {options.ComputeType}; expected Float32, " +
                                        "Float16 or BFloat16.", nameof(options));
        var results = new List<TrainBenchmarkResult>();
        foreach (var architecture in options.Architectures)
        {
            if (cancellationToken.IsCancellationRequested)
                break;
            using var model = LanguageModel.Create(device, Architectures.Config(architecture, options.Config),
                options.Seed);
            model.UseComputeType(options.ComputeType);
            using var gradients = model.CreateGradients();
            var keep = options.CheckpointActivations ? ActivationPlan.KeepBlockInputs : ActivationPlan.KeepEverything;
            Measure(device, options, architecture,
                architecture == DecodeBenchmarkOptions.Transformer ? "attention" : options.Mode.ToString(),
                model.VocabSize, model.Parameters, gradients.Tensors, gradients.Zero,
                windows => model.ForwardBackward(windows, gradients, options.Mode, keep: keep),
                model.RefreshComputeWeights, results, progress, cancellationToken);
        }
        return results;
    }

    /// <summary>Times optimiser steps of one model at every length: zero the gradients, the training pass, the global
    /// gradient norm, AdamW, the refresh of mixed precision's 16-bit copies.</summary>
    private static void Measure(RetNetDevice device, TrainBenchmarkOptions options, string architecture, string form,
        int vocabulary, IReadOnlyDictionary<string, Tensor> parameters, IReadOnlyDictionary<string, Tensor> gradients,
        Action zero, Action<int[,]> trainingPass, Action refresh, List<TrainBenchmarkResult> results,
        Action<TrainBenchmarkResult>? progress, CancellationToken cancellationToken)
    {
        var names = parameters.Keys.ToArray();
        var linearFlopsPerToken = 6.0 * LinearWeights(parameters);
        using var optimizer = new AdamW(names.Select(n => new OptimizedParameter(n, parameters[n],
            AdamW.DecaysByDefault(n, parameters[n].Rank))).ToList());
        var random = new Random(options.Seed);
        foreach (var seqLen in options.SeqLens)
        {
            if (cancellationToken.IsCancellationRequested)
                return;
            var windows = new int[options.Batch, seqLen + 1];
            for (var b = 0; b < options.Batch; b++)
            for (var t = 0; t <= seqLen; t++)
                windows[b, t] = random.Next(vocabulary);
            void Step()
            {
                zero();
                trainingPass(windows);
                var norm = GradientClipping.GlobalNorm(names.Select(n => gradients[n]).ToList());
                optimizer.Step(gradients, 1e-4, GradientClipping.ClipScale(norm, 1.0));
                refresh();
                device.Synchronize();
            }
            Step();
            device.Memory.ResetPeak();
            var median = Timing.MedianMs(options.Steps, Step);
            var tokensPerSecond = options.Batch * seqLen / (median / 1000);
            var result = new TrainBenchmarkResult(architecture, form, options.Batch, seqLen, median, tokensPerSecond,
                device.Memory.PeakBytes, linearFlopsPerToken * tokensPerSecond / 1e9, options.ComputeType);
            results.Add(result);
            progress?.Invoke(result);
        }
    }

    /// <summary>
    /// The weights a token is multiplied by: every matrix but the embedding table, which is a gather, unless the
    /// output projection is tied to it (then it is that projection). Norm weights are vectors and do not count.
    /// </summary>
    internal static long LinearWeights(IReadOnlyDictionary<string, Tensor> parameters)
    {
        var tied = !parameters.ContainsKey("output_projection.weight");
        return parameters.Where(p => p.Value.Rank == 2 && (tied || p.Key != "embed_tokens.weight"))
            .Sum(p => (long)p.Value.Length);
    }
}
