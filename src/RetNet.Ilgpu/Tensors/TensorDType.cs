namespace RetNet.Ilgpu.Tensors;

/// <summary>
/// The storage type of a tensor's elements. Arithmetic always runs in fp32: kernels widen 16-bit elements as they
/// load them and accumulate in fp32, so a 16-bit type halves memory and bandwidth, not precision of the sums.
/// </summary>
public enum TensorDType
{
    /// <summary>IEEE 754 binary32.</summary>
    Float32,

    /// <summary>IEEE 754 binary16: 10-bit mantissa, range ±65504 (values beyond round to ±∞).</summary>
    Float16,

    /// <summary>bfloat16: the upper 16 bits of a binary32 (fp32's range, 7-bit mantissa).</summary>
    BFloat16,
}

/// <summary>Facts about <see cref="TensorDType"/> values and their names on a command line.</summary>
public static class TensorDTypes
{
    /// <summary>The accepted spellings, in the order they are documented.</summary>
    public static IReadOnlyList<string> Names { get; } = ["fp32", "fp16", "bf16"];

    /// <summary>Bytes per element.</summary>
    public static int SizeOf(TensorDType dtype) => dtype == TensorDType.Float32 ? 4 : 2;

    /// <summary>The short name: <c>fp32</c>, <c>fp16</c> or <c>bf16</c>.</summary>
    public static string Name(TensorDType dtype) => dtype switch
    {
        TensorDType.Float32 => "fp32",
        TensorDType.Float16 => "fp16",
        TensorDType.BFloat16 => "bf16",
        _ => throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "Expected Float32, Float16 or BFloat16."),
    };

    /// <summary>Parses <c>fp32</c>, <c>fp16</c> or <c>bf16</c> (also <c>float32</c>, <c>float16</c>, <c>bfloat16</c>,
    /// <c>f32</c>, <c>f16</c>; case-insensitive).</summary>
    /// <exception cref="ArgumentException">The text is none of those names.</exception>
    public static TensorDType Parse(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        return text.Trim().ToLowerInvariant() switch
        {
            "fp32" or "float32" or "f32" => TensorDType.Float32,
            "fp16" or "float16" or "f16" or "half" => TensorDType.Float16,
            "bf16" or "bfloat16" => TensorDType.BFloat16,
            _ => throw new ArgumentException(
                $"Argument 'text' is '{text}'; expected one of {string.Join(", ", Names)}.", nameof(text)),
        };
    }

    /// <summary><paramref name="value"/> rounded to the nearest value <paramref name="dtype"/> holds (ties to even),
    /// returned as fp32: what storing it in a tensor of that type keeps.</summary>
    public static float Round(float value, TensorDType dtype) => dtype switch
    {
        TensorDType.Float32 => value,
        TensorDType.Float16 => NarrowFloat.HalfToSingle(NarrowFloat.SingleToHalf(value)),
        TensorDType.BFloat16 => NarrowFloat.BFloat16ToSingle(NarrowFloat.SingleToBFloat16(value)),
        _ => throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "Expected Float32, Float16 or BFloat16."),
    };
}
