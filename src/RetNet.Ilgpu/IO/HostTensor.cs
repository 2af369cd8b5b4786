using RetNet.Ilgpu.Tensors;

namespace RetNet.Ilgpu.IO;

/// <summary>
/// A named tensor's values on the host, fp32, row-major: what checkpoints and saved states are read into and written
/// from.
/// </summary>
public sealed class HostTensor
{
    /// <summary>Wraps <paramref name="data"/> (not copied) with <paramref name="shape"/>.</summary>
    /// <exception cref="ArgumentException">The data length is not the product of the shape.</exception>
    public HostTensor(int[] shape, float[] data)
    {
        ArgumentNullException.ThrowIfNull(shape);
        ArgumentNullException.ThrowIfNull(data);
        var length = ShapeCheck.ElementCount(shape);
        if (data.Length != length)
            throw new ArgumentException(
                $"Argument 'data' has {data.Length} elements; expected {length} for shape {ShapeCheck.Format(shape)}.",
                nameof(data));
        Shape = (int[])shape.Clone();
        Data = data;
    }

    /// <summary>The dimensions, outermost first.</summary>
    public int[] Shape { get; }

    /// <summary>The values, row-major.</summary>
    public float[] Data { get; }

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
            var data = weights[name].Data;
            var first = -1;
            var count = 0;
            for (var i = 0; i < data.Length; i++)
            {
                if (float.IsFinite(data[i]))
                    continue;
                count++;
                if (first < 0)
                    first = i;
            }
            if (count > 0)
                throw new ArgumentException(
                    $"Argument '{argumentName}' has {data[first]} in {name} at flat index {first} ({count} non-finite " +
                    $"value{(count == 1 ? "" : "s")} in that tensor); expected finite weights. Load with " +
                    "allowNonFiniteWeights: true to inspect such a checkpoint anyway.", argumentName);
        }
    }

    /// <summary>Copies a device tensor to the host.</summary>
    public static HostTensor From(Tensor tensor)
    {
        ArgumentNullException.ThrowIfNull(tensor);
        return new HostTensor(tensor.ShapeArray, tensor.ToHost());
    }

    /// <summary>Copies the values to a new device tensor of the same shape.</summary>
    public Tensor ToDevice(Devices.RetNetDevice device) => Tensor.FromHost(device, Data, Shape);

    /// <inheritdoc/>
    public override string ToString() => $"HostTensor{ShapeCheck.Format(Shape)}";
}
