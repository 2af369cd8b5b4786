using ILGPU;

namespace RetNet.Ilgpu.Kernels;

/// <summary>
/// How one implicitly grouped launch splits <see cref="Count"/> items over <see cref="Threads"/> threads: thread t
/// handles the runs [t·Chunk + k·Step, … + Chunk) for k = 0, 1, … while inside the count, Step = Threads·Chunk. With
/// Chunk = 1 this is the grid-stride loop (consecutive threads touch consecutive items: coalesced on GPUs); with
/// Chunk = ⌈Count / Threads⌉ each thread owns one contiguous range (no shared cache lines between the CPU's threads).
/// Every item is handled by exactly one thread for any thread count ≥ 1, so results do not depend on the split.
/// Built by <see cref="Launch.Spread"/>, the one place that decides the geometry.
/// </summary>
internal readonly struct Spread
{
    /// <summary>Items to cover.</summary>
    public readonly int Count;

    /// <summary>Consecutive items one thread handles before it strides.</summary>
    public readonly int Chunk;

    /// <summary>Threads launched (the index space of the kernel).</summary>
    public readonly int Threads;

    /// <summary>Items between two runs of one thread: Threads · Chunk.</summary>
    public readonly int Step;

    /// <summary>A split of <paramref name="count"/> items over <paramref name="threads"/> threads in runs of
    /// <paramref name="chunk"/>.</summary>
    /// <exception cref="ArgumentOutOfRangeException">A size is not positive, or the loop's indices would overflow.</exception>
    public Spread(int count, int threads, int chunk)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        ArgumentOutOfRangeException.ThrowIfLessThan(threads, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(chunk, 1);
        // The kernels loop in int: the last start plus one step must stay representable.
        if ((long)threads * chunk + count > int.MaxValue)
            throw new ArgumentOutOfRangeException(nameof(count), count,
                $"{count} items in runs of {chunk} over {threads} threads overflow the kernels' 32-bit indices.");
        Count = count;
        Threads = threads;
        Chunk = chunk;
        Step = threads * chunk;
    }

    /// <summary>The first item of <paramref name="thread"/>'s first run.</summary>
    public int First(Index1D thread) => thread.X * Chunk;

    /// <summary>One past the last item of the run that starts at <paramref name="start"/>.</summary>
    public int End(int start) => IntrinsicMath.Min(start + Chunk, Count);
}
