using ILGPU;
using ILGPU.Runtime;
using RetNet.Ilgpu.Devices;

namespace RetNet.Ilgpu.Kernels.Rotation;

/// <summary>
/// A reusable device buffer of int32 (token ids, start positions) that host code refills without allocating: the
/// decoding step uploads its tokens and positions into one of these each step.
/// </summary>
internal sealed class DeviceInts : IDisposable
{
    private readonly RetNetDevice device;
    private readonly MemoryBuffer1D<int, Stride1D.Dense> buffer;
    private bool disposed;

    public DeviceInts(RetNetDevice device, int capacity)
    {
        this.device = device;
        Capacity = capacity;
        buffer = device.Allocate<int>(Math.Max(capacity, 1));
    }

    public int Capacity { get; }

    public RetNetDevice Device => device;

    public ArrayView<int> View(int offset, int count)
    {
        ObjectDisposedException.ThrowIf(disposed, this);
        return buffer.View.SubView(offset, count);
    }

    /// <summary>Copies <paramref name="values"/> to the start of the buffer and waits for the copy: the source is managed
    /// memory the collector may move, and the stream is idle at this point of a decoding step anyway (the previous
    /// step ended by reading its logits).</summary>
    public void Upload(ReadOnlySpan<int> values)
    {
        ObjectDisposedException.ThrowIf(disposed, this);
        if (values.Length > Capacity)
            throw new ArgumentException($"{values.Length} values do not fit a buffer of {Capacity}.", nameof(values));
        if (values.Length > 0)
        {
            buffer.View.SubView(0, values.Length).CopyFromCPU(device.Stream, values);
            device.Stream.Synchronize();
        }
    }

    public void Dispose()
    {
        if (disposed)
            return;
        disposed = true;
        device.Free(buffer);
    }
}
