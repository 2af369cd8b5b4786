using System.Diagnostics;
using System.Globalization;
using RetNet.Ilgpu.Devices;
using RetNet.Ilgpu.Model;
using RetNet.Ilgpu.Tensors;

namespace RetNet.Ilgpu.Benchmarks;

/// <summary>What <see cref="ModelDecodeBenchmark.Run"/> measures.</summary>
public sealed record ModelDecodeOptions
{
    /// <summary>The model folder (any folder <see cref="LanguageModel.Load"/> loads).</summary>
    public required string Folder { get; init; }

    /// <summary>Read model.safetensors into memory and copy the weights (the path before mapping), instead of mapping
    /// the file and reading the weights in place.</summary>
    public bool CopyWeights { get; init; }

    /// <summary>How the matrices are stored; null keeps the checkpoint's type (what mapping reads in place).</summary>
    public TensorDType? WeightType { get; init; }

    /// <summary>Timed steps (the median is reported).</summary>
    public int Steps { get; init; } = 16;

    /// <summary>Untimed steps before the timed ones, at least (they also fault the mapped pages in).</summary>
    public int WarmupSteps { get; init; } = 3;

    /// <summary>How long the untimed steps run at least, so .NET has optimised the step path before timing.</summary>
    public TimeSpan WarmupTime { get; init; } = TimeSpan.FromSeconds(2);

    /// <summary>Random prompt tokens prefilled before the steps.</summary>
    public int PromptTokens { get; init; } = 8;

    /// <summary>Bytes of the read-bandwidth probe's buffer; null for <see cref="ReadBandwidth.DefaultBytes"/>.</summary>
    public long? ProbeBytes { get; init; }

    /// <summary>Timed passes of the probe (the median is reported).</summary>
    public int ProbePasses { get; init; } = 5;

    /// <summary>Seed of the random tokens.</summary>
    public int Seed { get; init; }
}

/// <summary>What <see cref="ModelDecodeBenchmark.Run"/> measured.</summary>
/// <param name="Architecture">The model's architecture.</param>
/// <param name="WeightType">How its matrices are stored.</param>
/// <param name="Mapped">True when the weights file was memory-mapped (read in place on the CPU).</param>
/// <param name="ReadOnlyWeights">Weights read in place (read-only tensors over the mapped file), of all of them.</param>
/// <param name="Parameters">The weights' element count.</param>
/// <param name="WeightFileBytes">The size of the weight files (model.safetensors, or every shard).</param>
/// <param name="BytesPerToken">The weight bytes one batch-1 step reads: every weight once in its stored type, of the
/// embedding table only one row (unless the output projection is the table).</param>
/// <param name="StateBytes">Bytes of the batch-1 decoding state (read and written each step besides the weights).</param>
/// <param name="MsPerToken">Median wall time of one batch-1 step, upload of the token through the logits' read-back.</param>
/// <param name="ProbeGigabytesPerSecond">The read bandwidth measured in the same run (<see cref="ReadBandwidth"/>).</param>
/// <param name="PeakResidentBytes">The process's peak resident memory after the timed steps (VmHWM), before the probe
/// allocated its buffer; 0 where /proc/self/status is absent.</param>
public sealed record ModelDecodeResult(string Architecture, TensorDType WeightType, bool Mapped, int ReadOnlyWeights,
    long Parameters, long WeightFileBytes, long BytesPerToken, long StateBytes, double MsPerToken,
    double ProbeGigabytesPerSecond, long PeakResidentBytes)
{
    /// <summary>The weight bytes a step reads per second of a step, in GB/s.</summary>
    public double GigabytesPerSecond => BytesPerToken / (MsPerToken * 1e6);

    /// <summary><see cref="GigabytesPerSecond"/> as a fraction of the probe's.</summary>
    public double BandwidthRatio => GigabytesPerSecond / ProbeGigabytesPerSecond;

    /// <summary>Peak resident memory over the weight file's size.</summary>
    public double ResidentRatio => PeakResidentBytes / (double)WeightFileBytes;
}

