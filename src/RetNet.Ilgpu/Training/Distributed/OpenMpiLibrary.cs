using System.Runtime.InteropServices;
using System.Text;

namespace RetNet.Ilgpu.Training.Distributed;

/// <summary>
/// The few MPI C functions data-parallel training calls, bound at run time from OpenMPI's libmpi (libmpi.so.40, or the
/// file <c>RETNET_MPI_LIBRARY</c> names) by <see cref="NativeLibrary"/>, so that a process started without a launcher
/// never loads it and the library builds where no MPI is installed.
/// </summary>
/// <remarks>
/// MPI fixes the C API but not its ABI. OpenMPI's handles are pointers: <c>MPI_COMM_WORLD</c> is the address of the
/// exported global <c>ompi_mpi_comm_world</c>, <c>MPI_FLOAT</c> that of <c>ompi_mpi_float</c>, <c>MPI_BYTE</c> that
/// of <c>ompi_mpi_byte</c>, so they are read with <see cref="NativeLibrary.GetExport"/>. MPICH and the MPIs sharing
/// its ABI (Intel MPI, MVAPICH, Cray MPICH) use integer handles fixed in mpi.h (MPI_COMM_WORLD = 0x44000000) and export
/// no such globals: the binding recognises OpenMPI by the <c>ompi_mpi_comm_world</c> export and refuses any other
/// library, naming it, rather than pass handles of the wrong kind.
/// </remarks>
internal sealed unsafe class OpenMpiLibrary
{
    /// <summary>The variable that names the MPI library file to load instead of the default names.</summary>
    public const string LibraryVariable = "RETNET_MPI_LIBRARY";

    /// <summary>MPI_THREAD_FUNNELED, the same value in OpenMPI and MPICH: only the main thread calls MPI.</summary>
    public const int ThreadFunneled = 1;

    private static readonly string[] DefaultNames = ["libmpi.so.40", "libmpi.so"];

    private readonly delegate* unmanaged<int*, byte***, int, int*, int> initThread;
    private readonly delegate* unmanaged<int*, int> finalized;
    private readonly delegate* unmanaged<nint, int*, int> commRank;
    private readonly delegate* unmanaged<nint, int*, int> commSize;
    private readonly delegate* unmanaged<void*, int, nint, void*, int, nint, nint, int> allgather;
    private readonly delegate* unmanaged<void*, int, nint, int, nint, int> bcast;
    private readonly delegate* unmanaged<nint, int> barrier;
    private readonly delegate* unmanaged<int> finalize;
    private readonly delegate* unmanaged<nint, int, int> abort;
    private readonly delegate* unmanaged<int, byte*, int*, int> errorString;

    private OpenMpiLibrary(string path, nint handle)
    {
        Path = path;
        nint Export(string name) => NativeLibrary.TryGetExport(handle, name, out var address)
            ? address
            : throw new NotSupportedException($"The MPI library {path} does not export {name}.");
        if (!NativeLibrary.TryGetExport(handle, "ompi_mpi_comm_world", out var world))
            throw new NotSupportedException(
                $"The MPI library {path} is not OpenMPI (it exports no ompi_mpi_comm_world): MPICH-ABI libraries " +
                "(MPICH, Intel MPI, MVAPICH) use integer handles, which this binding does not implement. Run under " +
                $"OpenMPI's mpirun, or set {LibraryVariable} to OpenMPI's libmpi.so.40.");
        World = world;
        Float = Export("ompi_mpi_float");
        Byte = Export("ompi_mpi_byte");
        initThread = (delegate* unmanaged<int*, byte***, int, int*, int>)Export("MPI_Init_thread");
        finalized = (delegate* unmanaged<int*, int>)Export("MPI_Finalized");
        commRank = (delegate* unmanaged<nint, int*, int>)Export("MPI_Comm_rank");
        commSize = (delegate* unmanaged<nint, int*, int>)Export("MPI_Comm_size");
        allgather = (delegate* unmanaged<void*, int, nint, void*, int, nint, nint, int>)Export("MPI_Allgather");
        bcast = (delegate* unmanaged<void*, int, nint, int, nint, int>)Export("MPI_Bcast");
        barrier = (delegate* unmanaged<nint, int>)Export("MPI_Barrier");
        finalize = (delegate* unmanaged<int>)Export("MPI_Finalize");
        abort = (delegate* unmanaged<nint, int, int>)Export("MPI_Abort");
        errorString = (delegate* unmanaged<int, byte*, int*, int>)Export("MPI_Error_string");
    }

