using System.Diagnostics;
using System.Text.Json.Serialization;
using static TorchSharp.torch;

namespace TorchSharpBench;

/// <summary>One row of the table and of the JSON file.</summary>
/// <param name="Work">What was timed: "gemm", "chunkwise forward", "chunkwise forward+backward", "decode".</param>
/// <param name="Shape">The sizes, in the words of the matching <c>retnet bench</c> row.</param>
/// <param name="MedianMs">Median wall time of one call in milliseconds (for decode: one step, ms/token).</param>
/// <param name="Gflops">The operation count of the work (see each benchmark) divided by the median time.</param>
/// <param name="MinMs">The fastest call; printed beside the median to show how much the machine's load spread the
/// times, not written to the JSON file.</param>
internal sealed record Result(string Work, string Shape, double MedianMs, double Gflops,
    [property: JsonIgnore] double MinMs);

/// <summary>The times of the timed calls of one row, in milliseconds.</summary>
internal sealed record Times(double MedianMs, double MinMs);

/// <summary>Median and fastest wall time of a call after warm-up calls.</summary>
internal static class Timing
{
    /// <summary>
    /// Runs <paramref name="call"/> <paramref name="warmup"/> times untimed, then timed until it has run at least
    /// <paramref name="repetitions"/> times and for at least <paramref name="minSeconds"/> in all, so a short call is
    /// timed many times and its median holds steady on a shared machine. Each call runs inside its own dispose scope,
    /// so the tensors it makes are freed at once, not by the garbage collector in the middle of a later call. The call
    /// must end by reading a value back to the host: libtorch runs CPU operators synchronously, and the read-back
    /// makes that explicit.
    /// </summary>
    public static Times Measure(Action call, int warmup, int repetitions, double minSeconds = 0)
    {
        for (var i = 0; i < warmup; i++)
        {
            using var scope = NewDisposeScope();
            call();
        }
        var times = new List<double>();
        var total = 0.0;
        while (times.Count < repetitions || total < minSeconds * 1e3)
        {
            using var scope = NewDisposeScope();
            var watch = Stopwatch.StartNew();
            call();
            times.Add(watch.Elapsed.TotalMilliseconds);
            total += times[^1];
        }
        times.Sort();
        var middle = times.Count / 2;
        var median = times.Count % 2 == 1 ? times[middle] : (times[middle - 1] + times[middle]) / 2;
        return new Times(median, times[0]);
    }
}
