namespace RetNet.Ilgpu.Training.Distributed;

/// <summary>
/// MPI_COMM_WORLD of a job started by mpirun, through OpenMPI's C API (<see cref="OpenMpiLibrary"/>): the collectives
/// data-parallel training needs, each bounded by a <see cref="CollectiveWatchdog"/>. Made once per process by
/// <see cref="Initialize"/> (MPI_Init_thread); disposing it calls MPI_Finalize. Every call must come from the thread
/// that made it (MPI_THREAD_FUNNELED).
/// </summary>
public sealed unsafe class MpiWorld : IDisposable
{
    // MPI counts are ints; larger spans travel in pieces of this many elements.
    private const int MaxCount = 1 << 28;

    private readonly OpenMpiLibrary mpi;
    private readonly CollectiveWatchdog watchdog;
    private bool finished;

    private MpiWorld(OpenMpiLibrary mpi, int rank, int size, int localRank, TimeSpan collectiveTimeout)
    {
        this.mpi = mpi;
        Rank = rank;
        Size = size;
        LocalRank = localRank;
        watchdog = new CollectiveWatchdog(collectiveTimeout, call => Environment.FailFast(
            $"rank {rank}: {call} waited longer than {collectiveTimeout.TotalSeconds:F0} s for the other ranks " +
            "(one is hung); ending this process so that the launcher ends the job."));
    }

    /// <summary>This process's rank, 0 … <see cref="Size"/> − 1.</summary>
    public int Rank { get; }

    /// <summary>The number of processes.</summary>
    public int Size { get; }

    /// <summary>This process's index among the job's processes on its machine.</summary>
    public int LocalRank { get; }

    /// <summary>The MPI library file loaded.</summary>
    public string LibraryPath => mpi.Path;

    /// <summary>The longest any collective call may wait before the process ends itself.</summary>
    public TimeSpan CollectiveTimeout => watchdog.Timeout;

    /// <summary>
    /// Loads OpenMPI's libmpi, calls MPI_Init_thread (MPI_THREAD_FUNNELED) and checks that MPI's rank and size are the
    /// launcher's.
    /// </summary>
    /// <exception cref="NotSupportedException">No OpenMPI library loads (the message says what to install).</exception>
    /// <exception cref="InvalidOperationException">MPI's rank or size differs from the launcher's variables.</exception>
    public static MpiWorld Initialize(MpiLaunch launch, TimeSpan collectiveTimeout)
    {
        ArgumentNullException.ThrowIfNull(launch);
        var mpi = OpenMpiLibrary.Load();
        mpi.InitThread(OpenMpiLibrary.ThreadFunneled);
        var (rank, size) = (mpi.Rank(), mpi.Size());
        if (rank != launch.Rank || size != launch.Size)
        {
            mpi.FinalizeMpi();
            throw new InvalidOperationException(
                $"MPI_Comm_rank/size give rank {rank} of {size}; the launcher's variables give rank {launch.Rank} of " +
                $"{launch.Size}. Start every process with one mpirun.");
        }
        return new MpiWorld(mpi, rank, size, launch.LocalRank, collectiveTimeout);
    }

    /// <summary>Every rank's <paramref name="mine"/>, in rank order, into <paramref name="all"/> (Size × its length).</summary>
    /// <exception cref="ArgumentException"><paramref name="all"/> is not Size times as long as <paramref name="mine"/>.</exception>
    public void Allgather(ReadOnlySpan<float> mine, Span<float> all)
    {
        RequireGatherLength(mine.Length, all.Length);
        using var _ = watchdog.Enter("MPI_Allgather");
        fixed (float* sent = mine)
        fixed (float* received = all)
            mpi.Allgather(sent, received, mine.Length, mpi.Float);
    }

    /// <summary>Every rank's <paramref name="mine"/>, in rank order, into <paramref name="all"/> (Size × its length).</summary>
    /// <exception cref="ArgumentException"><paramref name="all"/> is not Size times as long as <paramref name="mine"/>.</exception>
    public void Allgather(ReadOnlySpan<byte> mine, Span<byte> all)
    {
        RequireGatherLength(mine.Length, all.Length);
        using var _ = watchdog.Enter("MPI_Allgather");
        fixed (byte* sent = mine)
        fixed (byte* received = all)
            mpi.Allgather(sent, received, mine.Length, mpi.Byte);
    }

    /// <summary>Replaces <paramref name="values"/> on every rank by rank 0's.</summary>
    public void Broadcast(Span<float> values) => Broadcast(values, mpi.Float);

    /// <summary>Replaces <paramref name="values"/> on every rank by rank 0's.</summary>
    public void Broadcast(Span<byte> values) => Broadcast(values, mpi.Byte);

    /// <summary>Rank 0's <paramref name="values"/> to every rank, as MPI elements of <paramref name="type"/>, in
    /// pieces of at most <see cref="MaxCount"/> (MPI counts are ints).</summary>
    private void Broadcast<T>(Span<T> values, nint type) where T : unmanaged
    {
        using var _ = watchdog.Enter("MPI_Bcast");
        for (var start = 0; start < values.Length; start += MaxCount)
        {
            var piece = values.Slice(start, Math.Min(MaxCount, values.Length - start));
            fixed (T* p = piece)
                mpi.Broadcast(p, piece.Length, type, root: 0);
        }
    }

    /// <summary>Waits until every rank has called it.</summary>
    public void Barrier()
    {
        using var _ = watchdog.Enter("MPI_Barrier");
        mpi.Barrier();
    }

    /// <summary>Ends every process of the job with <paramref name="code"/> (MPI_Abort): what a rank does when it
    /// fails alone, so that the others do not wait for it. Flushes the console first.</summary>
    public void Abort(int code)
    {
        Console.Out.Flush();
        Console.Error.Flush();
        finished = true;
        mpi.Abort(code);
        Environment.Exit(code);
    }

    /// <summary>MPI_Finalize (once), watched like the collectives: it may wait for the other ranks.</summary>
    public void Dispose()
    {
        if (!finished)
        {
            finished = true;
            using (watchdog.Enter("MPI_Finalize"))
            {
                if (!mpi.Finalized())
                    mpi.FinalizeMpi();
            }
        }
        watchdog.Dispose();
    }

    private void RequireGatherLength(int mine, int all)
    {
        if ((long)mine * Size != all)
            throw new ArgumentException(
                $"Argument 'all' has {all} elements; expected Size × {mine} = {(long)mine * Size}.", nameof(all));
        if (mine > MaxCount)
            throw new ArgumentException(
                $"Argument 'mine' has {mine} elements; expected at most {MaxCount} per call (gather in buckets).",
                nameof(mine));
    }
}
