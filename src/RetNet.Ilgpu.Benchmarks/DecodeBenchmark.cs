using System.Diagnostics;
using RetNet.Ilgpu.Devices;
using RetNet.Ilgpu.Model;
using RetNet.Ilgpu.Tensors;

namespace RetNet.Ilgpu.Benchmarks;

/// <summary>One measured case of <see cref="DecodeBenchmark"/>.</summary>
/// <param name="Model">"retnet" or "transformer".</param>
/// <param name="Batch">B, the sequences decoded together.</param>
/// <param name="Position">The position of the first timed token (tokens already in the state).</param>
/// <param name="MsPerToken">Median wall time of one decoding step in milliseconds (one step produces B tokens),
/// upload of the tokens through the read-back of the logits.</param>
/// <param name="StateBytes">Device bytes of the decoding state at the first timed step, measured with the device's
/// memory accounting (<see cref="RetNetDevice.Memory"/>) around its creation: RetNet's retention states (the same at
/// every position), or the Transformer's KV cache, allocated for the position and the timed steps (2 · layers · B ·
/// positions · d · 4, growing).</param>
/// <param name="WeightBytes">Bytes of the model's weights, in their storage type.</param>
/// <param name="WeightType">How the weight matrices were stored (arithmetic is fp32 either way).</param>
/// <param name="DeviceBytes">Every byte the library held on the device during the timed steps (weights, state or KV
/// cache, the step's workspace): the peak over those steps.</param>
public sealed record DecodeBenchmarkResult(string Model, int Batch, int Position, double MsPerToken, long StateBytes,
    long WeightBytes, TensorDType WeightType, long DeviceBytes)
{
    /// <summary>
    /// The least a step must read, every weight and the whole state or KV cache, per second of a step, in GB/s: a
    /// decode step is bound by memory, so this says how far it is from the machine's bandwidth.
    /// </summary>
    public double GigabytesPerSecond => (WeightBytes + StateBytes) / (MsPerToken * 1e6);
}

/// <summary>What <see cref="DecodeBenchmark.Run"/> measures; the defaults are issue 4's <c>retnet bench decode</c>.</summary>
public sealed record DecodeBenchmarkOptions
{
    /// <summary>The model's config; the "small" preset by default (small enough for the CPU accelerator). The
    /// Transformer is <see cref="TransformerConfig.Matching"/> of it.</summary>
    public RetNetConfig Config { get; init; } = RetNetConfig.Preset("small");

    /// <summary>The models to measure, in order: "retnet", "transformer" or both.</summary>
    public IReadOnlyList<string> Architectures { get; init; } = [Retnet];

    /// <summary>The architecture name of RetNet.</summary>
    public const string Retnet = "retnet";

    /// <summary>The architecture name of the baseline Transformer.</summary>
    public const string Transformer = "transformer";

    /// <summary>The positions at which steps are timed, increasing.</summary>
    public IReadOnlyList<int> Positions { get; init; } = [64, 256, 1024, 4096];

    /// <summary>The storage types of the weight matrices to measure, each a model of its own.</summary>
    public IReadOnlyList<TensorDType> WeightTypes { get; init; } = [TensorDType.Float32];

    /// <summary>The batch sizes, each measured over every position.</summary>
    public IReadOnlyList<int> Batches { get; init; } = [1, 4];

    /// <summary>Timed steps per position (the median is reported).</summary>
    public int Steps { get; init; } = 16;

    /// <summary>Untimed steps just before each position's timed steps (the first load the kernels); the prefill
    /// stops this many tokens short, so the timed steps start exactly at the position.</summary>
    public int WarmupSteps { get; init; } = 2;

    /// <summary>Chunk size of the prefill that reaches each position.</summary>
    public int ChunkSize { get; init; } = 64;

    /// <summary>Seed of the weights and the random tokens.</summary>
    public int Seed { get; init; }
}

/// <summary>
/// Per-token decoding cost against position: for each position, prefills one sequence of random tokens up to it
/// (chunkwise for retention), makes room in the state for the timed steps, copies it into a batch of B identical
/// sequences (<see cref="DecodingState.Reorder"/>; a step's cost does not depend on the state's values), then times
/// single steps there. A RetNet step's work is O(1) in the position, so its medians should be flat and the state's
/// bytes constant; a Transformer step attends over every cached position, so its time and cache grow.
/// </summary>
public static class DecodeBenchmark
{
    /// <summary>Untimed steps per batch size before any measurement, at least (see <see cref="Measure"/>).</summary>
    private const int ProcessWarmupSteps = 40;

    /// <summary>How long the untimed steps of each batch size run at least, and the most of them.</summary>
    private static readonly TimeSpan ProcessWarmupTime = TimeSpan.FromSeconds(1);

    private const int ProcessWarmupMaxSteps = 1024;

    /// <summary>Measures every (batch, position) of <paramref name="options"/>.</summary>
    /// <param name="device">The device to measure.</param>
    /// <param name="options">Sizes; null for the defaults.</param>
    /// <param name="progress">Called with each result as soon as it is measured.</param>
    /// <param name="cancellationToken">Checked before each measurement, never inside one: once cancelled, the run
    /// stops and returns the results measured so far (check the token to tell a partial list from a whole one).</param>
    /// <exception cref="ArgumentException">Positions are not increasing and ≥ 1, a batch or the step count is &lt; 1,
    /// or the config is invalid.</exception>
    public static IReadOnlyList<DecodeBenchmarkResult> Run(RetNetDevice device, DecodeBenchmarkOptions? options = null,
        Action<DecodeBenchmarkResult>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(device);
        options ??= new DecodeBenchmarkOptions();
        Validate(options);
        var results = new List<DecodeBenchmarkResult>();
        foreach (var architecture in options.Architectures)
        {
            foreach (var weightType in options.WeightTypes)
            {
                if (cancellationToken.IsCancellationRequested)
                    break;
                using var model = LanguageModel.Create(device, Architectures.Config(architecture, options.Config),
                    options.Seed, weightType);
                Measure(device, model, options, results, progress, cancellationToken);
            }
        }
        return results.OrderBy(r => options.Architectures.ToList().IndexOf(r.Model))
            .ThenBy(r => options.WeightTypes.ToList().IndexOf(r.WeightType)).ThenBy(r => r.Batch)
            .ThenBy(r => r.Position).ToList();
    }

