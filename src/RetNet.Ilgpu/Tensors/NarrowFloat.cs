using ILGPU;

namespace RetNet.Ilgpu.Tensors;

/// <summary>
/// Conversions between fp32 and the 16-bit storage types, written with integer operations only so the same code runs
/// inside kernels (ILGPU has no bfloat16 type, and System.Half's conversions are not kernel code) and on the host.
/// Narrowing rounds to nearest, ties to even; NaN stays NaN (quiet), ±∞ stays ±∞; fp16 overflows to ±∞ and keeps
/// subnormals. 16-bit values travel as their raw bits in a ushort.
/// </summary>
internal static class NarrowFloat
{
    /// <summary>The runtime code of a storage type inside kernels (<see cref="ToSingle"/>).</summary>
    public const int Float32Code = 0;

    /// <inheritdoc cref="Float32Code"/>
    public const int Float16Code = 1;

    /// <inheritdoc cref="Float32Code"/>
    public const int BFloat16Code = 2;

    /// <summary>The kernel code of <paramref name="dtype"/>.</summary>
    public static int CodeOf(TensorDType dtype) => dtype switch
    {
        TensorDType.Float16 => Float16Code,
        TensorDType.BFloat16 => BFloat16Code,
        _ => Float32Code,
    };

    /// <summary>Widens 16-bit <paramref name="bits"/> of the type <paramref name="code"/> (Float16Code or
    /// BFloat16Code) to fp32.</summary>
    public static float ToSingle(ushort bits, int code) =>
        code == BFloat16Code ? BFloat16ToSingle(bits) : HalfToSingle(bits);

    /// <summary>Narrows <paramref name="value"/> to the 16-bit type <paramref name="code"/>.</summary>
    public static ushort FromSingle(float value, int code) =>
        code == BFloat16Code ? SingleToBFloat16(value) : SingleToHalf(value);

    /// <summary>bfloat16 is fp32's upper half: widening is a shift.</summary>
    public static float BFloat16ToSingle(ushort bits) => Interop.IntAsFloat((uint)bits << 16);

    /// <summary>fp32 to bfloat16, round to nearest even.</summary>
    public static ushort SingleToBFloat16(float value)
    {
        var x = Interop.FloatAsInt(value);
        if ((x & 0x7FFF_FFFFu) > 0x7F80_0000u)
            return (ushort)((x >> 16) | 0x0040u); // NaN: keep sign and payload's top, force quiet
        // Adding 0x7FFF plus the lowest kept bit rounds half to even; a carry into the exponent is the right result
        // (up to +∞ for the largest finite values).
        var rounded = x + 0x7FFFu + ((x >> 16) & 1u);
        return (ushort)(rounded >> 16);
    }

    /// <summary>IEEE binary16 to fp32 (exact).</summary>
    public static float HalfToSingle(ushort bits)
    {
        var sign = (uint)(bits & 0x8000) << 16;
        var exponent = (bits >> 10) & 0x1F;
        var mantissa = (uint)(bits & 0x3FF);
        if (exponent == 0x1F)
            return Interop.IntAsFloat(sign | 0x7F80_0000u | (mantissa << 13)); // ∞ or NaN (payload kept)
        if (exponent != 0)
            return Interop.IntAsFloat(sign | ((uint)(exponent + 112) << 23) | (mantissa << 13));
        // Zero or subnormal: mantissa · 2^-24, exact in fp32.
        var magnitude = mantissa * 5.9604645e-8f;
        return sign != 0 ? -magnitude : magnitude;
    }

    /// <summary>fp32 to IEEE binary16, round to nearest even; beyond ±65504 (after rounding) gives ±∞.</summary>
    public static ushort SingleToHalf(float value)
    {
        var x = Interop.FloatAsInt(value);
        var sign = (x >> 16) & 0x8000u;
        var magnitude = x & 0x7FFF_FFFFu;
        if (magnitude > 0x7F80_0000u)
            return (ushort)(sign | 0x7E00u | ((magnitude >> 13) & 0x3FFu)); // NaN, quiet
        if (magnitude >= 0x4780_0000u)
            return (ushort)(sign | 0x7C00u); // ≥ 65536 (or ∞): overflows whatever the rounding
        if (magnitude >= 0x3880_0000u)
        {
            // Normal range (≥ 2^-14): rebias the exponent, round the 13 dropped bits half to even. A carry out of the
            // mantissa increments the exponent, which is right, up to 0x7C00 (∞) for values above 65504.
            var rebased = magnitude - 0x3800_0000u;
            var rounded = rebased + 0x0FFFu + ((rebased >> 13) & 1u);
            return (ushort)(sign | (rounded >> 13));
        }
        if (magnitude < 0x3300_0000u)
            return (ushort)sign; // below half the smallest subnormal (2^-25): rounds to zero
        // Subnormal result: shift the full 24-bit significand so its units are 2^-24, rounding half to even.
        var exponent = (int)(magnitude >> 23);
        var significand = (magnitude & 0x7F_FFFFu) | 0x80_0000u;
        var shift = 126 - exponent; // 14..24 for exponents 102..112
        var kept = significand >> shift;
        var rest = significand & ((1u << shift) - 1u);
        var half = 1u << (shift - 1);
        if (rest > half || (rest == half && (kept & 1u) != 0))
            kept++;
        return (ushort)(sign | kept);
    }
}