    /// <summary>The file loaded.</summary>
    public string Path { get; }

    /// <summary>MPI_COMM_WORLD.</summary>
    public nint World { get; }

    /// <summary>MPI_FLOAT.</summary>
    public nint Float { get; }

    /// <summary>MPI_BYTE.</summary>
    public nint Byte { get; }

    /// <summary>Loads OpenMPI's libmpi: the file <see cref="LibraryVariable"/> names, else libmpi.so.40, else libmpi.so.</summary>
    /// <exception cref="NotSupportedException">No such library loads, or it is not OpenMPI.</exception>
    public static OpenMpiLibrary Load()
    {
        var names = Environment.GetEnvironmentVariable(LibraryVariable) is { Length: > 0 } chosen
            ? [chosen]
            : DefaultNames;
        foreach (var name in names)
        {
            if (NativeLibrary.TryLoad(name, out var handle))
                return new OpenMpiLibrary(name, handle);
        }
        throw new NotSupportedException(
            $"No MPI library loads ({string.Join(", ", names)}): install OpenMPI (Debian: apt-get install " +
            $"openmpi-bin libopenmpi-dev) or set {LibraryVariable} to its libmpi.so.40.");
    }

    /// <summary>MPI_Init_thread(NULL, NULL, required, &amp;provided); the level provided.</summary>
    public int InitThread(int required)
    {
        int provided;
        Check(initThread(null, null, required, &provided), "MPI_Init_thread");
        return provided;
    }

    /// <summary>MPI_Finalized.</summary>
    public bool Finalized()
    {
        int flag;
        Check(finalized(&flag), "MPI_Finalized");
        return flag != 0;
    }

    /// <summary>MPI_Comm_rank(MPI_COMM_WORLD).</summary>
    public int Rank()
    {
        int rank;
        Check(commRank(World, &rank), "MPI_Comm_rank");
        return rank;
    }

    /// <summary>MPI_Comm_size(MPI_COMM_WORLD).</summary>
    public int Size()
    {
        int size;
        Check(commSize(World, &size), "MPI_Comm_size");
        return size;
    }

    /// <summary>MPI_Allgather on MPI_COMM_WORLD: every rank's <paramref name="count"/> elements of
    /// <paramref name="type"/>, in rank order, into <paramref name="received"/> on every rank.</summary>
    public void Allgather(void* sent, void* received, int count, nint type) =>
        Check(allgather(sent, count, type, received, count, type, World), "MPI_Allgather");

    /// <summary>MPI_Bcast on MPI_COMM_WORLD from rank <paramref name="root"/>.</summary>
    public void Broadcast(void* buffer, int count, nint type, int root) =>
        Check(bcast(buffer, count, type, root, World), "MPI_Bcast");

    /// <summary>MPI_Barrier(MPI_COMM_WORLD).</summary>
    public void Barrier() => Check(barrier(World), "MPI_Barrier");

    /// <summary>MPI_Finalize.</summary>
    public void FinalizeMpi() => Check(finalize(), "MPI_Finalize");

    /// <summary>MPI_Abort(MPI_COMM_WORLD, code): ends every process of the job; does not return on OpenMPI.</summary>
    public void Abort(int code) => abort(World, code);

    // The default error handler, MPI_ERRORS_ARE_FATAL, ends the job before a call returns an error; this check is for
    // a library set up otherwise.
    private void Check(int code, string function)
    {
        if (code == 0)
            return;
        var text = new byte[512];
        var length = 0;
        fixed (byte* p = text)
            _ = errorString(code, p, &length);
        throw new InvalidOperationException(
            $"{function} returned {code} ({Encoding.ASCII.GetString(text, 0, Math.Clamp(length, 0, text.Length))}).");
    }
}
