using RetNet.Ilgpu.Kernels.Conversion;
using RetNet.Ilgpu.Tensors;
using RetNet.Ilgpu.Tests.Support;

namespace RetNet.Ilgpu.Tests.Kernels;

[Collection(DeviceCollection.Name)]
public sealed class ConversionTests(DeviceFixture fixture)
{
    private readonly RetNetDevice device = fixture.Device;

    public static TheoryData<int, TensorDType> Cases => new()
    {
        { 1, TensorDType.BFloat16 }, { 1000, TensorDType.BFloat16 }, { 4099, TensorDType.BFloat16 },
        { 1, TensorDType.Float16 }, { 1000, TensorDType.Float16 }, { 4099, TensorDType.Float16 },
    };

    [Theory, MemberData(nameof(Cases))]
    public void Narrowing_on_the_device_gives_the_host_rounding_bit_for_bit(int n, TensorDType dtype)
    {
        var values = Values(n);
        using var source = Tensor.FromHost(device, values, n);
        using var narrow = Conversion.To(source, dtype);
        Assert.Equal(dtype, narrow.DType);
        Assert.Equal(2L * n, narrow.Bytes);
        var expected = values.Select(v => TensorDTypes.Round(v, dtype)).ToArray();
        AssertSameBits(expected, narrow.ToHost());
        // The host upload rounds the same way, so both routes store identical bits.
        using var uploaded = Tensor.FromHost(device, values, dtype, n);
        Assert.Equal(narrow.ToHostBits(), uploaded.ToHostBits());
    }

    [Theory, MemberData(nameof(Cases))]
    public void Widening_on_the_device_is_exact_and_recoding_rounds_once_more(int n, TensorDType dtype)
    {
        var values = Values(n);
        using var narrow = Tensor.FromHost(device, values, dtype, n);
        using var wide = Conversion.To(narrow, TensorDType.Float32);
        AssertSameBits(values.Select(v => TensorDTypes.Round(v, dtype)).ToArray(), wide.ToHost());

        var other = dtype == TensorDType.BFloat16 ? TensorDType.Float16 : TensorDType.BFloat16;
        using var recoded = Conversion.To(narrow, other);
        AssertSameBits(values.Select(v => TensorDTypes.Round(TensorDTypes.Round(v, dtype), other)).ToArray(),
            recoded.ToHost());
    }

    [Fact]
    public void The_bit_comparison_rejects_an_unrounded_copy()
    {
        // Negative control: fp32 values that were never rounded differ from their bf16 rounding somewhere.
        var values = Values(1000);
        var rounded = values.Select(v => TensorDTypes.Round(v, TensorDType.BFloat16)).ToArray();
        Assert.ThrowsAny<Exception>(() => AssertSameBits(rounded, values));
    }

    [Fact]
    public void Raw_bits_round_trip_unchanged()
    {
        ushort[] bits = [0x0000, 0x8000, 0x3F80, 0x7F80, 0xFF80, 0x7FC1, 0x0001, 0x3C00];
        using var tensor = Tensor.FromHostBits(device, bits, TensorDType.BFloat16, 2, 4);
        Assert.Equal(bits, tensor.ToHostBits());
        using var zeros = Tensor.Zeros(device, TensorDType.Float16, 3);
        Assert.Equal(new ushort[3], zeros.ToHostBits());
        using var view = tensor.Reshape(4, 2).Slice(1, 2);
        Assert.Equal(TensorDType.BFloat16, view.DType);
        Assert.Equal(bits[2..6], view.ToHostBits());
    }

    [Fact]
    public void An_fp32_only_operation_refuses_a_16_bit_tensor_naming_both()
    {
        using var narrow = Tensor.Zeros(device, TensorDType.BFloat16, 4);
        using var wide = Tensor.Zeros(device, 4);
        var error = Assert.Throws<NotSupportedException>(() => RetNet.Ilgpu.Kernels.Elementwise.Elementwise.Add(narrow, wide, wide));
        Assert.Contains("BFloat16", error.Message);
        Assert.Contains("Float32", error.Message);
        var copy = Assert.Throws<ArgumentException>(() => wide.CopyFrom(narrow));
        Assert.Equal("source", copy.ParamName);
        Assert.Throws<NotSupportedException>(() => wide.ToHostBits());
        Assert.Throws<ArgumentException>(() => Tensor.FromHostBits(device, new ushort[4], TensorDType.Float32, 4));
        using var wrongShape = Tensor.Zeros(device, TensorDType.Float16, 5);
        Assert.Equal("destination", Assert.Throws<ArgumentException>(() => Conversion.Convert(wide, wrongShape)).ParamName);
    }

    private static float[] Values(int n)
    {
        // Mostly ordinary magnitudes, plus values that overflow fp16, fp16 subnormals, and exact ties.
        var values = Numerics.Uniform(7, n, 3f);
        float[] specials = [70000f, -1e-6f, 1f + 1f / 2048, 1f + 1f / 256, float.PositiveInfinity, 0f];
        for (var i = 0; i < Math.Min(n, specials.Length); i++)
            values[(i * 37) % n] = specials[i];
        return values;
    }

    private static void AssertSameBits(float[] expected, float[] actual)
    {
        Assert.Equal(expected.Length, actual.Length);
        for (var i = 0; i < expected.Length; i++)
            Assert.True(BitConverter.SingleToUInt32Bits(expected[i]) == BitConverter.SingleToUInt32Bits(actual[i]),
                $"element {i}: expected {expected[i]:R}, got {actual[i]:R}");
    }
}
