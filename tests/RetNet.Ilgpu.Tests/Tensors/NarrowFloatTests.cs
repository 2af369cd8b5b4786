using RetNet.Ilgpu.Tensors;

namespace RetNet.Ilgpu.Tests.Tensors;

/// <summary>
/// The 16-bit conversions kernels and host share, held to independent references: .NET's System.Half for fp16 (every
/// bit pattern widened, and narrowing of edge and random values), and for bf16 a rule written as distances in double
/// (the nearer of the two neighbouring bf16 values, ties to the even one), not as the bit trick the code uses.
/// </summary>
public sealed class NarrowFloatTests
{
    [Fact]
    public void Every_fp16_bit_pattern_widens_like_System_Half()
    {
        for (var bits = 0; bits <= ushort.MaxValue; bits++)
        {
            var expected = (float)BitConverter.UInt16BitsToHalf((ushort)bits);
            var actual = NarrowFloat.HalfToSingle((ushort)bits);
            if (float.IsNaN(expected))
                Assert.True(float.IsNaN(actual), $"0x{bits:X4} should widen to NaN, got {actual}");
            else
                Assert.Equal(BitConverter.SingleToUInt32Bits(expected), BitConverter.SingleToUInt32Bits(actual));
        }
    }

    [Fact]
    public void Every_bf16_bit_pattern_widens_to_its_upper_half()
    {
        for (var bits = 0; bits <= ushort.MaxValue; bits++)
            Assert.Equal((uint)bits << 16, BitConverter.SingleToUInt32Bits(NarrowFloat.BFloat16ToSingle((ushort)bits)));
    }

    [Fact]
    public void Narrowing_to_fp16_rounds_like_System_Half()
    {
        foreach (var value in Probes())
        {
            var expected = BitConverter.HalfToUInt16Bits((Half)value);
            var actual = NarrowFloat.SingleToHalf(value);
            if (float.IsNaN(value))
                Assert.True(Half.IsNaN(BitConverter.UInt16BitsToHalf(actual)), $"NaN 0x{BitConverter.SingleToUInt32Bits(value):X8}");
            else
                Assert.True(expected == actual,
                    $"{value:R} (0x{BitConverter.SingleToUInt32Bits(value):X8}): expected 0x{expected:X4}, got 0x{actual:X4}");
        }
    }

    [Fact]
    public void Narrowing_to_bf16_picks_the_nearer_neighbour_with_ties_to_even()
    {
        foreach (var value in Probes())
        {
            var actual = NarrowFloat.SingleToBFloat16(value);
            if (float.IsNaN(value))
            {
                Assert.True(float.IsNaN(NarrowFloat.BFloat16ToSingle(actual)), $"NaN 0x{BitConverter.SingleToUInt32Bits(value):X8}");
                continue;
            }
            var expected = BFloat16ByDistance(value);
            Assert.True(expected == actual,
                $"{value:R} (0x{BitConverter.SingleToUInt32Bits(value):X8}): expected 0x{expected:X4}, got 0x{actual:X4}");
        }
    }

    [Fact]
    public void The_references_reject_truncation()
    {
        // Negative control: chopping the low bits (what a careless conversion does) must disagree with both references.
        var values = Probes().Where(float.IsFinite).ToArray();
        Assert.Contains(values, v => (ushort)(BitConverter.SingleToUInt32Bits(v) >> 16) != BFloat16ByDistance(v));
        Assert.Contains(values, v => NarrowFloat.SingleToHalf(TruncateToHalfPrecision(v)) != BitConverter.HalfToUInt16Bits((Half)v));
    }

    [Fact]
    public void Round_keeps_what_a_tensor_of_the_type_stores()
    {
        Assert.Equal(1f + 1f / 1024, TensorDTypes.Round(1f + 1f / 1024, TensorDType.Float16));
        Assert.Equal(1f, TensorDTypes.Round(1f + 1f / 1024, TensorDType.BFloat16));
        Assert.Equal(float.PositiveInfinity, TensorDTypes.Round(70000f, TensorDType.Float16));
        Assert.Equal(70144f, TensorDTypes.Round(70000f, TensorDType.BFloat16));
        Assert.Equal(0.1f, TensorDTypes.Round(0.1f, TensorDType.Float32));
    }

    [Theory]
    [InlineData("fp32", TensorDType.Float32)]
    [InlineData("BF16", TensorDType.BFloat16)]
    [InlineData("float16", TensorDType.Float16)]
    public void Names_parse(string text, TensorDType expected) => Assert.Equal(expected, TensorDTypes.Parse(text));

    [Fact]
    public void An_unknown_name_is_refused_with_the_accepted_ones()
    {
        var error = Assert.Throws<ArgumentException>(() => TensorDTypes.Parse("int8"));
        Assert.Contains("fp32, fp16, bf16", error.Message);
    }

    /// <summary>Edge values (zeros, subnormals of both formats, the overflow thresholds, exact ties) and random bit
    /// patterns across the whole fp32 range.</summary>
    private static IEnumerable<float> Probes()
    {
        float[] edges =
        [
            0f, -0f, 1f, -1f, 65504f, 65519.996f, 65520f, 65536f, float.MaxValue, float.MinValue, float.Epsilon,
            float.PositiveInfinity, float.NegativeInfinity, float.NaN, 5.9604645e-8f, 2.9802322e-8f, 2.9802326e-8f,
            6.1035156e-5f, 6.097555e-5f, 1f + 1f / 2048, 1f + 3f / 2048, 1f + 1f / 256, 1f + 3f / 256,
            BitConverter.UInt32BitsToSingle(0x7F7F_8000), BitConverter.UInt32BitsToSingle(0x7F7F_7FFF),
            BitConverter.UInt32BitsToSingle(0x0000_8000), BitConverter.UInt32BitsToSingle(0x3F80_8000),
            BitConverter.UInt32BitsToSingle(0x3F81_8000),
        ];
        foreach (var e in edges)
            yield return e;
        var random = new Random(12);
        for (var i = 0; i < 200_000; i++)
            yield return BitConverter.UInt32BitsToSingle((uint)random.NextInt64(0, 1L << 32));
        // Values near fp16's range, where the interesting rounding happens.
        for (var i = 0; i < 200_000; i++)
            yield return (float)((random.NextDouble() * 2 - 1) * Math.Pow(2, random.Next(-26, 17)));
    }

    private static ushort BFloat16ByDistance(float value)
    {
        if (float.IsInfinity(value))
            return (ushort)(BitConverter.SingleToUInt32Bits(value) >> 16);
        var bits = BitConverter.SingleToUInt32Bits(value);
        var lower = (ushort)(bits >> 16);
        var below = Math.Abs((double)BitConverter.UInt32BitsToSingle((uint)lower << 16));
        // The neighbour away from zero; past the largest finite bf16 it is +∞, whose distance is measured as 2^128.
        var upperBits = (ushort)(lower + 1);
        var above = (upperBits & 0x7FFF) == 0x7F80 ? Math.Pow(2, 128)
            : Math.Abs((double)BitConverter.UInt32BitsToSingle((uint)upperBits << 16));
        var magnitude = Math.Abs((double)value);
        var toBelow = magnitude - below;
        var toAbove = above - magnitude;
        if (toBelow < toAbove)
            return lower;
        if (toAbove < toBelow)
            return upperBits;
        return (lower & 1) == 0 ? lower : upperBits;
    }

    private static float TruncateToHalfPrecision(float value) =>
        BitConverter.UInt32BitsToSingle(BitConverter.SingleToUInt32Bits(value) & 0xFFFF_E000);
}
