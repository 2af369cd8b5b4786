using System.Diagnostics;

namespace RetNet.Ilgpu.Benchmarks;

/// <summary>How every benchmark times: wall-clock runs, the median reported.</summary>
internal static class Timing
{
    /// <summary>The median wall time of <paramref name="count"/> runs of <paramref name="run"/> in milliseconds, each
    /// timed on its own after <paramref name="before"/> (untimed) when given.</summary>
    public static double MedianMs(int count, Action run, Action? before = null)
    {
        var times = new double[count];
        for (var i = 0; i < count; i++)
        {
            before?.Invoke();
            var start = Stopwatch.GetTimestamp();
            run();
            times[i] = Stopwatch.GetElapsedTime(start).TotalMilliseconds;
        }
        return Median(times);
    }

    /// <summary>The middle value, or the mean of the two middle values of an even count.</summary>
    public static double Median(IEnumerable<double> values)
    {
        var sorted = values.Order().ToArray();
        var middle = sorted.Length / 2;
        return sorted.Length % 2 == 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
    }
}
