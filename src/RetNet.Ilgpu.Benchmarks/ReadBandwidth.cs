using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace RetNet.Ilgpu.Benchmarks;

/// <summary>
/// This machine's memory read bandwidth as host code sees it: every core sums its own contiguous slice of one buffer
/// far larger than the caches with the widest vectors .NET accelerates (four independent accumulators, so the loads,
/// not the additions, set the pace); the median of a few passes. A decoding step that streams its weights once can at
/// best approach this figure, so <c>bench decode --model</c> prints its own rate as a fraction of it.
/// </summary>
public static unsafe class ReadBandwidth
{
    /// <summary>The probe's buffer: 1 GiB, or a quarter of the memory the runtime reports available when that is less.</summary>
    public static long DefaultBytes =>
        Math.Min(1L << 30, Math.Max(64L << 20, GC.GetGCMemoryInfo().TotalAvailableMemoryBytes / 4)) & ~4095L;

    /// <summary>Reads a buffer of <paramref name="bytes"/> with <paramref name="threads"/> threads (null: every core)
    /// <paramref name="passes"/> times after one untimed pass that faults the pages in; the median in GB/s
    /// (10⁹ bytes per second).</summary>
    /// <exception cref="ArgumentOutOfRangeException">A size or count is below 1.</exception>
    public static double Measure(long? bytes = null, int? threads = null, int passes = 5)
    {
        var size = bytes ?? DefaultBytes;
        var workers = threads ?? Environment.ProcessorCount;
        ArgumentOutOfRangeException.ThrowIfLessThan(size, 4096);
        ArgumentOutOfRangeException.ThrowIfLessThan(workers, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(passes, 1);
        var buffer = (byte*)NativeMemory.AlignedAlloc((nuint)size, 4096);
        try
        {
            // Written once (untouched anonymous pages all map the one shared zero page, which a read finds in the
            // cache), with a normal float's bytes (denormal additions may be slow).
            new Span<byte>(buffer, (int)Math.Min(size, int.MaxValue)).Fill(0x3F);
            for (long filled = int.MaxValue; filled < size; filled += int.MaxValue)
                new Span<byte>(buffer + filled, (int)Math.Min(size - filled, int.MaxValue)).Fill(0x3F);
            var slice = size / workers & ~63L;
            var times = new double[passes];
            var sink = 0f;
            for (var pass = -1; pass < passes; pass++)
            {
                var sums = new float[workers];
                var start = Stopwatch.GetTimestamp();
                Parallel.For(0, workers, new ParallelOptions { MaxDegreeOfParallelism = workers },
                    w => sums[w] = Sum(buffer + w * slice, slice));
                var seconds = Stopwatch.GetElapsedTime(start).TotalSeconds;
                sink += sums.Sum();
                if (pass >= 0)
                    times[pass] = slice * workers / seconds / 1e9;
            }
            GC.KeepAlive(sink);
            return Timing.Median(times);
        }
        finally
        {
            NativeMemory.AlignedFree(buffer);
        }
    }

    private static float Sum(byte* start, long bytes)
    {
        var p = (float*)start;
        var count = bytes / sizeof(float);
        long i = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            Vector512<float> a = default, b = default, c = default, d = default;
            for (; i + 64 <= count; i += 64)
            {
                a += Vector512.Load(p + i);
                b += Vector512.Load(p + i + 16);
                c += Vector512.Load(p + i + 32);
                d += Vector512.Load(p + i + 48);
            }
            return Vector512.Sum(a + b + c + d);
        }
        Vector256<float> e = default, f = default, g = default, h = default;
        for (; i + 32 <= count; i += 32)
        {
            e += Vector256.Load(p + i);
            f += Vector256.Load(p + i + 8);
            g += Vector256.Load(p + i + 16);
            h += Vector256.Load(p + i + 24);
        }
        return Vector256.Sum(e + f + g + h);
    }
}
