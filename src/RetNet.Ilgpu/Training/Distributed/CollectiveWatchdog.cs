using System.Diagnostics;

namespace RetNet.Ilgpu.Training.Distributed;

/// <summary>
/// Bounds every wait on other processes: a collective call that has not returned after the timeout (another rank hung
/// rather than died, which the launcher would notice) calls <c>onExpired</c> with the call's name, once, from a timer
/// thread of its own (not the thread pool's, which a busy process may starve). <see cref="MpiWorld"/> then ends the
/// process, and the launcher ends the job.
/// </summary>
public sealed class CollectiveWatchdog : IDisposable
{
    private readonly TimeSpan timeout;
    private readonly Action<string> onExpired;
    private readonly TimeSpan period;
    private readonly Thread thread;
    private readonly ManualResetEventSlim stopped = new();
    private readonly Lock gate = new();
    private string? current;
    private long enteredAt;
    private bool fired;

    /// <summary>A watchdog that calls <paramref name="onExpired"/> when one call lasts longer than
    /// <paramref name="timeout"/>, checking every <paramref name="period"/> (default: a tenth of the timeout, at most a
    /// second).</summary>
    /// <exception cref="ArgumentOutOfRangeException">The timeout is not positive.</exception>
    public CollectiveWatchdog(TimeSpan timeout, Action<string> onExpired, TimeSpan? period = null)
    {
        ArgumentNullException.ThrowIfNull(onExpired);
        if (timeout <= TimeSpan.Zero)
            throw new ArgumentOutOfRangeException(nameof(timeout), timeout, "Expected a positive timeout.");
        this.timeout = timeout;
        this.onExpired = onExpired;
        this.period = period ?? TimeSpan.FromTicks(Math.Min(timeout.Ticks / 10, TimeSpan.TicksPerSecond));
        thread = new Thread(Watch) { IsBackground = true, Name = "collective watchdog" };
        thread.Start();
    }

    /// <summary>The longest a call may take.</summary>
    public TimeSpan Timeout => timeout;

    /// <summary>Marks the start of the call <paramref name="name"/>; disposing the result marks its end.</summary>
    /// <exception cref="InvalidOperationException">Another call is still being watched (collectives do not nest).</exception>
    public Scope Enter(string name)
    {
        lock (gate)
        {
            if (current is not null)
                throw new InvalidOperationException($"The collective call {name} started inside {current}.");
            current = name;
            enteredAt = Stopwatch.GetTimestamp();
        }
        return new Scope(this);
    }

    private void Leave()
    {
        lock (gate)
            current = null;
    }

    private void Watch()
    {
        while (!stopped.Wait(period))
            Check();
    }

    private void Check()
    {
        string name;
        lock (gate)
        {
            if (fired || current is null || Stopwatch.GetElapsedTime(enteredAt) <= timeout)
                return;
            fired = true;
            name = current;
        }
        onExpired(name);
    }

    /// <summary>Stops watching.</summary>
    public void Dispose()
    {
        stopped.Set();
        thread.Join();
        stopped.Dispose();
    }

    /// <summary>One watched call; disposing it ends the watch.</summary>
    public readonly struct Scope : IDisposable
    {
        private readonly CollectiveWatchdog owner;

        internal Scope(CollectiveWatchdog owner) => this.owner = owner;

        /// <summary>Marks the call as returned.</summary>
        public void Dispose() => owner.Leave();
    }
}
