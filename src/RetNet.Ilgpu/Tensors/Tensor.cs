using ILGPU;
using ILGPU.Runtime;
using RetNet.Ilgpu.Devices;

namespace RetNet.Ilgpu.Tensors;

/// <summary>
/// A dense row-major tensor in device memory. A tensor either owns its storage (created by <see cref="Zeros"/>,
/// <see cref="FromHost(RetNetDevice, ReadOnlySpan{float}, int[])"/>, …) or is a view of another tensor's storage
/// (<see cref="Reshape"/>, <see cref="Slice"/>) that copies nothing. Disposing the owner frees the storage
/// deterministically; a view's <see cref="Dispose"/> does nothing, and using a view after its owner is disposed throws.
/// </summary>
public sealed class Tensor : IDisposable
{
    private readonly Storage storage;
    private readonly long offset;
    private readonly int[] shape;
    private readonly bool ownsStorage;

    private Tensor(Storage storage, long offset, int[] shape, bool ownsStorage)
    {
        this.storage = storage;
        this.offset = offset;
        this.shape = shape;
        this.ownsStorage = ownsStorage;
        Length = ShapeCheck.ElementCount(shape);
    }

    /// <summary>The device the storage lives on.</summary>
    public RetNetDevice Device => storage.Device;

    /// <summary>The element storage type.</summary>
    public TensorDType DType => TensorDType.Float32;

    /// <summary>The dimensions, outermost first.</summary>
    public ReadOnlySpan<int> Shape => shape;

    /// <summary>A copy of the dimensions.</summary>
    public int[] ShapeArray => (int[])shape.Clone();

    /// <summary>The number of dimensions.</summary>
    public int Rank => shape.Length;

    /// <summary>The number of elements.</summary>
    public int Length { get; }

    /// <summary>Size of dimension <paramref name="axis"/>; negative axes count from the end.</summary>
    public int Dim(int axis) => shape[axis < 0 ? shape.Length + axis : axis];

    /// <summary>True when this tensor is a view of another tensor's storage.</summary>
    public bool IsView => !ownsStorage;

    /// <summary>The elements as an ILGPU view, for kernels.</summary>
    internal ArrayView<float> View
    {
        get
        {
            ObjectDisposedException.ThrowIf(storage.IsDisposed, this);
            return storage.Buffer.View.SubView(offset, Length);
        }
    }

    /// <summary>Allocates a tensor of zeros.</summary>
    /// <exception cref="ArgumentException">A dimension is negative.</exception>
    public static Tensor Zeros(RetNetDevice device, params int[] shape)
    {
        var tensor = Uninitialized(device, shape);
        if (tensor.Length > 0)
            tensor.View.MemSetToZero(device.Stream);
        return tensor;
    }

    /// <summary>Allocates a tensor and copies <paramref name="data"/> (row-major) into it.</summary>
    /// <exception cref="ArgumentException">The data length is not the product of the shape.</exception>
    public static Tensor FromHost(RetNetDevice device, ReadOnlySpan<float> data, params int[] shape)
    {
        var length = ShapeCheck.ElementCount(shape);
        if (data.Length != length)
            throw new ArgumentException(
                $"Argument 'data' has {data.Length} elements; expected {length} for shape {ShapeCheck.Format(shape)}.",
                nameof(data));
        var tensor = Uninitialized(device, shape);
        tensor.CopyFromHost(data);
        return tensor;
    }

    /// <summary>Allocates a tensor whose contents are undefined until written (for outputs).</summary>
    public static Tensor Uninitialized(RetNetDevice device, params int[] shape)
    {
        ArgumentNullException.ThrowIfNull(device);
        var copy = (int[])shape.Clone();
        var length = ShapeCheck.ElementCount(copy);
        // A zero-length ILGPU buffer is legal but some drivers refuse it; keep one element behind empty tensors.
        var buffer = device.Allocate<float>(Math.Max(length, 1));
        return new Tensor(new Storage(device, buffer), 0, copy, ownsStorage: true);
    }

    /// <summary>Copies the elements to a new host array (waits for queued work first).</summary>
    public float[] ToHost()
    {
        var result = new float[Length];
        if (Length > 0)
        {
            View.CopyToCPU(Device.Stream, result);
            Device.Stream.Synchronize();
        }
        return result;
    }

