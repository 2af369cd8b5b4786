using ILGPU;
using ILGPU.Runtime;
using RetNet.Ilgpu.Tensors;

namespace RetNet.Ilgpu.Kernels.Conversion;

/// <summary>
/// Copies a tensor into a tensor of another storage type on the device: narrowing rounds to nearest (ties to even,
/// fp16 overflowing to ±∞), widening is exact. How fp32 master weights become the bf16/fp16 copies a narrow model
/// reads, and how a 16-bit result is inspected in fp32.
/// </summary>
public static class Conversion
{
    /// <summary>destination = <paramref name="source"/> converted to destination's type; the same type copies.</summary>
    /// <exception cref="ArgumentException">The shapes differ, the tensors live on different devices, or they share
    /// storage.</exception>
    public static void Convert(Tensor source, Tensor destination)
    {
        ArgumentNullException.ThrowIfNull(source);
        ArgumentNullException.ThrowIfNull(destination);
        ShapeCheck.SameDevice(source.Device, nameof(destination), destination);
        ShapeCheck.Same(destination, nameof(destination), source, nameof(source));
        if (source.DType == destination.DType)
        {
            if (!destination.IsSameViewAs(source))
                destination.CopyFrom(source);
            return;
        }
        ShapeCheck.Distinct(destination, nameof(destination), source, nameof(source));
        if (source.Length == 0)
            return;
        var device = source.Device;
        var spread = Launch.Spread(device, source.Length);
        if (source.DType == TensorDType.Float32)
        {
            var kernel = device.Kernel(ConversionKernels.Narrow, accelerator =>
                accelerator.LoadAutoGroupedKernel<Index1D, ArrayView<float>, ArrayView<ushort>, int, Spread>(
                    ConversionKernels.Narrow));
            kernel(device.Stream, spread.Threads, source.ReadView, destination.HalfView,
                NarrowFloat.CodeOf(destination.DType), spread);
        }
        else if (destination.DType == TensorDType.Float32)
        {
            var kernel = device.Kernel(ConversionKernels.Widen, accelerator =>
                accelerator.LoadAutoGroupedKernel<Index1D, ArrayView<ushort>, ArrayView<float>, int, Spread>(
                    ConversionKernels.Widen));
            kernel(device.Stream, spread.Threads, source.ReadHalfView, destination.View, NarrowFloat.CodeOf(source.DType),
                spread);
        }
        else
        {
            var kernel = device.Kernel(ConversionKernels.Recode, accelerator =>
                accelerator.LoadAutoGroupedKernel<Index1D, ArrayView<ushort>, ArrayView<ushort>, int, Spread>(
                    ConversionKernels.Recode));
            kernel(device.Stream, spread.Threads, source.ReadHalfView, destination.HalfView,
                NarrowFloat.CodeOf(source.DType), spread);
        }
    }

    /// <summary>A new tensor of <paramref name="dtype"/> holding <paramref name="source"/> converted; the caller
    /// disposes it.</summary>
    public static Tensor To(Tensor source, TensorDType dtype)
    {
        ArgumentNullException.ThrowIfNull(source);
        var result = Tensor.Uninitialized(source.Device, dtype, source.ShapeArray);
        try
        {
            Convert(source, result);
            return result;
        }
        catch
        {
            result.Dispose();
            throw;
        }
    }
}
