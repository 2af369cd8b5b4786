using RetNet.Ilgpu.Tensors;

namespace RetNet.Ilgpu.IO;

/// <summary>
/// A named tensor's values on the host, row-major: what checkpoints and saved states are read into and written from.
/// Stored as fp32 values, or as the raw bits of a 16-bit type (a checkpoint's F16/BF16 data, kept as it was so a
/// 16-bit model loads without ever holding an fp32 copy).
/// </summary>
public sealed class HostTensor
{
    private float[]? data;

    /// <summary>Wraps <paramref name="data"/> (not copied) with <paramref name="shape"/>.</summary>
    /// <exception cref="ArgumentException">The data length is not the product of the shape.</exception>
    public HostTensor(int[] shape, float[] data)
    {
        ArgumentNullException.ThrowIfNull(shape);
        ArgumentNullException.ThrowIfNull(data);
        ShapeCheck.HostData(data.Length, shape, nameof(data));
        Shape = (int[])shape.Clone();
        this.data = data;
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
        Bits = bits;
        DType = dtype;
    }

    /// <summary>The dimensions, outermost first.</summary>
    public int[] Shape { get; }

    /// <summary>How the values are stored.</summary>
    public TensorDType DType { get; } = TensorDType.Float32;

    /// <summary>The raw bits of a 16-bit tensor; null for fp32.</summary>
    public ushort[]? Bits { get; }

    /// <summary>The number of elements.</summary>
    public int Length => Bits?.Length ?? data!.Length;

    /// <summary>The values as fp32, row-major. A 16-bit tensor widens its bits on first use (exact) and keeps the
    /// copy.</summary>
    public float[] Data => data ??= Widen(Bits!, DType);

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
            var first = -1;
            var count = 0;
            for (var i = 0; i < tensor.Length; i++)
            {
                if (tensor.IsFinite(i))
                    continue;
                count++;
                if (first < 0)
                    first = i;
            }
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
        if (Bits is not null && dtype == DType)
            return Tensor.FromHostBits(device, Bits, dtype, Shape);
        if (Bits is not null && dtype != TensorDType.Float32)
        {
            var code = NarrowFloat.CodeOf(DType);
            var target = NarrowFloat.CodeOf(dtype);
            var recoded = new ushort[Bits.Length];
            for (var i = 0; i < recoded.Length; i++)
                recoded[i] = NarrowFloat.FromSingle(NarrowFloat.ToSingle(Bits[i], code), target);
            return Tensor.FromHostBits(device, recoded, dtype, Shape);
        }
        return Tensor.FromHost(device, Data, dtype, Shape);
    }

    private bool IsFinite(int i) => Bits is { } bits
        ? (bits[i] & 0x7FFF) < (DType == TensorDType.BFloat16 ? 0x7F80 : 0x7C00)
        : float.IsFinite(data![i]);

    private float ValueAt(int i) => Bits is { } bits ? NarrowFloat.ToSingle(bits[i], NarrowFloat.CodeOf(DType)) : data![i];

    private static float[] Widen(ushort[] bits, TensorDType dtype)
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
