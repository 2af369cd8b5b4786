using RetNet.Ilgpu.Tensors;

namespace RetNet.Ilgpu.IO;

/// <summary>
/// A named tensor's values on the host, row-major: what checkpoints and saved states are read into and written from.
/// Stored as fp32 values, or as the raw bits of a 16-bit type (a checkpoint's F16/BF16 data, kept as it was so a
/// 16-bit model loads without ever holding an fp32 copy), or as a view of a memory-mapped safetensors file
/// (<see cref="MappedSafetensors"/>), valid while the mapping lives.
/// </summary>
public sealed unsafe class HostTensor
{
    private float[]? data;
    private ushort[]? bits;
    private readonly MappedSafetensors? mapping;
    private readonly long mappedOffset;

    /// <summary>Wraps <paramref name="data"/> (not copied) with <paramref name="shape"/>.</summary>
    /// <exception cref="ArgumentException">The data length is not the product of the shape.</exception>
    public HostTensor(int[] shape, float[] data)
    {
        ArgumentNullException.ThrowIfNull(shape);
        ArgumentNullException.ThrowIfNull(data);
        ShapeCheck.HostData(data.Length, shape, nameof(data));
        Shape = (int[])shape.Clone();
        this.data = data;
        Length = data.Length;
    }

    /// <summary>Wraps the raw 16-bit <paramref name="bits"/> (not copied) of a <paramref name="dtype"/> tensor.</summary>
    /// <exception cref="ArgumentException">The data length is not the product of the shape, or
    /// <paramref name="dtype"/> is Float32.</exception>
    public HostTensor(int[] shape, ushort[] bits, TensorDType dtype)
    {
        ArgumentNullException.ThrowIfNull(shape);
        ArgumentNullException.ThrowIfNull(bits);
        ShapeCheck.SixteenBit(dtype, nameof(dtype));
        ShapeCheck.HostData(bits.Length, shape, nameof(bits));
        Shape = (int[])shape.Clone();
        this.bits = bits;
        DType = dtype;
        Length = bits.Length;
    }

    private HostTensor(SafetensorsEntry entry, MappedSafetensors mapping)
    {
        Shape = (int[])entry.Shape.Clone();
        DType = entry.DType switch
        {
            SafetensorsDType.F16 => TensorDType.Float16,
            SafetensorsDType.BF16 => TensorDType.BFloat16,
            _ => TensorDType.Float32,
        };
        Length = (int)((entry.End - entry.Begin) / TensorDTypes.SizeOf(DType));
        this.mapping = mapping;
        mappedOffset = entry.Begin;
    }

    /// <summary>A view of <paramref name="entry"/>'s bytes in <paramref name="mapping"/> (validated already).</summary>
    internal static HostTensor Mapped(SafetensorsEntry entry, MappedSafetensors mapping) => new(entry, mapping);

    /// <summary>The dimensions, outermost first.</summary>
    public int[] Shape { get; }

    /// <summary>How the values are stored.</summary>
    public TensorDType DType { get; } = TensorDType.Float32;

    /// <summary>The raw bits of a 16-bit tensor; null for fp32. A mapped tensor copies them on first use and keeps
    /// the copy.</summary>
    public ushort[]? Bits => DType == TensorDType.Float32 ? null : bits ??= BitSpan.ToArray();

    /// <summary>The number of elements.</summary>
    public int Length { get; }

    /// <summary>True when the elements are a view of a memory-mapped file (<see cref="MappedSafetensors"/>).</summary>
    public bool IsMapped => mapping is not null;

    /// <summary>The values as fp32, row-major. A 16-bit tensor widens its bits on first use (exact) and keeps the
    /// copy; so does a mapped one.</summary>
    public float[] Data => data ??= DType == TensorDType.Float32 ? DataSpan.ToArray() : Widen(BitSpan, DType);

