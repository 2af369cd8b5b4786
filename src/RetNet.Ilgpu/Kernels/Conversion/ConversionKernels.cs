using ILGPU;
using RetNet.Ilgpu.Tensors;

namespace RetNet.Ilgpu.Kernels.Conversion;

/// <summary>Elementwise conversions between fp32 and 16-bit storage (<see cref="NarrowFloat"/> codes).</summary>
internal static class ConversionKernels
{
    /// <summary>output[i] = round(input[i]) to the 16-bit type <paramref name="code"/>, nearest even.</summary>
    [Kernel(KernelGrouping.Implicit)]
    public static void Narrow(Index1D thread, ArrayView<float> input, ArrayView<ushort> output, int code, Spread spread)
    {
        for (var start = spread.First(thread); start < spread.Count; start += spread.Step)
        {
            var end = spread.End(start);
            for (var i = start; i < end; i++)
                output[i] = NarrowFloat.FromSingle(input[i], code);
        }
    }

    /// <summary>output[i] = input[i] widened from the 16-bit type <paramref name="code"/> (exact).</summary>
    [Kernel(KernelGrouping.Implicit)]
    public static void Widen(Index1D thread, ArrayView<ushort> input, ArrayView<float> output, int code, Spread spread)
    {
        for (var start = spread.First(thread); start < spread.Count; start += spread.Step)
        {
            var end = spread.End(start);
            for (var i = start; i < end; i++)
                output[i] = NarrowFloat.ToSingle(input[i], code);
        }
    }

    /// <summary>output[i] = input[i] re-rounded from one 16-bit type (<paramref name="fromCode"/>) to the other.</summary>
    [Kernel(KernelGrouping.Implicit)]
    public static void Recode(Index1D thread, ArrayView<ushort> input, ArrayView<ushort> output, int fromCode,
        Spread spread)
    {
        var toCode = fromCode == NarrowFloat.BFloat16Code ? NarrowFloat.Float16Code : NarrowFloat.BFloat16Code;
        for (var start = spread.First(thread); start < spread.Count; start += spread.Step)
        {
            var end = spread.End(start);
            for (var i = start; i < end; i++)
                output[i] = NarrowFloat.FromSingle(NarrowFloat.ToSingle(input[i], fromCode), toCode);
        }
    }
}
