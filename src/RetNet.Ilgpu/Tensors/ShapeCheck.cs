namespace RetNet.Ilgpu.Tensors;

/// <summary>
/// The one place shapes are checked. Every error names the argument, the expected and the actual shape, and is raised
/// before anything is written.
/// </summary>
public static class ShapeCheck
{
    /// <summary>Marks a dimension of an expected shape that may take any size.</summary>
    public const int Any = -1;

    /// <summary>Formats a shape as <c>[2, 3, 4]</c>; <see cref="Any"/> prints as <c>*</c>.</summary>
    public static string Format(ReadOnlySpan<int> shape)
    {
        var parts = new string[shape.Length];
        for (var i = 0; i < shape.Length; i++)
            parts[i] = shape[i] == Any ? "*" : shape[i].ToString(System.Globalization.CultureInfo.InvariantCulture);
        return "[" + string.Join(", ", parts) + "]";
    }

    /// <summary>Requires <paramref name="tensor"/> to have exactly <paramref name="expected"/> (with <see cref="Any"/> wildcards).</summary>
    /// <exception cref="ArgumentException">The rank or a dimension differs.</exception>
    public static void Expect(Tensor tensor, string argument, params int[] expected) =>
        Expect(tensor.Shape, argument, expected);

    /// <summary>Requires <paramref name="actual"/> to match <paramref name="expected"/> (with <see cref="Any"/> wildcards).</summary>
    /// <exception cref="ArgumentException">The rank or a dimension differs.</exception>
    public static void Expect(ReadOnlySpan<int> actual, string argument, params int[] expected)
    {
        var ok = actual.Length == expected.Length;
        for (var i = 0; ok && i < expected.Length; i++)
            ok = expected[i] == Any || expected[i] == actual[i];
        if (!ok)
            throw new ArgumentException(
                $"Argument '{argument}' has shape {Format(actual)}; expected {Format(expected)}.", argument);
    }

    /// <summary>Requires <paramref name="tensor"/> to have rank <paramref name="rank"/>.</summary>
    /// <exception cref="ArgumentException">The rank differs.</exception>
    public static void Rank(Tensor tensor, string argument, int rank)
    {
        if (tensor.Rank != rank)
            throw new ArgumentException(
                $"Argument '{argument}' has shape {Format(tensor.Shape)} of rank {tensor.Rank}; expected rank {rank}.",
                argument);
    }

    /// <summary>Requires two tensors to have the same shape.</summary>
    /// <exception cref="ArgumentException">The shapes differ; names <paramref name="argument"/>.</exception>
    public static void Same(Tensor tensor, string argument, Tensor reference, string referenceName)
    {
        if (!tensor.Shape.SequenceEqual(reference.Shape))
            throw new ArgumentException(
                $"Argument '{argument}' has shape {Format(tensor.Shape)}; expected the shape of '{referenceName}', " +
                $"{Format(reference.Shape)}.", argument);
    }

    /// <summary>Requires every tensor to live on <paramref name="device"/>.</summary>
    /// <exception cref="ArgumentException">A tensor belongs to another device.</exception>
    public static void SameDevice(Devices.RetNetDevice device, string argument, Tensor tensor)
    {
        if (!ReferenceEquals(tensor.Device, device))
            throw new ArgumentException(
                $"Argument '{argument}' lives on {tensor.Device}; expected a tensor of {device}.", argument);
    }

    /// <summary>Requires an index tensor to live on <paramref name="device"/>.</summary>
    /// <exception cref="ArgumentException">It belongs to another device.</exception>
    public static void SameDevice(Devices.RetNetDevice device, string argument, IndexTensor tensor)
    {
        if (!ReferenceEquals(tensor.Device, device))
            throw new ArgumentException(
                $"Argument '{argument}' lives on {tensor.Device}; expected a tensor of {device}.", argument);
    }

    /// <summary>The multi-index of row-major position <paramref name="flat"/> in <paramref name="shape"/>, as <c>[i, j, …]</c>.</summary>
    public static string FormatIndex(int flat, ReadOnlySpan<int> shape)
    {
        var index = new int[shape.Length];
        for (var d = shape.Length - 1; d >= 0; d--)
        {
            index[d] = flat % shape[d];
            flat /= shape[d];
        }
        return Format(index);
    }

    /// <summary>Requires two tensors not to share storage (an output that aliases an input would be read half-written).</summary>
    /// <exception cref="ArgumentException">They share storage.</exception>
    public static void Distinct(Tensor output, string outputName, Tensor input, string inputName)
    {
        if (output.Overlaps(input))
            throw new ArgumentException(
                $"Argument '{outputName}' shares storage with '{inputName}'; the operation needs distinct tensors.",
                outputName);
    }

    /// <summary>
    /// For elementwise operations: the output may be exactly an input (in place) or distinct from it, never a shifted
    /// view of the same storage (a thread would read an element another thread already overwrote).
    /// </summary>
    /// <exception cref="ArgumentException">The two overlap partially.</exception>
    public static void DistinctOrSame(Tensor output, string outputName, Tensor input, string inputName)
    {
        if (output.Overlaps(input) && !output.IsSameViewAs(input))
            throw new ArgumentException(
                $"Argument '{outputName}' partially overlaps '{inputName}'; expected the same tensor (in place) or a " +
                "distinct one.", outputName);
    }

