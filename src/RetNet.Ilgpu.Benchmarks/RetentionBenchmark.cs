using System.Diagnostics;
using RetNet.Ilgpu.Devices;
using RetNet.Ilgpu.Retention;
using RetNet.Ilgpu.Tensors;

namespace RetNet.Ilgpu.Benchmarks;

/// <summary>One measured case of <see cref="RetentionBenchmark"/>.</summary>
/// <param name="Form">"parallel", "chunkwise" or "recurrent".</param>
/// <param name="Direction">"forward" or "forward+backward".</param>
/// <param name="Batch">B.</param>
/// <param name="Heads">H.</param>
/// <param name="Dk">Key size per head.</param>
/// <param name="Dv">Value size per head.</param>
/// <param name="SeqLen">T.</param>
/// <param name="ChunkSize">C (used by the chunkwise form only; recorded for every form).</param>
/// <param name="MedianMs">Median wall time of one call in milliseconds, launches through device synchronisation.</param>
/// <param name="PeakBytes">Peak device bytes one call allocates beyond its inputs: its outputs and every temporary.</param>
public sealed record RetentionBenchmarkResult(string Form, string Direction, int Batch, int Heads, int Dk, int Dv,
    int SeqLen, int ChunkSize, double MedianMs, long PeakBytes);

/// <summary>What <see cref="RetentionBenchmark.Run"/> measures. The defaults are issue 3's benchmark.</summary>
public sealed record RetentionBenchmarkOptions
{
    /// <summary>B.</summary>
    public int Batch { get; init; } = 1;

    /// <summary>H (decay: torchscale's schedule).</summary>
    public int Heads { get; init; } = 4;

    /// <summary>Dk.</summary>
    public int KeyDim { get; init; } = 64;

    /// <summary>Dv.</summary>
    public int ValueDim { get; init; } = 64;

    /// <summary>C of the chunkwise form.</summary>
    public int ChunkSize { get; init; } = 64;

    /// <summary>The sequence lengths, measured in this order.</summary>
    public IReadOnlyList<int> SeqLens { get; init; } = [256, 512, 1024, 2048, 4096];

    /// <summary>Untimed runs of each case before its first measurement (at the first sequence length only: they load
    /// and compile the kernels, which later lengths reuse).</summary>
    public int WarmupRuns { get; init; } = 1;

    /// <summary>The most timed runs per case.</summary>
    public int Repetitions { get; init; } = 5;

    /// <summary>A case stops repeating once its timed runs add up to this many seconds (it always runs once), so the
    /// quadratic parallel form at long T on the CPU accelerator finishes in minutes.</summary>
    public double SecondsPerCase { get; init; } = 10;
}

/// <summary>
/// Times the three retention forms at several sequence lengths: median milliseconds and peak device bytes per call.
/// Cases, in this order at each T: parallel forward, chunkwise forward, recurrent forward (one call over all T tokens
/// through the recurrent scan, the state in device memory — the decoding step is the same kernel at T = 1), parallel
/// forward+backward, chunkwise forward+backward (dq, dk, dv from dO). Inputs are uniform in [−1, 1), dO too, no initial
/// state. Times include the per-call upload of the decay table and the allocation of temporaries.
/// </summary>
public static class RetentionBenchmark
{
    /// <summary>The form names, as in <see cref="RetentionBenchmarkResult.Form"/>.</summary>
    public static IReadOnlyList<string> Forms { get; } = ["parallel", "chunkwise", "recurrent"];

    /// <summary>The direction names, as in <see cref="RetentionBenchmarkResult.Direction"/>.</summary>
    public static IReadOnlyList<string> Directions { get; } = ["forward", "forward+backward"];

