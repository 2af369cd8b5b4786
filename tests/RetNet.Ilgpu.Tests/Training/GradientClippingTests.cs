using RetNet.Ilgpu.Kernels.Reductions;
using RetNet.Ilgpu.Tests.Support;
using RetNet.Ilgpu.Training;

namespace RetNet.Ilgpu.Tests.Training;

[Collection(DeviceCollection.Name)]
public sealed class GradientClippingTests(DeviceFixture fixture)
{
    private readonly RetNetDevice device = fixture.Device;

    [Fact]
    public void Global_norm_matches_the_double_reference_and_repeats_bit_identically()
    {
        int[] sizes = [1, 7, 1000, 4099];
        var data = sizes.Select((n, k) => Numerics.Uniform(40 + k, n, 1f + k)).ToArray();
        var tensors = data.Select((d, k) => Tensor.FromHost(device, d, sizes[k])).ToList();
        try
        {
            var norm = GradientClipping.GlobalNorm(tensors);
            var expected = Math.Sqrt(data.Sum(ReductionReference.SumOfSquares));

            Numerics.AssertClose("global norm", [(float)norm], [expected]);
            Assert.Equal(norm, GradientClipping.GlobalNorm(tensors));
            // Negative control: the norm of all but the last tensor (a gradient left out) is rejected.
            var partial = Math.Sqrt(data.SkipLast(1).Sum(ReductionReference.SumOfSquares));
            Numerics.AssertRejected(Numerics.Check("global norm without the last tensor", [(float)norm], [partial]));
            Assert.Equal(0.0, GradientClipping.GlobalNorm([]));
        }
        finally
        {
            tensors.ForEach(t => t.Dispose());
        }
    }

    [Fact]
    public void Non_finite_gradients_raise_an_exception_naming_the_tensor()
    {
        using var good = Tensor.FromHost(device, [1f, 2f], 2);
        using var nan = Tensor.FromHost(device, [0f, float.NaN, 3f], 3);
        using var infinite = Tensor.FromHost(device, [float.NegativeInfinity], 1);

        var error = Assert.Throws<ArithmeticException>(() => GradientClipping.GlobalNorm([good, nan]));
        Assert.Contains("gradients[1]", error.Message);
        Assert.Contains("NaN", error.Message);
        Assert.Contains("gradients[1]",
            Assert.Throws<ArithmeticException>(() => GradientClipping.GlobalNorm([good, infinite])).Message);

        // Negative control: the finite tensor alone gives its norm.
        Assert.Equal(Math.Sqrt(5), GradientClipping.GlobalNorm([good]), 6);
    }

    [Fact]
    public void Clip_scale_follows_clip_grad_norm()
    {
        Assert.Equal(1.0 / (2.0 + 1e-6), GradientClipping.ClipScale(2.0, 1.0));
        Assert.Equal(1.0, GradientClipping.ClipScale(0.5, 1.0));
        Assert.Equal(1.0, GradientClipping.ClipScale(0.0, 1.0));
        // At maxNorm itself the 1e-6 guard makes the factor slightly below 1, as clip_grad_norm_ scales then too.
        Assert.Equal(1.0 / (1.0 + 1e-6), GradientClipping.ClipScale(1.0, 1.0));
        Assert.Equal(1.0, GradientClipping.ClipScale(1e9, 0.0));
        Assert.Equal(1.0, GradientClipping.ClipScale(1e9, -1.0));

        Assert.Equal("norm", Assert.Throws<ArgumentOutOfRangeException>(() =>
            GradientClipping.ClipScale(double.NaN, 1.0)).ParamName);
        Assert.Equal("norm", Assert.Throws<ArgumentOutOfRangeException>(() =>
            GradientClipping.ClipScale(double.PositiveInfinity, 1.0)).ParamName);
        Assert.Equal("norm", Assert.Throws<ArgumentOutOfRangeException>(() =>
            GradientClipping.ClipScale(-1.0, 1.0)).ParamName);
        Assert.Equal("maxNorm", Assert.Throws<ArgumentOutOfRangeException>(() =>
            GradientClipping.ClipScale(1.0, double.NaN)).ParamName);
    }
}
