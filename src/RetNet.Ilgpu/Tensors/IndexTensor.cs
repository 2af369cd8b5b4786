using ILGPU;
using ILGPU.Runtime;
using RetNet.Ilgpu.Devices;

namespace RetNet.Ilgpu.Tensors;

/// <summary>
/// A dense row-major tensor of 32-bit integers in device memory (token ids, class targets). It always owns its storage;
/// <see cref="Dispose"/> frees it.
/// </summary>
public sealed class IndexTensor : IDisposable
{
    private readonly MemoryBuffer1D<int, Stride1D.Dense> buffer;
    private readonly int[] shape;
    private bool disposed;

    private IndexTensor(RetNetDevice device, MemoryBuffer1D<int, Stride1D.Dense> buffer, int[] shape)
    {
        Device = device;
        this.buffer = buffer;
        this.shape = shape;
        Length = ShapeCheck.ElementCount(shape);
    }

    /// <summary>The device the storage lives on.</summary>
    public RetNetDevice Device { get; }

    /// <summary>The dimensions, outermost first.</summary>
    public ReadOnlySpan<int> Shape => shape;

    /// <summary>The number of dimensions.</summary>
    public int Rank => shape.Length;

    /// <summary>The number of elements.</summary>
    public int Length { get; }

    internal ArrayView<int> View
    {
        get
        {
            ObjectDisposedException.ThrowIf(disposed, this);
            return buffer.View.SubView(0, Length);
        }
    }

    /// <summary>Allocates an index tensor and copies <paramref name="data"/> (row-major) into it.</summary>
    /// <exception cref="ArgumentException">The data length is not the product of the shape.</exception>
    public static IndexTensor FromHost(RetNetDevice device, ReadOnlySpan<int> data, params int[] shape)
    {
        ArgumentNullException.ThrowIfNull(device);
        var copy = (int[])shape.Clone();
        var length = ShapeCheck.HostData(data.Length, copy, nameof(data));
        var tensor = new IndexTensor(device, device.Allocate<int>(Math.Max(length, 1)), copy);
        if (length > 0)
        {
            tensor.View.CopyFromCPU(device.Stream, data);
            device.Stream.Synchronize();
        }
        return tensor;
    }

    /// <summary>Overwrites the elements with <paramref name="data"/> (row-major) and waits for the copy (the source is
    /// managed memory the collector may move): a training loop refills its id buffers each step without allocating.</summary>
    /// <exception cref="ArgumentException">The data length differs from <see cref="Length"/>.</exception>
    public void CopyFromHost(ReadOnlySpan<int> data)
    {
        ObjectDisposedException.ThrowIf(disposed, this);
        ShapeCheck.HostData(data.Length, shape, nameof(data));
        if (Length > 0)
        {
            View.CopyFromCPU(Device.Stream, data);
            Device.Stream.Synchronize();
        }
    }

    /// <summary>Copies the elements to a new host array.</summary>
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

    /// <inheritdoc/>
    public override string ToString() => $"IndexTensor{ShapeCheck.Format(shape)} Int32 on {Device}";

    /// <summary>Frees the storage.</summary>
    public void Dispose()
    {
        if (disposed)
            return;
        disposed = true;
        Device.Free(buffer);
    }
}