    /// <summary>Measures every case at every sequence length of <paramref name="options"/>.</summary>
    /// <param name="device">The device to measure.</param>
    /// <param name="options">Sizes and repetitions; null for the defaults.</param>
    /// <param name="progress">Called with each result as soon as it is measured (long runs on the CPU accelerator).</param>
    /// <param name="cancellationToken">Checked before each measurement, never inside one: once cancelled, the run
    /// stops and returns the results measured so far (check the token to tell a partial list from a whole one).</param>
    /// <exception cref="ArgumentException">A size is less than 1 or no sequence length is given.</exception>
    public static IReadOnlyList<RetentionBenchmarkResult> Run(RetNetDevice device, RetentionBenchmarkOptions? options = null,
        Action<RetentionBenchmarkResult>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(device);
        options ??= new RetentionBenchmarkOptions();
        Validate(options);
        var decay = DecaySchedule.Torchscale(options.Heads);
        var results = new List<RetentionBenchmarkResult>();
        var warm = new HashSet<string>();
        foreach (var seqLen in options.SeqLens)
        {
            if (cancellationToken.IsCancellationRequested)
                return results;
            var shape = new RetentionShape(options.Batch, seqLen, options.Heads, options.KeyDim, options.ValueDim);
            using var q = Random(device, shape.QueryShape, 1);
            using var k = Random(device, shape.QueryShape, 2);
            using var v = Random(device, shape.ValueShape, 3);
            using var dO = Random(device, shape.ValueShape, 4);
            foreach (var benchmarkCase in Cases(shape, q, k, v, dO, decay, options.ChunkSize))
            {
                if (cancellationToken.IsCancellationRequested)
                    return results;
                var key = benchmarkCase.Form + " " + benchmarkCase.Direction;
                if (warm.Add(key))
                {
                    for (var i = 0; i < options.WarmupRuns; i++)
                    {
                        using var scratch = new Buffers(benchmarkCase.Allocate(device));
                        benchmarkCase.Run(scratch.Tensors);
                        device.Synchronize();
                    }
                }
                var (median, peak) = Measure(device, benchmarkCase, options);
                var result = new RetentionBenchmarkResult(benchmarkCase.Form, benchmarkCase.Direction, shape.Batch,
                    shape.Heads, shape.KeyDim, shape.ValueDim, seqLen, options.ChunkSize, median, peak);
                results.Add(result);
                progress?.Invoke(result);
            }
        }
        return results;
    }

    /// <summary>
    /// The floating-point operations of one call of the case <paramref name="result"/> describes (a multiply-add
    /// counts 2), counting only the work the algorithm needs (pairs j ≤ t, whole chunks, state products), not padding
    /// inside tiles: parallel 2·P·(Dk + Dv) per product with P = B·H·T(T+1)/2 pairs (one product forward, four
    /// forward+backward); chunkwise the same with in-chunk pairs plus 2·B·H·T·Dk·Dv per state pass (two forward, seven
    /// forward+backward); recurrent 4·B·H·T·Dk·Dv.
    /// </summary>
    /// <exception cref="ArgumentException">The form or direction is unknown.</exception>
    public static double FlopCount(RetentionBenchmarkResult result)
    {
        ArgumentNullException.ThrowIfNull(result);
        double heads = (double)result.Batch * result.Heads;
        double width = result.Dk + result.Dv;
        var statePass = 2 * heads * result.SeqLen * result.Dk * result.Dv;
        var products = result.Direction switch
        {
            "forward" => 1,
            "forward+backward" => 4,
            _ => throw new ArgumentException($"Unknown direction '{result.Direction}'.", nameof(result)),
        };
        switch (result.Form)
        {
            case "parallel":
                return products * 2 * Pairs(result.SeqLen, result.SeqLen) * heads * width;
            case "chunkwise":
                var statePasses = products == 1 ? 2 : 7;
                return products * 2 * Pairs(result.SeqLen, Math.Max(1, result.ChunkSize)) * heads * width +
                       statePasses * statePass;
            case "recurrent":
                return 2 * statePass;
            default:
                throw new ArgumentException($"Unknown form '{result.Form}'.", nameof(result));
        }
    }

    /// <summary>Achieved GFLOP/s of a result: <see cref="FlopCount"/> / median time.</summary>
    public static double GflopsPerSecond(RetentionBenchmarkResult result) =>
        FlopCount(result) / (result.MedianMs * 1e6);

    /// <summary>
    /// The bytes a call must move at the least: forward reads q, k, v and writes o; forward+backward also reads q, k, v
    /// and dO again and writes dq, dk, dv. Divided by the median time it gives the achieved GB/s, the figure to hold
    /// against the memory bandwidth for the linear-cost forms.
    /// </summary>
    /// <exception cref="ArgumentException">The direction is unknown.</exception>
    public static double CompulsoryBytes(RetentionBenchmarkResult result)
    {
        ArgumentNullException.ThrowIfNull(result);
        double tokens = (double)result.Batch * result.SeqLen * result.Heads;
        var forward = tokens * (2 * result.Dk + 2 * result.Dv) * sizeof(float);
        return result.Direction switch
        {
            "forward" => forward,
            "forward+backward" => forward + tokens * (4 * result.Dk + 4 * result.Dv) * sizeof(float),
            _ => throw new ArgumentException($"Unknown direction '{result.Direction}'.", nameof(result)),
        };
    }

    /// <summary>Achieved GB/s of a result: <see cref="CompulsoryBytes"/> / median time.</summary>
    public static double GigabytesPerSecond(RetentionBenchmarkResult result) =>
        CompulsoryBytes(result) / (result.MedianMs * 1e6);

