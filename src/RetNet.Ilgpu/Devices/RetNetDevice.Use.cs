using System.Diagnostics;
using ILGPU.Runtime;

namespace RetNet.Ilgpu.Devices;

/// <summary>
/// Misuse that would otherwise give silent wrong numbers or silent leaks: a device driven from two threads at once,
/// and device buffers never freed.
/// </summary>
public sealed partial class RetNetDevice
{
    /// <summary>The environment variable that turns on <see cref="TrackAllocations"/> for every device ("1").</summary>
    public const string TrackAllocationsVariable = "RETNET_TRACK_ALLOCATIONS";

    private readonly Dictionary<MemoryBuffer, Allocation> live = new(ReferenceEqualityComparer.Instance);
    private int holder;
    private int depth;

    /// <summary>
    /// Record where every device buffer was allocated (a stack trace per allocation: tens of microseconds each), so
    /// that the report of buffers never freed says where each was made. Off by default (the report then gives each
    /// buffer's size and what it held); <c>RETNET_TRACK_ALLOCATIONS=1</c> turns it on for every device.
    /// </summary>
    public bool TrackAllocations { get; set; } =
        Environment.GetEnvironmentVariable(TrackAllocationsVariable) == "1";

    /// <summary>
    /// The device buffers allocated through the library and not freed yet, one line each (what it holds, its bytes,
    /// and with <see cref="TrackAllocations"/> where it was allocated). Disposing the device reports them on the
    /// standard error stream: a tensor, model or state that is never disposed keeps device memory until then.
    /// </summary>
    public IReadOnlyList<string> UndisposedBuffers
    {
        get
        {
            lock (live)
                return live.Values.Select(a => a.Describe()).ToList();
        }
    }

    /// <summary>
    /// Holds the device for the calling thread until the returned lease is disposed (leases nest on one thread). Every
    /// model and decoding call takes one, and every operator (through the views of its tensors), kernel load and
    /// allocation checks it, so that using one device
    /// (or one model) from two threads at once throws instead of interleaving launches into wrong numbers. Costs an
    /// interlocked exchange.
    /// </summary>
    /// <exception cref="InvalidOperationException">Another thread holds the device.</exception>
    internal Lease Enter()
    {
        ObjectDisposedException.ThrowIf(disposed, this);
        var me = Environment.CurrentManagedThreadId;
        var previous = Interlocked.CompareExchange(ref holder, me, 0);
        if (previous != 0 && previous != me)
            throw InUse(previous);
        depth++;
        return new Lease(this);
    }

    /// <summary>Throws when another thread holds the device (see <see cref="Enter"/>).</summary>
    internal void CheckThread()
    {
        var current = Volatile.Read(ref holder);
        if (current != 0 && current != Environment.CurrentManagedThreadId)
            throw InUse(current);
    }

    private InvalidOperationException InUse(int thread) => new(
        $"The device {Description.Name} is in use by thread {thread}; a device, and every model, state and tensor on " +
        $"it, is used from one thread at a time (this is thread {Environment.CurrentManagedThreadId}). Give each " +
        "thread its own device and models, or serialise the calls.");

    private void Exit()
    {
        if (--depth == 0)
            Volatile.Write(ref holder, 0);
    }

    /// <summary>The hold of <see cref="Enter"/>; disposing it releases the device when it is the outermost.</summary>
    internal readonly struct Lease(RetNetDevice device) : IDisposable
    {
        /// <summary>Releases this hold.</summary>
        public void Dispose() => device.Exit();
    }

    private void Track(MemoryBuffer buffer, string what)
    {
        var allocation = new Allocation(what, buffer.LengthInBytes, TrackAllocations ? new StackTrace(2, true) : null);
        lock (live)
            live.Add(buffer, allocation);
    }

    private void Untrack(MemoryBuffer buffer)
    {
        lock (live)
            live.Remove(buffer);
    }

    private void ReportUndisposed()
    {
        var leaked = UndisposedBuffers;
        if (leaked.Count == 0)
            return;
        var bytes = 0L;
        lock (live)
            bytes = live.Values.Sum(a => a.Bytes);
        var error = Console.Error;
        error.WriteLine($"warning: {leaked.Count} device buffers ({bytes:N0} bytes) on {Description.Name} were never " +
                        "freed: dispose tensors, models, decoding states and gradients before their device." +
                        (TrackAllocations ? "" : $" Set {TrackAllocationsVariable}=1 to see where each was made."));
        foreach (var line in leaked.Take(20))
            error.WriteLine($"  {line}");
        if (leaked.Count > 20)
            error.WriteLine($"  … and {leaked.Count - 20} more");
    }

    private sealed record Allocation(string What, long Bytes, StackTrace? Where)
    {
        public string Describe() => Where is null
            ? $"{What}, {Bytes:N0} bytes"
            : $"{What}, {Bytes:N0} bytes, allocated at{Environment.NewLine}{Where}";
    }
}
