using System.IO.MemoryMappedFiles;

namespace RetNet.Ilgpu.IO;

/// <summary>
/// A safetensors file mapped into memory, read-only: its tensors (<see cref="File"/>) are views of the mapped bytes,
/// nothing is read or copied until something reads them, and on ILGPU's CPU accelerator a model's weights are those
/// bytes (<c>LanguageModel.Load</c> with <c>mapWeights: true</c>). The header is validated exactly as
/// <see cref="Safetensors.Read"/> validates it, with the same errors, before anything is mapped.
/// </summary>
/// <remarks>
/// The mapping lives as long as anything made from it: disposing this object releases the opener's reference, each
/// device tensor over the mapped bytes holds one of its own, and the file is unmapped (and closed) when the last is
/// released. The file is opened with <see cref="FileShare.Delete"/>, so it may be replaced or deleted while mapped (the
/// mapping keeps the old contents); it must not be truncated or rewritten in place while mapped, which the operating
/// system reports as a bus error on the next read of a lost page.
/// </remarks>
public sealed unsafe class MappedSafetensors : IDisposable
{
    private readonly MemoryMappedFile file;
    private readonly MemoryMappedViewAccessor accessor;
    private readonly byte* start;
    private readonly long dataStart;
    private int references = 1;
    private int openerReleased;

    private MappedSafetensors(string path, MemoryMappedFile file, MemoryMappedViewAccessor accessor, byte* start,
        long dataStart, long length)
    {
        Path = path;
        this.file = file;
        this.accessor = accessor;
        this.start = start;
        this.dataStart = dataStart;
        Length = length;
        File = null!;
    }

    /// <summary>The file's path.</summary>
    public string Path { get; }

    /// <summary>The file's size in bytes.</summary>
    public long Length { get; }

    /// <summary>The tensors (views of the mapped bytes, valid while the mapping lives), the metadata and the entries.
    /// A tensor's <see cref="HostTensor.Data"/> or <see cref="HostTensor.Bits"/> makes a heap copy; loading a model
    /// reads the bytes in place.</summary>
    public SafetensorsFile File { get; private set; }

    /// <summary>True once every reference is released and the file unmapped.</summary>
    public bool IsUnmapped => Volatile.Read(ref references) == 0;

    /// <summary>Maps <paramref name="path"/> read-only after validating its header.</summary>
    /// <exception cref="SafetensorsFormatException">The file is not a well-formed safetensors file.</exception>
    /// <exception cref="FileNotFoundException">The file does not exist.</exception>
    public static MappedSafetensors Open(string path)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(path);
        var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read | FileShare.Delete);
        MemoryMappedFile? file = null;
        MemoryMappedViewAccessor? accessor = null;
        try
        {
            var (entries, metadata, dataStart) = Safetensors.ReadHeader(stream, path);
            var length = stream.Length;
            file = MemoryMappedFile.CreateFromFile(stream, null, 0, MemoryMappedFileAccess.Read,
                HandleInheritability.None, leaveOpen: false);
            accessor = file.CreateViewAccessor(0, 0, MemoryMappedFileAccess.Read);
            byte* pointer = null;
            accessor.SafeMemoryMappedViewHandle.AcquirePointer(ref pointer);
            var mapped = new MappedSafetensors(path, file, accessor, pointer + accessor.PointerOffset, dataStart, length);
            var tensors = new Dictionary<string, HostTensor>(StringComparer.Ordinal);
            foreach (var entry in entries)
                tensors.Add(entry.Name, HostTensor.Mapped(entry, mapped));
            mapped.File = new SafetensorsFile(tensors, metadata, entries) { Mapping = mapped };
            return mapped;
        }
        catch
        {
            accessor?.Dispose();
            if (file is null)
                stream.Dispose();
            file?.Dispose();
            throw;
        }
    }

    /// <summary>The host address of the byte at <paramref name="dataOffset"/> of the data section.</summary>
    /// <exception cref="ObjectDisposedException">The file is unmapped.</exception>
    internal nint Address(long dataOffset)
    {
        ObjectDisposedException.ThrowIf(IsUnmapped, this);
        return (nint)(start + dataStart + dataOffset);
    }

    /// <summary>A reference that keeps the mapping alive until it is disposed (once; further calls do nothing).</summary>
    /// <exception cref="ObjectDisposedException">The file is unmapped already.</exception>
    internal IDisposable Reference()
    {
        int seen;
        do
        {
            seen = Volatile.Read(ref references);
            ObjectDisposedException.ThrowIf(seen == 0, this);
        } while (Interlocked.CompareExchange(ref references, seen + 1, seen) != seen);
        return new Lease(this);
    }

    /// <summary>Releases the opener's reference: the file is unmapped now, or when the last tensor over it is
    /// disposed.</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref openerReleased, 1) == 0)
            Release();
    }

    private void Release()
    {
        if (Interlocked.Decrement(ref references) != 0)
            return;
        accessor.SafeMemoryMappedViewHandle.ReleasePointer();
        accessor.Dispose();
        file.Dispose();
    }

    /// <inheritdoc/>
    public override string ToString() => $"the memory-mapped file '{Path}'";

    private sealed class Lease(MappedSafetensors owner) : IDisposable
    {
        private int released;

        public void Dispose()
        {
            if (Interlocked.Exchange(ref released, 1) == 0)
                owner.Release();
        }

        public override string ToString() => owner.ToString();
    }
}
