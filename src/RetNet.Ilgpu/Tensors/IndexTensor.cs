using ILGPU;
using ILGPU.Runtime;
using RetNet.Ilgpu.Devices;

namespace RetNet.Ilgpu.Tensors;

/// <summary>
/// A dense row-major tensor of 32-bit integers in device memory: token ids, class targets, start positions, cache
/// lengths. Like <see cref="Tensor"/>, it either owns its storage (<see cref="FromHost"/>, <see cref="Zeros"/>) or is a
/// view of another's (<see cref="Slice"/>, <see cref="Reshape"/>) that copies nothing; disposing the owner frees the
/// storage, disposing a view does nothing, and using a view after its owner is disposed throws. A model keeps one per
/// pass and refills it (<see cref="CopyFromHost"/>): the ids of a pass and the start position of each sequence are
/// uploaded once, into one buffer, and every kernel reads its own slice of it.
/// </summary>
public sealed class IndexTensor : IDisposable
{
    private readonly Storage storage;
    private readonly long offset;
    private readonly int[] shape;
    private readonly bool ownsStorage;

    private IndexTensor(Storage storage, long offset, int[] shape, bool ownsStorage)
    {
        this.storage = storage;
        this.offset = offset;
        this.shape = shape;
        this.ownsStorage = ownsStorage;
        Length = ShapeCheck.ElementCount(shape);
    }

    /// <summary>The device the storage lives on.</summary>
    public RetNetDevice Device => storage.Device;

    /// <summary>The dimensions, outermost first.</summary>
    public ReadOnlySpan<int> Shape => shape;

    /// <summary>The number of dimensions.</summary>
    public int Rank => shape.Length;

    /// <summary>The number of elements.</summary>
    public int Length { get; }

    /// <summary>True when this tensor is a view of another index tensor's storage.</summary>
    public bool IsView => !ownsStorage;

    internal ArrayView<int> View
    {
        get
        {
            ObjectDisposedException.ThrowIf(storage.IsDisposed, this);
            storage.Device.CheckThread();
            return storage.Buffer.View.SubView(offset, Length);
        }
    }

    /// <summary>Allocates an index tensor and copies <paramref name="data"/> (row-major) into it.</summary>
    /// <exception cref="ArgumentException">The data length is not the product of the shape.</exception>
    public static IndexTensor FromHost(RetNetDevice device, ReadOnlySpan<int> data, params int[] shape)
    {
        ArgumentNullException.ThrowIfNull(device);
        ShapeCheck.HostData(data.Length, shape, nameof(data));
        var tensor = Allocate(device, shape);
        tensor.CopyFromHost(data);
        return tensor;
    }

    /// <summary>Allocates an index tensor of zeros.</summary>
    /// <exception cref="ArgumentException">A dimension is negative.</exception>
    public static IndexTensor Zeros(RetNetDevice device, params int[] shape)
    {
        ArgumentNullException.ThrowIfNull(device);
        var tensor = Allocate(device, shape);
        if (tensor.Length > 0)
            tensor.View.MemSetToZero(device.Stream);
        return tensor;
    }

    private static IndexTensor Allocate(RetNetDevice device, int[] shape)
    {
        ArgumentNullException.ThrowIfNull(shape);
        var copy = (int[])shape.Clone();
        var length = ShapeCheck.ElementCount(copy);
        // As for Tensor: some drivers refuse a zero-length buffer, so keep one element behind an empty tensor.
        var buffer = device.Allocate<int>(Math.Max(length, 1), $"IndexTensor{ShapeCheck.Format(copy)}");
        return new IndexTensor(new Storage(device, buffer), 0, copy, ownsStorage: true);
    }

    /// <summary>Overwrites the elements with <paramref name="data"/> (row-major) and waits for the copy (the source is
    /// managed memory the collector may move): a model refills its id buffer every pass without allocating.</summary>
    /// <exception cref="ArgumentException">The data length differs from <see cref="Length"/>.</exception>
    public void CopyFromHost(ReadOnlySpan<int> data)
    {
        ShapeCheck.HostData(data.Length, shape, nameof(data));
        if (Length == 0)
            return;
        View.CopyFromCPU(Device.Stream, data);
        Device.Stream.Synchronize();
    }

    /// <summary>Copies the elements to a new host array (waits for queued work first).</summary>
    public int[] ToHost()
    {
        var result = new int[Length];
        if (Length > 0)
        {
            View.CopyToCPU(Device.Stream, result);
            Device.Stream.Synchronize();
        }
        return result;
    }

    /// <summary>A view of rows [<paramref name="start"/>, <paramref name="start"/> + <paramref name="count"/>) of the
    /// first dimension.</summary>
    /// <exception cref="ArgumentOutOfRangeException">The range is outside the first dimension.</exception>
    public IndexTensor Slice(int start, int count)
    {
        if (Rank == 0)
            throw new InvalidOperationException("A scalar index tensor has no first dimension to slice.");
        if (start < 0 || count < 0 || start + (long)count > shape[0])
            throw new ArgumentOutOfRangeException(nameof(start),
                $"Rows [{start}, {start + (long)count}) are outside the first dimension of {ShapeCheck.Format(shape)}.");
        var rowLength = shape[0] == 0 ? 0 : Length / shape[0];
        var sliced = (int[])shape.Clone();
        sliced[0] = count;
        return new IndexTensor(storage, offset + (long)start * rowLength, sliced, ownsStorage: false);
    }

    /// <summary>A view with another shape of the same elements.</summary>
    /// <exception cref="ArgumentException">The element counts differ.</exception>
    public IndexTensor Reshape(params int[] newShape)
    {
        var copy = (int[])newShape.Clone();
        if (ShapeCheck.ElementCount(copy, nameof(newShape)) != Length)
            throw new ArgumentException(
                $"Argument 'newShape' {ShapeCheck.Format(newShape)} has a different element count than " +
                $"{ShapeCheck.Format(shape)} ({Length}).", nameof(newShape));
        return new IndexTensor(storage, offset, copy, ownsStorage: false);
    }

    /// <inheritdoc/>
    public override string ToString() => $"IndexTensor{ShapeCheck.Format(shape)} Int32 on {Device}";

    /// <summary>Frees the storage if this tensor owns it; views do nothing.</summary>
    public void Dispose()
    {
        if (ownsStorage)
            storage.Dispose();
    }

    private sealed class Storage(RetNetDevice device, MemoryBuffer1D<int, Stride1D.Dense> buffer) : IDisposable
    {
        public RetNetDevice Device { get; } = device;
        public MemoryBuffer1D<int, Stride1D.Dense> Buffer { get; } = buffer;
        public bool IsDisposed { get; private set; }

        public void Dispose()
        {
            if (IsDisposed)
                return;
            IsDisposed = true;
            Device.Free(Buffer);
        }
    }
}