    /// <summary>An fp32 tensor's values where they lie (the array, or the mapped bytes), without a copy.</summary>
    internal ReadOnlySpan<float> DataSpan => mapping is null
        ? data ??= Widen(bits!, DType)
        : DType == TensorDType.Float32
            ? new ReadOnlySpan<float>((void*)mapping.Address(mappedOffset), Length)
            : Data;

    /// <summary>A 16-bit tensor's bits where they lie (the array, or the mapped bytes), without a copy.</summary>
    internal ReadOnlySpan<ushort> BitSpan => mapping is null
        ? bits
        : new ReadOnlySpan<ushort>((void*)mapping.Address(mappedOffset), Length);

    /// <summary>
    /// A read-only device tensor over the mapped bytes themselves (no copy), or null when that cannot be: the tensor
    /// is not mapped, <paramref name="dtype"/> is not its stored type, the device keeps its buffers in device memory,
    /// the tensor is empty, or its bytes are not aligned to the element size (the caller then copies).
    /// </summary>
    internal Tensor? TryMapToDevice(Devices.RetNetDevice device, TensorDType dtype)
    {
        if (mapping is null || dtype != DType || !device.IsCpuSimulator || Length == 0)
            return null;
        var address = mapping.Address(mappedOffset);
        if (address % TensorDTypes.SizeOf(DType) != 0)
            return null;
        var reference = mapping.Reference();
        try
        {
            return Tensor.MapHost(device, address, DType, Shape, reference);
        }
        catch
        {
            reference.Dispose();
            throw;
        }
    }
    /// <summary>
    /// Refuses weights holding NaN or ±∞: a checkpoint like that loads fine and then produces NaN logits everywhere,
    /// far from the cause. The message names the tensor, the flat index and the value, and counts the others.
    /// </summary>
    /// <exception cref="ArgumentException">A tensor of <paramref name="names"/> holds a non-finite value.</exception>
    public static void RequireFinite(IReadOnlyDictionary<string, HostTensor> weights, IEnumerable<string> names,
        string argumentName = "weights")
    {
        ArgumentNullException.ThrowIfNull(weights);
        ArgumentNullException.ThrowIfNull(names);
        foreach (var name in names)
        {
            var tensor = weights[name];
            var (count, first) = tensor.CountNonFinite();
            if (count > 0)
                throw new ArgumentException(
                    $"Argument '{argumentName}' has {tensor.ValueAt(first)} in {name} at flat index {first} ({count} non-finite " +
                    $"value{(count == 1 ? "" : "s")} in that tensor); expected finite weights. Load with " +
                    "allowNonFiniteWeights: true to inspect such a checkpoint anyway.", argumentName);
        }
    }

    /// <summary>Copies a device tensor to the host, in its own storage type.</summary>
    public static HostTensor From(Tensor tensor)
    {
        ArgumentNullException.ThrowIfNull(tensor);
        return tensor.DType == TensorDType.Float32
            ? new HostTensor(tensor.ShapeArray, tensor.ToHost())
            : new HostTensor(tensor.ShapeArray, tensor.ToHostBits(), tensor.DType);
    }

    /// <summary>
    /// The innermost row at <paramref name="index"/>, one index per leading dimension: <c>Row(b, t)</c> of logits
    /// [B, T, V] is the V logits of token t of sequence b (as fp32).
    /// </summary>
    /// <exception cref="ArgumentException">The index does not have rank − 1 entries, or one is out of range.</exception>
    public ReadOnlySpan<float> Row(params ReadOnlySpan<int> index)
    {
        if (index.Length != Shape.Length - 1)
            throw new ArgumentException(
                $"Argument 'index' has {index.Length} entries; expected {Shape.Length - 1}, one per leading dimension " +
                $"of {ShapeCheck.Format(Shape)}.", nameof(index));
        var offset = 0L;
        for (var i = 0; i < index.Length; i++)
        {
            if ((uint)index[i] >= (uint)Shape[i])
                throw new ArgumentException(
                    $"Argument 'index' has {index[i]} for dimension {i}; expected [0, {Shape[i]}) in " +
                    $"{ShapeCheck.Format(Shape)}.", nameof(index));
            offset = offset * Shape[i] + index[i];
        }
        var width = Shape[^1];
        return Data.AsSpan((int)(offset * width), width);
    }