    /// <summary>Pairs (t, j), j ≤ t, within windows of <paramref name="window"/> tokens covering T.</summary>
    private static double Pairs(int seqLen, int window)
    {
        double pairs = 0;
        for (var start = 0; start < seqLen; start += window)
        {
            double n = Math.Min(window, seqLen - start);
            pairs += n * (n + 1) / 2;
        }
        return pairs;
    }

    private static (double MedianMs, long PeakBytes) Measure(RetNetDevice device, BenchmarkCase benchmarkCase,
        RetentionBenchmarkOptions options)
    {
        device.Synchronize();
        var before = device.Memory.CurrentBytes;
        device.Memory.ResetPeak();
        using var buffers = new Buffers(benchmarkCase.Allocate(device));
        var times = new List<double>();
        var total = 0.0;
        long peak = 0;
        while (times.Count < options.Repetitions && (times.Count == 0 || total < options.SecondsPerCase))
        {
            var watch = Stopwatch.StartNew();
            benchmarkCase.Run(buffers.Tensors);
            device.Synchronize();
            watch.Stop();
            if (times.Count == 0)
                peak = device.Memory.PeakBytes - before;
            times.Add(watch.Elapsed.TotalMilliseconds);
            total += watch.Elapsed.TotalSeconds;
        }
        return (Timing.Median(times), peak);
    }

    private static IEnumerable<BenchmarkCase> Cases(RetentionShape shape, Tensor q, Tensor k, Tensor v, Tensor dO,
        DecaySchedule decay, int chunkSize)
    {
        Tensor[] Output(RetNetDevice d) => [Tensor.Uninitialized(d, shape.ValueShape)];
        Tensor[] Gradients(RetNetDevice d) =>
        [
            Tensor.Uninitialized(d, shape.ValueShape), Tensor.Uninitialized(d, shape.QueryShape),
            Tensor.Uninitialized(d, shape.QueryShape), Tensor.Uninitialized(d, shape.ValueShape),
        ];

        yield return new("parallel", "forward", Output,
            t => ParallelRetention.Forward(q, k, v, decay, t[0]));
        yield return new("chunkwise", "forward", Output,
            t => ChunkwiseRetention.Forward(q, k, v, decay, chunkSize, t[0]));
        yield return new("recurrent", "forward",
            d => [Tensor.Uninitialized(d, shape.ValueShape), Tensor.Zeros(d, shape.StateShape)],
            t => RecurrentRetention.Forward(q, k, v, decay, t[0], t[1]));
        yield return new("parallel", "forward+backward", Gradients, t =>
        {
            ParallelRetention.Forward(q, k, v, decay, t[0]);
            ParallelRetention.Backward(q, k, v, decay, null, dO, null, t[1], t[2], t[3]);
        });
        yield return new("chunkwise", "forward+backward", Gradients, t =>
        {
            ChunkwiseRetention.Forward(q, k, v, decay, chunkSize, t[0]);
            ChunkwiseRetention.Backward(q, k, v, decay, chunkSize, null, dO, null, t[1], t[2], t[3]);
        });
    }

    private static Tensor Random(RetNetDevice device, int[] shape, int seed)
    {
        var random = new Random(seed);
        var data = new float[ShapeCheck.ElementCount(shape)];
        for (var i = 0; i < data.Length; i++)
            data[i] = (float)(random.NextDouble() * 2 - 1);
        return Tensor.FromHost(device, data, shape);
    }

    private static void Validate(RetentionBenchmarkOptions options)
    {
        foreach (var (value, name) in new[]
                 {
                     (options.Batch, nameof(options.Batch)), (options.Heads, nameof(options.Heads)),
                     (options.KeyDim, nameof(options.KeyDim)), (options.ValueDim, nameof(options.ValueDim)),
                     (options.ChunkSize, nameof(options.ChunkSize)), (options.Repetitions, nameof(options.Repetitions)),
                 })
        {
            if (value < 1)
                throw new ArgumentException($"Option {name} is {value}; expected ≥ 1.", nameof(options));
        }
        if (options.SeqLens.Count == 0 || options.SeqLens.Any(t => t < 1))
            throw new ArgumentException(
                $"Option SeqLens is [{string.Join(", ", options.SeqLens)}]; expected at least one length, each ≥ 1.",
                nameof(options));
        if (options.WarmupRuns < 0)
            throw new ArgumentException($"Option WarmupRuns is {options.WarmupRuns}; expected ≥ 0.", nameof(options));
    }

    private sealed record BenchmarkCase(string Form, string Direction, Func<RetNetDevice, Tensor[]> Allocate,
        Action<Tensor[]> Run);

    private sealed class Buffers(Tensor[] tensors) : IDisposable
    {
        public Tensor[] Tensors { get; } = tensors;

        public void Dispose()
        {
            foreach (var tensor in Tensors)
                tensor.Dispose();
        }
    }
}