/// <summary>
/// Decoding one model folder at batch 1, measured against the machine: the median step time, the weight bytes a step
/// must read and the rate that makes, the read bandwidth of the same machine in the same run, and the process's peak
/// resident memory against the weight file (with mapped weights, the file's pages are the weights).
/// </summary>
public static class ModelDecodeBenchmark
{
    /// <summary>Loads the folder, decodes, then probes the bandwidth.</summary>
    /// <exception cref="ArgumentException">A count is out of range.</exception>
    public static ModelDecodeResult Run(RetNetDevice device, ModelDecodeOptions options, Action<string>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(device);
        ArgumentNullException.ThrowIfNull(options);
        if (options.Steps < 1 || options.WarmupSteps < 0 || options.PromptTokens < 1 || options.ProbePasses < 1)
            throw new ArgumentException(
                $"Argument 'options' has {options.Steps} steps, {options.WarmupSteps} warm-up steps, " +
                $"{options.PromptTokens} prompt tokens, {options.ProbePasses} probe passes; expected ≥ 1, ≥ 0, ≥ 1, ≥ 1.",
                nameof(options));
        var weightFileBytes = ModelFolder.WeightFiles(options.Folder).Sum(f => new FileInfo(f).Length);
        var started = Stopwatch.GetTimestamp();
        using var model = LanguageModel.Load(device, options.Folder, weightType: options.WeightType,
            mapWeights: !options.CopyWeights);
        progress?.Invoke(string.Create(CultureInfo.InvariantCulture,
            $"loaded in {Stopwatch.GetElapsedTime(started).TotalSeconds:0.0} s"));
        var random = new Random(options.Seed);
        int Token() => random.Next(model.VocabSize);
        var prompt = Enumerable.Range(0, options.PromptTokens).Select(_ => Token()).ToArray();
        var (_, state) = model.Prefill([prompt]);
        using (state)
        {
            var stateBytes = state.Bytes;
            started = Stopwatch.GetTimestamp();
            for (var i = 0; i < options.WarmupSteps || Stopwatch.GetElapsedTime(started) < options.WarmupTime; i++)
                model.Step([Token()], state);
            GC.Collect();
            var ms = Timing.MedianMs(options.Steps, () => model.Step([Token()], state));
            var peak = PeakResidentBytes();
            progress?.Invoke(string.Create(CultureInfo.InvariantCulture,
                $"decoded: {ms:0.00} ms/token; probing the read bandwidth"));
            var probe = ReadBandwidth.Measure(options.ProbeBytes, passes: options.ProbePasses);
            return new ModelDecodeResult(model.Architecture, model.WeightType, !options.CopyWeights,
                model.Parameters.Values.Count(p => p.IsReadOnly), model.ParameterCount, weightFileBytes,
                BytesPerToken(model), stateBytes, ms, probe, peak);
        }
    }

    /// <summary>The weight bytes a batch-1 step reads: every weight once in its stored type; of an untied embedding
    /// table only the one row the token gathers.</summary>
    internal static long BytesPerToken(LanguageModel model)
    {
        var bytes = model.Parameters.Values.Sum(p => p.Bytes);
        if (model.Spec.TiedOutput)
            return bytes;
        var table = model.Parameters[model.Spec.Names.Embedding];
        return bytes - table.Bytes + table.Bytes / table.Dim(0);
    }

    /// <summary>VmHWM of /proc/self/status in bytes (the peak resident set), or 0 where it cannot be read.</summary>
    public static long PeakResidentBytes()
    {
        try
        {
            foreach (var line in File.ReadLines("/proc/self/status"))
            {
                if (!line.StartsWith("VmHWM:", StringComparison.Ordinal))
                    continue;
                var kb = line["VmHWM:".Length..].Trim().Split(' ')[0];
                return long.Parse(kb, CultureInfo.InvariantCulture) * 1024;
            }
        }
        catch (IOException)
        {
        }
        return 0;
    }
}