    /// <summary>Overwrites the elements with <paramref name="data"/> (row-major).</summary>
    /// <exception cref="ArgumentException">The data length differs from <see cref="Length"/>.</exception>
    public void CopyFromHost(ReadOnlySpan<float> data)
    {
        if (data.Length != Length)
            throw new ArgumentException(
                $"Argument 'data' has {data.Length} elements; expected {Length} for shape {ShapeCheck.Format(shape)}.",
                nameof(data));
        if (Length == 0)
            return;
        View.CopyFromCPU(Device.Stream, data);
        Device.Stream.Synchronize();
    }

    /// <summary>Copies the elements of <paramref name="source"/> (same length) into this tensor on the device.</summary>
    public void CopyFrom(Tensor source)
    {
        ArgumentNullException.ThrowIfNull(source);
        ShapeCheck.SameDevice(Device, nameof(source), source);
        if (source.Length != Length)
            throw new ArgumentException(
                $"Argument 'source' has shape {ShapeCheck.Format(source.Shape)}; expected {Length} elements like " +
                $"{ShapeCheck.Format(shape)}.", nameof(source));
        if (Length > 0)
            source.View.CopyTo(Device.Stream, View);
    }

    /// <summary>A view with another shape of the same elements; one dimension may be -1 (inferred).</summary>
    /// <exception cref="ArgumentException">The element counts differ or more than one dimension is -1.</exception>
    public Tensor Reshape(params int[] newShape)
    {
        var resolved = (int[])newShape.Clone();
        var inferred = Array.IndexOf(resolved, -1);
        if (inferred >= 0)
        {
            if (Array.IndexOf(resolved, -1, inferred + 1) >= 0)
                throw new ArgumentException(
                    $"Argument 'newShape' {ShapeCheck.Format(newShape)} has more than one inferred (-1) dimension.",
                    nameof(newShape));
            resolved[inferred] = 1;
            var rest = ShapeCheck.ElementCount(resolved, nameof(newShape));
            if (rest == 0 || Length % rest != 0)
                throw new ArgumentException(
                    $"Argument 'newShape' {ShapeCheck.Format(newShape)} cannot hold the {Length} elements of " +
                    $"{ShapeCheck.Format(shape)}.", nameof(newShape));
            resolved[inferred] = Length / rest;
        }
        if (ShapeCheck.ElementCount(resolved, nameof(newShape)) != Length)
            throw new ArgumentException(
                $"Argument 'newShape' {ShapeCheck.Format(newShape)} has a different element count than " +
                $"{ShapeCheck.Format(shape)} ({Length}).", nameof(newShape));
        return new Tensor(storage, offset, resolved, ownsStorage: false);
    }

    /// <summary>A view of rows [<paramref name="start"/>, <paramref name="start"/> + <paramref name="count"/>) of the first dimension.</summary>
    /// <exception cref="ArgumentOutOfRangeException">The range is outside the first dimension.</exception>
    public Tensor Slice(int start, int count)
    {
        if (Rank == 0)
            throw new InvalidOperationException("A scalar tensor has no first dimension to slice.");
        if (start < 0 || count < 0 || start + (long)count > shape[0])
            throw new ArgumentOutOfRangeException(
                nameof(start), $"Rows [{start}, {start + (long)count}) are outside the first dimension of {ShapeCheck.Format(shape)}.");
        var rowLength = shape[0] == 0 ? 0 : Length / shape[0];
        var sliced = (int[])shape.Clone();
        sliced[0] = count;
        return new Tensor(storage, offset + (long)start * rowLength, sliced, ownsStorage: false);
    }

    internal bool IsSameViewAs(Tensor other) =>
        ReferenceEquals(storage, other.storage) && offset == other.offset && Length == other.Length;

    internal bool Overlaps(Tensor other) =>
        ReferenceEquals(storage, other.storage) && Length > 0 && other.Length > 0 &&
        offset < other.offset + other.Length && other.offset < offset + Length;

    /// <inheritdoc/>
    public override string ToString() => $"Tensor{ShapeCheck.Format(shape)} {DType} on {Device}";

    /// <summary>Frees the storage if this tensor owns it; views do nothing.</summary>
    public void Dispose()
    {
        if (ownsStorage)
            storage.Dispose();
    }

    private sealed class Storage(RetNetDevice device, MemoryBuffer1D<float, Stride1D.Dense> buffer) : IDisposable
    {
        public RetNetDevice Device { get; } = device;
        public MemoryBuffer1D<float, Stride1D.Dense> Buffer { get; } = buffer;
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
