using System.Globalization;
using RetNet.Ilgpu.Devices;

namespace RetNet.Ilgpu.Verification;

/// <summary>One output of a check: the device's values, the reference and the floor of its tolerance.</summary>
/// <param name="Name">Names the output in a failure note (y, dx, final state…).</param>
/// <param name="Actual">The device's values.</param>
/// <param name="Expected">The double-precision reference.</param>
/// <param name="Floor">The least scale the bound is relative to, derived from the inputs; 0 for none.</param>
internal readonly record struct CheckedOutput(string Name, IReadOnlyList<float> Actual, IReadOnlyList<double> Expected,
    double Floor = 0);

/// <summary>
/// The state of one verification run: the device, the rows so far, and the kernels that skipped configurations
/// would have launched (so the coverage rule does not count them as forgotten).
/// </summary>
internal sealed class VerificationContext(RetNetDevice device, VerifyOptions options,
    Action<VerificationResult>? progress)
{
    private readonly List<VerificationResult> results = [];

    /// <summary>The device under test.</summary>
    public RetNetDevice Device { get; } = device;

    /// <summary>The device as the rows name it.</summary>
    public string DeviceName { get; } = device.IsCpuSimulator
        ? $"{device} ({device.CpuExecution.ToString().ToLowerInvariant()})"
        : device.ToString();

    /// <summary>Names of registered kernels whose every configuration this device cannot launch.</summary>
    public HashSet<string> SkippedKernels { get; } = new(StringComparer.Ordinal);

    /// <summary>The rows so far, in order.</summary>
    public IReadOnlyList<VerificationResult> Results => results;

    /// <summary>
    /// Runs <paramref name="body"/> and records one row: the largest relative error over its outputs, passed when
    /// every output is within <paramref name="tolerance"/>. An exception is a failed row with its message.
    /// </summary>
    public void Check(string kernel, string shape, double tolerance, Func<IReadOnlyList<CheckedOutput>> body)
    {
        VerificationResult row;
        try
        {
            var outputs = body();
            Device.Synchronize();
            var passed = true;
            double worst = 0;
            string? failing = null;
            foreach (var output in outputs)
            {
                var actual = ShouldPerturb(kernel) && failing is null && passed
                    ? Perturb(output, tolerance)
                    : output.Actual;
                var verdict = ToleranceRule.Compare(actual, output.Expected, tolerance, output.Floor);
                worst = Math.Max(worst, verdict.RelativeError);
                if (!verdict.Passed && passed)
                    failing = output.Name;
                passed &= verdict.Passed;
            }
            row = new VerificationResult(kernel, DeviceName, shape, worst, tolerance, passed,
                Note: failing is null ? null : $"{failing} out of tolerance");
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            row = new VerificationResult(kernel, DeviceName, shape, double.PositiveInfinity, tolerance, false,
                Note: $"{e.GetType().Name}: {e.Message.Split('\n')[0]}");
        }
        Add(row);
    }

    /// <summary>
    /// Records a configuration the device cannot launch, with the reason; <paramref name="kernels"/> names the
    /// registered kernels it would have launched.
    /// </summary>
    public void Skip(string kernel, string shape, string reason, params string[] kernels)
    {
        foreach (var name in kernels)
            SkippedKernels.Add(name);
        Add(new VerificationResult(kernel, DeviceName, shape, 0, 0, true, Skipped: true, Note: $"skipped: {reason}"));
    }

    /// <summary>Records a row as it is (the coverage rows).</summary>
    public void Add(VerificationResult row)
    {
        results.Add(row);
        progress?.Invoke(row);
    }

    /// <summary>A compact integer list for shape strings.</summary>
    public static string List(IEnumerable<int> values) =>
        string.Join(",", values.Select(v => v.ToString(CultureInfo.InvariantCulture)));

    private bool ShouldPerturb(string kernel) =>
        options.PerturbPrefix is { } prefix && kernel.StartsWith(prefix, StringComparison.Ordinal);

    /// <summary>The output with its largest reference element moved by a hundred times the bound.</summary>
    private static float[] Perturb(CheckedOutput output, double tolerance)
    {
        var actual = output.Actual.ToArray();
        if (actual.Length == 0)
            return actual;
        var at = 0;
        for (var i = 1; i < output.Expected.Count; i++)
            if (Math.Abs(output.Expected[i]) > Math.Abs(output.Expected[at]))
                at = i;
        var scale = Math.Max(Math.Max(Math.Abs(output.Expected[at]), output.Floor), 1e-30);
        actual[at] += (float)(100 * Math.Max(tolerance, 1e-6) * scale);
        return actual;
    }
}
