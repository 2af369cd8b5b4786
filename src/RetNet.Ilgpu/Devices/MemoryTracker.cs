namespace RetNet.Ilgpu.Devices;

/// <summary>
/// Counts the device bytes allocated through the library: what is live now and the peak since the last reset, so a
/// benchmark can report the peak memory of one operation.
/// </summary>
public sealed class MemoryTracker
{
    private long current;
    private long peak;

    /// <summary>Bytes allocated through the library and not yet freed.</summary>
    public long CurrentBytes => Interlocked.Read(ref current);

    /// <summary>The largest <see cref="CurrentBytes"/> seen since creation or the last <see cref="ResetPeak"/>.</summary>
    public long PeakBytes => Interlocked.Read(ref peak);

    /// <summary>Starts a new peak measurement from what is allocated now.</summary>
    public void ResetPeak() => Interlocked.Exchange(ref peak, CurrentBytes);

    internal void OnAllocated(long bytes)
    {
        var now = Interlocked.Add(ref current, bytes);
        long seen;
        while (now > (seen = Interlocked.Read(ref peak)))
        {
            if (Interlocked.CompareExchange(ref peak, now, seen) == seen)
                break;
        }
    }

    internal void OnFreed(long bytes) => Interlocked.Add(ref current, -bytes);
}