    private static void Measure(RetNetDevice device, ILanguageModel model, DecodeBenchmarkOptions options,
        List<DecodeBenchmarkResult> results, Action<DecodeBenchmarkResult>? progress,
        CancellationToken cancellationToken)
    {
        var random = new Random(options.Seed);
        var vocab = model.VocabSize;
        int[] Tokens(int count) => Enumerable.Range(0, count).Select(_ => random.Next(vocab)).ToArray();
        // Warm up the whole step path once per batch size before the first point: .NET recompiles hot methods
        // (the CPU accelerator's kernels are C#) after some dozens of calls, which would otherwise make the first,
        // lowest position look slowest.
        // .NET promotes a method to optimised code only after it has run some dozens of times once no new method has
        // been compiled for 100 ms, in the background: a fixed few dozen steps can end before that, and the first
        // position would then time unoptimised code. So warm up for a second (measured: without it, the attention
        // step at position 64 timed 3× slower than at 1024 when the RetNet ran first in the same process).
        foreach (var batch in options.Batches)
        {
            using var warm = model.CreateState(batch);
            var started = Stopwatch.GetTimestamp();
            for (var i = 0; i < ProcessWarmupMaxSteps &&
                 (i < ProcessWarmupSteps || Stopwatch.GetElapsedTime(started) < ProcessWarmupTime); i++)
                model.Step(Tokens(batch), warm);
        }
        foreach (var position in options.Positions)
        {
            var (_, prefix) = model.Prefill([Tokens(position - options.WarmupSteps)], options.ChunkSize);
            // The device bytes are decoding's: weights, state or cache and the step's workspace, not prefill's.
            model.ReleasePromptWorkspace();
            using (prefix)
            {
                prefix.Reserve(position + options.Steps);
                foreach (var batch in options.Batches)
                {
                    if (cancellationToken.IsCancellationRequested)
                        return;
                    var made = Measured(device, () => prefix.Select(new int[batch]));
                    using var state = made.Value;
                    var (median, deviceBytes) = TimeSteps(device, options, () => model.Step(Tokens(batch), state));
                    var result = new DecodeBenchmarkResult(model.Architecture, batch, position, median, made.Bytes,
                        model.WeightBytes, model.WeightType, deviceBytes);
                    results.Add(result);
                    progress?.Invoke(result);
                }
            }
        }
    }

    /// <summary>
    /// What <paramref name="create"/> returns, and the device bytes it left allocated: the device's memory accounting
    /// after it less before it (temporaries it freed again do not count).
    /// </summary>
    internal static (T Value, long Bytes) Measured<T>(RetNetDevice device, Func<T> create)
    {
        var before = device.Memory.CurrentBytes;
        var value = create();
        return (value, device.Memory.CurrentBytes - before);
    }

    /// <summary>The warm-up steps, then the median of the timed steps in milliseconds and the peak device bytes
    /// during them.</summary>
    private static (double Median, long DeviceBytes) TimeSteps(RetNetDevice device, DecodeBenchmarkOptions options,
        Action step)
    {
        // The prefill's large temporaries are garbage now; collect them before timing, not during.
        GC.Collect();
        GC.WaitForPendingFinalizers();
        for (var i = 0; i < options.WarmupSteps; i++)
            step();
        device.Memory.ResetPeak();
        var median = Timing.MedianMs(options.Steps, step);
        return (median, device.Memory.PeakBytes);
    }

    private static void Validate(DecodeBenchmarkOptions options)
    {
        ArgumentNullException.ThrowIfNull(options.Config, nameof(options.Config));
        options.Config.Validate();
        if (options.Positions.Count == 0 || options.Positions[0] <= options.WarmupSteps ||
            options.Positions.Zip(options.Positions.Skip(1)).Any(p => p.Second <= p.First + options.WarmupSteps))
            throw new ArgumentException(
                $"Argument 'options' has positions [{string.Join(", ", options.Positions)}]; expected each " +
                $"more than {options.WarmupSteps} (the warm-up steps) beyond the previous, and the first too.", nameof(options));
        if (options.Batches.Count == 0 || options.Batches.Any(b => b < 1))
            throw new ArgumentException("Argument 'options' needs batch sizes ≥ 1.", nameof(options));
        Architectures.Validate(options.Architectures);
        if (options.WeightTypes.Count == 0 || options.WeightTypes.Any(t => !Enum.IsDefined(t)) ||
            options.WeightTypes.Distinct().Count() != options.WeightTypes.Count)
            throw new ArgumentException(
                $"Argument 'options' has weight types [{string.Join(", ", options.WeightTypes)}]; expected Float32, " +
                "Float16 and/or BFloat16, each once.", nameof(options));
        if (options.Steps < 1 || options.WarmupSteps < 0 || options.ChunkSize < 1)
            throw new ArgumentException(
                $"Argument 'options' has {options.Steps} steps, {options.WarmupSteps} warm-up steps, chunk size " +
                $"{options.ChunkSize}; expected ≥ 1, ≥ 0, ≥ 1.", nameof(options));
    }
}
