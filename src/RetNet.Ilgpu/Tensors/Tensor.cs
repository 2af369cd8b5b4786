using ILGPU;
using ILGPU.Runtime;
using RetNet.Ilgpu.Devices;

namespace RetNet.Ilgpu.Tensors;

/// <summary>
/// A dense row-major tensor in device memory. A tensor either owns its storage (created by <see cref="Zeros(RetNetDevice, int[])"/>,
/// <see cref="FromHost(RetNetDevice, ReadOnlySpan{float}, int[])"/>, …) or is a view of another tensor's storage
/// (<see cref="Reshape"/>, <see cref="Slice"/>) that copies nothing. Disposing the owner frees the storage
/// deterministically; a view's <see cref="Dispose"/> does nothing, and using a view after its owner is disposed throws.
/// On the CPU accelerator a tensor may also be a read-only window on host memory that something else owns (a
/// memory-mapped weights file, <see cref="IsReadOnly"/>): operations read it in place and refuse to write it.
/// Elements are stored as <see cref="DType"/>: fp32 by default, or a 16-bit type (fp16, bf16) that the operations which
/// accept it widen to fp32 as they read; an operation that reads only fp32 refuses a 16-bit tensor with an exception
/// that names both.
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
    public TensorDType DType => storage.DType;

    /// <summary>Bytes of storage the elements take (<see cref="Length"/> × the element size).</summary>
    public long Bytes => (long)Length * TensorDTypes.SizeOf(DType);

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

    /// <summary>True when the elements are another owner's read-only host memory (a memory-mapped weights file,
    /// <see cref="MapHost"/>): operations may read them, and any write is refused.</summary>
    public bool IsReadOnly => storage.ReadOnly is not null;

    /// <summary>The fp32 elements as an ILGPU view, for kernels that may write them.</summary>
    /// <exception cref="NotSupportedException">The tensor is stored as a 16-bit type.</exception>
    /// <exception cref="InvalidOperationException">The tensor is read-only (<see cref="IsReadOnly"/>).</exception>
    internal ArrayView<float> View
    {
        get
        {
            RefuseReadOnly();
            Interlocked.Increment(ref storage.Writes);
            return ReadView;
        }
    }

    /// <summary>The fp32 elements as an ILGPU view that the caller only reads (a weight, an operation's input): the
    /// one accessor a read-only tensor allows.</summary>
    /// <exception cref="NotSupportedException">The tensor is stored as a 16-bit type.</exception>
    internal ArrayView<float> ReadView
    {
        get
        {
            ObjectDisposedException.ThrowIf(storage.IsDisposed, this);
            storage.Device.CheckThread();
            if (storage.Singles is not { } singles)
                throw new NotSupportedException(
                    $"{this} is stored as {DType}; this operation reads Float32 tensors only. Convert it first " +
                    "(Conversion.Convert) or use an operation that accepts 16-bit storage (GEMM, embedding lookup).");
            return singles.SubView(offset, Length);
        }
    }

    /// <summary>The raw bits of a 16-bit tensor's elements as an ILGPU view, for kernels that may write them.</summary>
    /// <exception cref="NotSupportedException">The tensor is stored as fp32.</exception>
    /// <exception cref="InvalidOperationException">The tensor is read-only (<see cref="IsReadOnly"/>).</exception>
    internal ArrayView<ushort> HalfView
    {
        get
        {
            RefuseReadOnly();
            Interlocked.Increment(ref storage.Writes);
            return ReadHalfView;
        }
    }

    /// <summary>The raw bits of a 16-bit tensor's elements as an ILGPU view that the caller only reads (widening as it
    /// loads).</summary>
    /// <exception cref="NotSupportedException">The tensor is stored as fp32.</exception>
    internal ArrayView<ushort> ReadHalfView
    {
        get
        {
            ObjectDisposedException.ThrowIf(storage.IsDisposed, this);
            storage.Device.CheckThread();
            if (storage.Halves is not { } halves)
                throw new NotSupportedException($"{this} is stored as Float32; expected a 16-bit tensor here.");
            return halves.SubView(offset, Length);
        }
    }

    /// <summary>
    /// How many times anything has taken a writable view of this tensor's storage (<see cref="View"/>,
    /// <see cref="HalfView"/>: every write goes through one of them, the only ways to write). A copy derived from the
    /// elements (<see cref="Model.DecodeWeights"/>) that recorded this count is current while the count is unchanged.
    /// Shared by every view of the storage; a read-only tensor's stays 0.
    /// </summary>
    internal long WriteCount => Interlocked.Read(ref storage.Writes);

    private void RefuseReadOnly()
    {
        if (storage.ReadOnly is { } owner)
            throw new InvalidOperationException(
                $"{this} is read-only: its elements lie in {owner} and are read in place. Nothing may write them " +
                "(training and fine-tuning load copies: LanguageModel.Load with mapWeights: false).");
    }

    /// <summary>Allocates a tensor of zeros.</summary>
    /// <exception cref="ArgumentException">A dimension is negative.</exception>
    public static Tensor Zeros(RetNetDevice device, params int[] shape) => Zeros(device, TensorDType.Float32, shape);

    /// <summary>Allocates a tensor of zeros stored as <paramref name="dtype"/> (zero is all-zero bits in every type).</summary>
    /// <exception cref="ArgumentException">A dimension is negative.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="dtype"/> is not a defined value.</exception>
    public static Tensor Zeros(RetNetDevice device, TensorDType dtype, params int[] shape)
    {
        var tensor = Uninitialized(device, dtype, shape);
        if (tensor.Length == 0)
            return tensor;
        if (dtype == TensorDType.Float32)
            tensor.View.MemSetToZero(device.Stream);
        else
            tensor.HalfView.MemSetToZero(device.Stream);
        return tensor;
    }

    /// <summary>Allocates a tensor and copies <paramref name="data"/> (row-major) into it.</summary>
    /// <exception cref="ArgumentException">The data length is not the product of the shape.</exception>
    public static Tensor FromHost(RetNetDevice device, ReadOnlySpan<float> data, params int[] shape)
    {
        ShapeCheck.HostData(data.Length, shape, nameof(data));
        var tensor = Uninitialized(device, shape);
        tensor.CopyFromHost(data);
        return tensor;
    }

    /// <summary>Allocates a tensor stored as <paramref name="dtype"/>, rounding <paramref name="data"/> (row-major) to
    /// it on the host (nearest, ties to even), so no fp32 copy ever reaches the device.</summary>
    /// <exception cref="ArgumentException">The data length is not the product of the shape.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="dtype"/> is not a defined value.</exception>
    public static Tensor FromHost(RetNetDevice device, ReadOnlySpan<float> data, TensorDType dtype, params int[] shape)
    {
        ShapeCheck.HostData(data.Length, shape, nameof(data));
        var tensor = Uninitialized(device, dtype, shape);
        tensor.CopyFromHost(data);
        return tensor;
    }

    /// <summary>Allocates a 16-bit tensor from the raw bits of its elements (a checkpoint's F16 or BF16 data), copied
    /// as they are.</summary>
    /// <exception cref="ArgumentException">The data length is not the product of the shape, or
    /// <paramref name="dtype"/> is Float32.</exception>
    public static Tensor FromHostBits(RetNetDevice device, ReadOnlySpan<ushort> bits, TensorDType dtype, params int[] shape)
    {
        ShapeCheck.SixteenBit(dtype, nameof(dtype));
        var length = ShapeCheck.HostData(bits.Length, shape, nameof(bits));
        var tensor = Uninitialized(device, dtype, shape);
        if (length > 0)
        {
            tensor.HalfView.CopyFromCPU(device.Stream, bits);
            device.Stream.Synchronize();
        }
        return tensor;
    }

    /// <summary>Allocates a tensor whose contents are undefined until written (for outputs).</summary>
    public static Tensor Uninitialized(RetNetDevice device, params int[] shape) =>
        Uninitialized(device, TensorDType.Float32, shape);

    /// <summary>Allocates a tensor stored as <paramref name="dtype"/> whose contents are undefined until written.</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="dtype"/> is not a defined value.</exception>
    public static Tensor Uninitialized(RetNetDevice device, TensorDType dtype, params int[] shape)
    {
        ArgumentNullException.ThrowIfNull(device);
        ArgumentNullException.ThrowIfNull(shape);
        if (!Enum.IsDefined(dtype))
            throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "Expected Float32, Float16 or BFloat16.");
        var copy = (int[])shape.Clone();
        var length = ShapeCheck.ElementCount(copy);
        // A zero-length ILGPU buffer is legal but some drivers refuse it; keep one element behind empty tensors.
        var what = $"Tensor{ShapeCheck.Format(copy)} {dtype}";
        var storage = dtype == TensorDType.Float32
            ? new Storage(device, device.Allocate<float>(Math.Max(length, 1), what), dtype)
            : new Storage(device, device.Allocate<ushort>(Math.Max(length, 1), what), dtype);
        return new Tensor(storage, 0, copy, ownsStorage: true);
    }

    /// <summary>
    /// A read-only tensor over <paramref name="address"/>, host memory that another object owns (a memory-mapped
    /// safetensors file): nothing is copied, the operations read the bytes where they lie, and any write throws
    /// <see cref="InvalidOperationException"/>. Only ILGPU's CPU accelerator keeps its buffers in host memory, so only
    /// it can wrap one. <paramref name="owner"/> is kept alive until the tensor is disposed (its
    /// <see cref="IDisposable.Dispose"/> is called then: a reference the caller took for this tensor).
    /// </summary>
    /// <param name="device">A CPU accelerator device.</param>
    /// <param name="address">The first element, aligned to the element size.</param>
    /// <param name="dtype">How the elements are stored.</param>
    /// <param name="shape">The dimensions (at least one element).</param>
    /// <param name="owner">What owns the memory; disposed with the tensor; its <c>ToString</c> names it in messages.</param>
    /// <exception cref="NotSupportedException">The device keeps its buffers in device memory.</exception>
    /// <exception cref="ArgumentException">The address is null or misaligned, or the shape has no elements.</exception>
    internal static Tensor MapHost(RetNetDevice device, nint address, TensorDType dtype, int[] shape, IDisposable owner)
    {
        ArgumentNullException.ThrowIfNull(device);
        ArgumentNullException.ThrowIfNull(owner);
        if (!device.IsCpuSimulator)
            throw new NotSupportedException($"{device} keeps its buffers in device memory; only ILGPU's CPU " +
                                            "accelerator reads host memory in place. Upload a copy instead.");
        var size = TensorDTypes.SizeOf(dtype);
        var copy = (int[])shape.Clone();
        var length = ShapeCheck.ElementCount(copy);
        if (address == 0 || address % size != 0)
            throw new ArgumentException($"Argument 'address' 0x{address:x} is not aligned to {size} bytes.",
                nameof(address));
        if (length == 0)
            throw new ArgumentException("Argument 'shape' has no elements; an empty tensor maps nothing.",
                nameof(shape));
        var buffer = device.WrapHost(address, length, size, $"Tensor{ShapeCheck.Format(copy)} {dtype} over {owner}");
        return new Tensor(new Storage(device, buffer, dtype, owner), 0, copy, ownsStorage: true);
    }

    /// <summary>Copies the elements to a new host array (waits for queued work first); 16-bit elements are widened.</summary>
    public float[] ToHost()
    {
        var result = new float[Length];
        if (Length == 0)
            return result;
        if (DType == TensorDType.Float32)
        {
            CopyToHost(result);
            return result;
        }
        var bits = ToHostBits();
        var code = NarrowFloat.CodeOf(DType);
        for (var i = 0; i < bits.Length; i++)
            result[i] = NarrowFloat.ToSingle(bits[i], code);
        return result;
    }

    /// <summary>Copies the elements into <paramref name="destination"/> (row-major, exactly <see cref="Length"/> of them;
    /// waits for queued work first); 16-bit elements are widened.</summary>
    /// <exception cref="ArgumentException">The destination's length differs from <see cref="Length"/>.</exception>
    public void CopyToHost(Span<float> destination)
    {
        ShapeCheck.HostData(destination.Length, shape, nameof(destination));
        if (Length == 0)
            return;
        if (DType != TensorDType.Float32)
        {
            ToHost().CopyTo(destination);
            return;
        }
        // Pinned until the copy has finished: the GC must not move an array the accelerator is writing.
        unsafe
        {
            fixed (float* pinned = destination)
            {
                ReadView.CopyToCPU(Device.Stream, ref *pinned, destination.Length);
                Device.Stream.Synchronize();
            }
        }
    }

    /// <summary>Copies the raw bits of a 16-bit tensor's elements to a new host array.</summary>
    /// <exception cref="NotSupportedException">The tensor is stored as fp32.</exception>
    public ushort[] ToHostBits()
    {
        var view = ReadHalfView;
        var result = new ushort[Length];
        if (Length > 0)
        {
            view.CopyToCPU(Device.Stream, result);
            Device.Stream.Synchronize();
        }
        return result;
    }

    /// <summary>Overwrites the elements with <paramref name="data"/> (row-major), rounded to <see cref="DType"/>.</summary>
    /// <exception cref="ArgumentException">The data length differs from <see cref="Length"/>.</exception>
    public void CopyFromHost(ReadOnlySpan<float> data)
    {
        ShapeCheck.HostData(data.Length, shape, nameof(data));
        if (Length == 0)
            return;
        if (DType == TensorDType.Float32)
        {
            View.CopyFromCPU(Device.Stream, data);
        }
        else
        {
            var code = NarrowFloat.CodeOf(DType);
            var bits = new ushort[data.Length];
            for (var i = 0; i < bits.Length; i++)
                bits[i] = NarrowFloat.FromSingle(data[i], code);
            HalfView.CopyFromCPU(Device.Stream, bits);
        }
        Device.Stream.Synchronize();
    }

    /// <summary>Copies the elements of <paramref name="source"/> (same length and type) into this tensor on the device.
    /// Conversion.Convert copies between types.</summary>
    public void CopyFrom(Tensor source)
    {
        ArgumentNullException.ThrowIfNull(source);
        ShapeCheck.SameDevice(Device, nameof(source), source);
        if (source.Length != Length)
            throw new ArgumentException(
                $"Argument 'source' has shape {ShapeCheck.Format(source.Shape)}; expected {Length} elements like " +
                $"{ShapeCheck.Format(shape)}.", nameof(source));
        if (source.DType != DType)
            throw new ArgumentException(
                $"Argument 'source' is stored as {source.DType}; expected {DType} like this tensor (use " +
                "Conversion.Convert to change the type).", nameof(source));
        if (Length == 0)
            return;
        if (DType == TensorDType.Float32)
            source.ReadView.CopyTo(Device.Stream, View);
        else
            source.ReadHalfView.CopyTo(Device.Stream, HalfView);
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

    /// <summary>One buffer of fp32 elements, or one of 16-bit element bits: allocated on the device, or wrapping
    /// read-only host memory that <see cref="ReadOnly"/> owns.</summary>
    private sealed class Storage : IDisposable
    {
        private readonly MemoryBuffer buffer;

        /// <summary>A device allocation of fp32 elements.</summary>
        public Storage(RetNetDevice device, MemoryBuffer1D<float, Stride1D.Dense> singles, TensorDType dtype)
        {
            (Device, buffer, DType, Singles) = (device, singles, dtype, singles.View);
        }

        /// <summary>A device allocation of 16-bit elements.</summary>
        public Storage(RetNetDevice device, MemoryBuffer1D<ushort, Stride1D.Dense> halves, TensorDType dtype)
        {
            (Device, buffer, DType, Halves) = (device, halves, dtype, halves.View);
        }

        /// <summary>Wrapped host memory that <paramref name="readOnly"/> owns.</summary>
        public Storage(RetNetDevice device, MemoryBuffer wrapped, TensorDType dtype, IDisposable readOnly)
        {
            (Device, buffer, DType, ReadOnly) = (device, wrapped, dtype, readOnly);
            if (dtype == TensorDType.Float32)
                Singles = wrapped.AsArrayView<float>(0, wrapped.Length);
            else
                Halves = wrapped.AsArrayView<ushort>(0, wrapped.Length);
        }

        public RetNetDevice Device { get; }
        public ArrayView<float>? Singles { get; }
        public ArrayView<ushort>? Halves { get; }
        public TensorDType DType { get; }

        /// <summary>The owner of wrapped host memory (disposed with the storage); null for a device allocation.</summary>
        public IDisposable? ReadOnly { get; }

        /// <summary>Writable views taken so far (<see cref="Tensor.WriteCount"/>); counted atomically, as host code
        /// may take them from several threads.</summary>
        public long Writes;

        public bool IsDisposed { get; private set; }

        public void Dispose()
        {
            if (IsDisposed)
                return;
            IsDisposed = true;
            if (ReadOnly is null)
            {
                Device.Free(buffer);
                return;
            }
            Device.Unwrap(buffer);
            ReadOnly.Dispose();
        }
    }
}
