using ILGPU;
using RetNet.Ilgpu.Tensors;

namespace RetNet.Ilgpu.Kernels;

/// <summary>
/// A tensor's elements as a kernel reads them, whatever their storage: fp32 read directly, fp16 or bf16 widened as
/// they are loaded (exact), so arithmetic stays fp32. The storage type is a run-time code, uniform across a launch, so
/// one kernel serves every type at the cost of a branch every thread takes the same way. The view of the other kind
/// is the device's one-element placeholder, never read.
/// </summary>
internal readonly struct FloatSource
{
    /// <summary>The elements of an fp32 tensor (the placeholder otherwise).</summary>
    public readonly ArrayView<float> Singles;

    /// <summary>The raw bits of a 16-bit tensor (the placeholder otherwise).</summary>
    public readonly ArrayView<ushort> Halves;

    /// <summary><see cref="NarrowFloat.Float32Code"/>, <see cref="NarrowFloat.Float16Code"/> or
    /// <see cref="NarrowFloat.BFloat16Code"/>.</summary>
    public readonly int Code;

    /// <summary>A source over raw views: <paramref name="singles"/> read when <paramref name="code"/> is fp32,
    /// <paramref name="halves"/> otherwise (the other view is never read but must be a valid view).</summary>
    internal FloatSource(ArrayView<float> singles, ArrayView<ushort> halves, int code)
    {
        Singles = singles;
        Halves = halves;
        Code = code;
    }

    /// <summary>Element <paramref name="index"/> as fp32.</summary>
    public float this[long index] =>
        Code == NarrowFloat.Float32Code ? Singles[index] : NarrowFloat.ToSingle(Halves[index], Code);

    /// <summary>The source that reads <paramref name="tensor"/>.</summary>
    public static FloatSource Of(Tensor tensor) => tensor.DType == TensorDType.Float32
        ? new FloatSource(tensor.ReadView, tensor.Device.Placeholders.Halves, NarrowFloat.Float32Code)
        : new FloatSource(tensor.Device.Placeholders.Singles, tensor.ReadHalfView, NarrowFloat.CodeOf(tensor.DType));
}