    /// <summary>
    /// Refuses, before anything is allocated or launched, work whose <paramref name="what"/> would hold more elements
    /// than a tensor can (2³¹ − 1: every kernel indexes in 32 bits), naming the argument, the tensor and the sizes.
    /// </summary>
    /// <exception cref="ArgumentException"><paramref name="rows"/> · <paramref name="columns"/> exceeds
    /// <see cref="int.MaxValue"/>.</exception>
    public static void FitsOneTensor(long rows, long columns, string what, string argument)
    {
        var count = rows * columns;
        if (rows < 0 || columns < 0 || count > int.MaxValue || (columns != 0 && count / columns != rows))
            throw new ArgumentException(
                $"Argument '{argument}' needs {what} of {rows} × {columns} = {(decimal)rows * columns} elements; a tensor " +
                $"holds at most {int.MaxValue} (32-bit indexing): split the batch or the sequence.", argument);
    }

    /// <summary>The number of elements of <paramref name="shape"/>, validating every dimension.</summary>
    /// <exception cref="ArgumentException">A dimension is negative or the product exceeds <see cref="int.MaxValue"/>.</exception>
    public static int ElementCount(ReadOnlySpan<int> shape, string argument = "shape")
    {
        long count = 1;
        foreach (var dim in shape)
        {
            if (dim < 0)
                throw new ArgumentException(
                    $"Argument '{argument}' {Format(shape)} has a negative dimension; expected sizes ≥ 0.", argument);
            count *= dim;
            if (count > int.MaxValue)
                throw new ArgumentException(
                    $"Argument '{argument}' {Format(shape)} has more than {int.MaxValue} elements.", argument);
        }
        return (int)count;
    }

    /// <summary>Checks that host data of <paramref name="dataLength"/> elements fills <paramref name="shape"/>; returns
    /// the element count.</summary>
    /// <exception cref="ArgumentException">The lengths differ (names <paramref name="argument"/>, both counts and the
    /// shape), or the shape is invalid.</exception>
    public static int HostData(int dataLength, ReadOnlySpan<int> shape, string argument)
    {
        var length = ElementCount(shape);
        if (dataLength != length)
            throw new ArgumentException(
                $"Argument '{argument}' has {dataLength} elements; expected {length} for shape {Format(shape)}.", argument);
        return length;
    }

    /// <summary>Checks that <paramref name="dtype"/> is one of the 16-bit storage types, for raw 16-bit data.</summary>
    /// <exception cref="ArgumentException">It is not.</exception>
    public static void SixteenBit(TensorDType dtype, string argument)
    {
        if (dtype is not (TensorDType.Float16 or TensorDType.BFloat16))
            throw new ArgumentException($"Argument '{argument}' is {dtype}; expected Float16 or BFloat16 for raw 16-bit data.",
                argument);
    }

    /// <summary>
    /// Checks the per-head operands of a retention or attention call: q, k [B, T, H, Dk] and v [B, T, H, Dv] on one
    /// device, with B, H, Dk, Dv ≥ 1 and T ≥ 1 (T ≥ 0 when <paramref name="allowEmptySequence"/>).
    /// </summary>
    /// <returns>(B, T, H, Dk, Dv).</returns>
    /// <exception cref="ArgumentException">A shape or a device is wrong; names the argument.</exception>
    internal static (int Batch, int SeqLen, int Heads, int KeyDim, int ValueDim) HeadOperands(Tensor q, Tensor k,
        Tensor v, bool allowEmptySequence)
    {
        ArgumentNullException.ThrowIfNull(q);
        ArgumentNullException.ThrowIfNull(k);
        ArgumentNullException.ThrowIfNull(v);
        SameDevice(q.Device, nameof(k), k);
        SameDevice(q.Device, nameof(v), v);
        Rank(q, nameof(q), 4);
        if (q.Dim(0) == 0 || q.Dim(2) == 0 || q.Dim(3) == 0 || (q.Dim(1) == 0 && !allowEmptySequence))
            throw new ArgumentException(
                $"Argument 'q' has shape {Format(q.Shape)}; expected [B, T, H, Dk] with " +
                $"{(allowEmptySequence ? "B, H, Dk" : "every size")} ≥ 1.", nameof(q));
        Expect(k, nameof(k), q.ShapeArray);
        Expect(v, nameof(v), q.Dim(0), q.Dim(1), q.Dim(2), Any);
        if (v.Dim(3) == 0)
            throw new ArgumentException(
                $"Argument 'v' has shape {Format(v.Shape)}; expected [B, T, H, Dv] with Dv ≥ 1.", nameof(v));
        return (q.Dim(0), q.Dim(1), q.Dim(2), q.Dim(3), v.Dim(3));
    }

    /// <summary>Requires a tensor of the given shape on the device of <paramref name="input"/>.</summary>
    /// <exception cref="ArgumentNullException"><paramref name="tensor"/> is null.</exception>
    /// <exception cref="ArgumentException">It lives on another device or has another shape.</exception>
    internal static void Required(Tensor? tensor, string argument, Tensor input, int[] expected)
    {
        ArgumentNullException.ThrowIfNull(tensor, argument);
        SameDevice(input.Device, argument, tensor);
        Expect(tensor, argument, expected);
    }

    /// <summary>
    /// Requires every output to share no storage with any input or with another output (absent ones are skipped):
    /// each kernel reads its inputs while writing its outputs.
    /// </summary>
    /// <exception cref="ArgumentException">Two tensors overlap; names the output.</exception>
    internal static void NoAliasing(
        IEnumerable<(Tensor? Tensor, string Name)> outputs, IEnumerable<(Tensor? Tensor, string Name)> inputs)
    {
        var outs = outputs.Where(o => o.Tensor is not null).ToList();
        var ins = inputs.Where(i => i.Tensor is not null).ToList();
        for (var i = 0; i < outs.Count; i++)
        {
            foreach (var input in ins)
                Distinct(outs[i].Tensor!, outs[i].Name, input.Tensor!, input.Name);
            for (var j = 0; j < i; j++)
                Distinct(outs[i].Tensor!, outs[i].Name, outs[j].Tensor!, outs[j].Name);
        }
    }
}