    /// <summary>The values stored as <paramref name="dtype"/>: this tensor when it already is, else a copy rounded to
    /// nearest (ties to even) for a 16-bit type, or widened exactly for fp32.</summary>
    public HostTensor As(TensorDType dtype)
    {
        if (dtype == DType)
            return this;
        if (dtype == TensorDType.Float32)
            return new HostTensor(Shape, Data);
        var target = NarrowFloat.CodeOf(dtype);
        var bits = new ushort[Length];
        for (var i = 0; i < bits.Length; i++)
            bits[i] = NarrowFloat.FromSingle(ValueAt(i), target);
        return new HostTensor(Shape, bits, dtype);
    }

    /// <summary>Copies the values to a new device tensor of the same shape and storage type.</summary>
    public Tensor ToDevice(Devices.RetNetDevice device) => ToDevice(device, DType);

    /// <summary>Copies the values to a new device tensor stored as <paramref name="dtype"/>: 16-bit bits of that type
    /// go as they are, anything else is rounded on the host (nearest, ties to even), so no wider copy reaches the
    /// device.</summary>
    public Tensor ToDevice(Devices.RetNetDevice device, TensorDType dtype)
    {
        if (DType != TensorDType.Float32 && dtype == DType)
            return Tensor.FromHostBits(device, BitSpan, dtype, Shape);
        if (DType != TensorDType.Float32 && dtype != TensorDType.Float32)
        {
            var source = BitSpan;
            var code = NarrowFloat.CodeOf(DType);
            var target = NarrowFloat.CodeOf(dtype);
            var recoded = new ushort[source.Length];
            for (var i = 0; i < recoded.Length; i++)
                recoded[i] = NarrowFloat.FromSingle(NarrowFloat.ToSingle(source[i], code), target);
            return Tensor.FromHostBits(device, recoded, dtype, Shape);
        }
        return Tensor.FromHost(device, DType == TensorDType.Float32 ? DataSpan : Data, dtype, Shape);
    }

    /// <summary>How many elements are NaN or ±∞, and the flat index of the first (−1 when none).</summary>
    private (int Count, int First) CountNonFinite()
    {
        var (count, first) = (0, -1);
        if (DType == TensorDType.Float32)
        {
            var values = DataSpan;
            for (var i = 0; i < values.Length; i++)
            {
                if (float.IsFinite(values[i]))
                    continue;
                count++;
                if (first < 0)
                    first = i;
            }
            return (count, first);
        }
        var elements = BitSpan;
        var infinity = DType == TensorDType.BFloat16 ? 0x7F80 : 0x7C00;
        for (var i = 0; i < elements.Length; i++)
        {
            if ((elements[i] & 0x7FFF) < infinity)
                continue;
            count++;
            if (first < 0)
                first = i;
        }
        return (count, first);
    }

    private float ValueAt(int i) => DType != TensorDType.Float32
        ? NarrowFloat.ToSingle(BitSpan[i], NarrowFloat.CodeOf(DType))
        : DataSpan[i];

    private static float[] Widen(ReadOnlySpan<ushort> bits, TensorDType dtype)
    {
        var code = NarrowFloat.CodeOf(dtype);
        var values = new float[bits.Length];
        for (var i = 0; i < values.Length; i++)
            values[i] = NarrowFloat.ToSingle(bits[i], code);
        return values;
    }

    /// <inheritdoc/>
    public override string ToString() => $"HostTensor{ShapeCheck.Format(Shape)} {DType}";
}
