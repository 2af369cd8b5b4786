using RetNet.Ilgpu.Kernels;
using RetNet.Ilgpu.Kernels.Reductions;
using RetNet.Ilgpu.Tests.Support;

namespace RetNet.Ilgpu.Tests.Kernels;

[Collection(DeviceCollection.Name)]
public sealed class ReductionTests(DeviceFixture fixture)
{
    private readonly RetNetDevice device = fixture.Device;

    public static TheoryData<int> Sizes => [1, 7, 1000, 4099, 65537];

    [Theory, MemberData(nameof(Sizes))]
    public void Sum_sum_of_squares_and_max_abs_match_the_reference(int n)
    {
        var x = Numerics.Uniform(11, n, 3f);
        using var tx = Tensor.FromHost(device, x, n);

        AssertScalar("sum", Reductions.Sum(tx), ReductionReference.Sum(x), Math.Sqrt(n) * 3);
        AssertScalar("sum of squares", Reductions.SumOfSquares(tx), ReductionReference.SumOfSquares(x));
        Assert.Equal((float)ReductionReference.MaxAbs(x), Reductions.MaxAbs(tx));
    }

    [Fact]
    public void Every_power_of_two_group_size_and_group_count_gives_the_reference()
    {
        const int n = 777;
        var x = Numerics.Uniform(12, n, 2f);
        x[500] = -9f;
        using var tx = Tensor.FromHost(device, x, n);
        using var result = Tensor.Zeros(device, 1);
        foreach (var launch in Launches())
        {
            Reductions.Reduce<SquareSumReduction, SumReduction>([tx], "x", result, 0.5f, launch);
            AssertScalar($"half sum of squares {launch}", result.ToHost()[0], 0.5 * ReductionReference.SumOfSquares(x));
            Reductions.Reduce<SumReduction, SumReduction>([tx], "x", result, 1f, launch);
            AssertScalar($"sum {launch}", result.ToHost()[0], ReductionReference.Sum(x), Math.Sqrt(n) * 2);
            Reductions.Reduce<AbsMaxReduction, AbsMaxReduction>([tx], "x", result, 1f, launch);
            Assert.Equal(9f, result.ToHost()[0]);
        }
    }

    [Fact]
    public void Sum_of_squares_of_ten_million_elements_keeps_fp32_precision()
    {
        // A naive sequential fp32 sum of these 10⁷ squares (0.01 each) ends at 95681, 4% low: above 65536 each addend
        // rounds to a multiple of the sum's ulp. The compensated per-thread sums and the tree keep a few ulps.
        const int n = 10_000_000;
        var x = new float[n];
        Array.Fill(x, 0.1f);
        using var tx = Tensor.FromHost(device, x, n);
        var expected = ReductionReference.SumOfSquares(x);
        var actual = Reductions.SumOfSquares(tx);
        Assert.True(Math.Abs(actual - expected) <= 1e-6 * expected, $"got {actual}, expected {expected}");
    }

    [Fact]
    public void Multi_tensor_sum_of_squares_is_the_sum_over_all_tensors()
    {
        var a = Numerics.Uniform(13, 1000, 1f);
        var b = Numerics.Uniform(14, 3, 5f);
        var c = Numerics.Uniform(15, 4099, 0.1f);
        using var ta = Tensor.FromHost(device, a, 10, 100);
        using var tb = Tensor.FromHost(device, b, 3);
        using var empty = Tensor.Zeros(device, 0, 4);
        using var tc = Tensor.FromHost(device, c, 4099);

        var actual = Reductions.SumOfSquares([ta, tb, empty, tc]);

        AssertScalar("global sum of squares", actual,
            ReductionReference.SumOfSquares(a) + ReductionReference.SumOfSquares(b) + ReductionReference.SumOfSquares(c));
        Assert.Equal(0f, Reductions.SumOfSquares(Array.Empty<Tensor>()));
    }

    [Fact]
    public void Empty_tensors_reduce_to_zero()
    {
        using var empty = Tensor.Zeros(device, 0);
        Assert.Equal(0f, Reductions.Sum(empty));
        Assert.Equal(0f, Reductions.SumOfSquares(empty));
        Assert.Equal(0f, Reductions.MaxAbs(empty));
    }

    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    [InlineData(511)]
    [InlineData(1022)]
    [InlineData(1023)]
    public void NaN_anywhere_propagates_into_max_abs_and_sum_of_squares(int position)
    {
        var x = Numerics.Uniform(16, 1024, 4f);
        x[position] = float.NaN;
        using var tx = Tensor.FromHost(device, x, x.Length);
        Assert.True(float.IsNaN(Reductions.MaxAbs(tx)), "max |x| dropped the NaN");
        Assert.True(float.IsNaN(Reductions.SumOfSquares(tx)), "Σx² dropped the NaN");
        Assert.True(double.IsNaN(ReductionReference.MaxAbs(x)));
        using var result = Tensor.Zeros(device, 1);
        foreach (var launch in Launches())
        {
            Reductions.Reduce<AbsMaxReduction, AbsMaxReduction>([tx], "x", result, 1f, launch);
            Assert.True(float.IsNaN(result.ToHost()[0]), $"max |x| dropped the NaN with {launch}");
        }
    }

    [Fact]
    public void Overflow_gives_infinity_not_NaN()
    {
        var x = Numerics.Uniform(17, 100, 1f);
        x[40] = 3e19f;
        x[41] = 3e19f;
        x[42] = float.NegativeInfinity;
        using var tx = Tensor.FromHost(device, x, x.Length);
        Assert.Equal(float.PositiveInfinity, Reductions.SumOfSquares(tx));
        Assert.Equal(float.PositiveInfinity, Reductions.MaxAbs(tx));
    }

    [Fact]
    public void Results_are_bit_identical_run_to_run()
    {
        var x = Numerics.Uniform(18, 100_003, 7f);
        using var tx = Tensor.FromHost(device, x, x.Length);
        var first = (Reductions.Sum(tx), Reductions.SumOfSquares(tx), Reductions.SumOfSquares([tx, tx]));
        for (var run = 0; run < 3; run++)
        {
            var again = (Reductions.Sum(tx), Reductions.SumOfSquares(tx), Reductions.SumOfSquares([tx, tx]));
            Assert.Equal(BitConverter.SingleToInt32Bits(first.Item1), BitConverter.SingleToInt32Bits(again.Item1));
            Assert.Equal(BitConverter.SingleToInt32Bits(first.Item2), BitConverter.SingleToInt32Bits(again.Item2));
            Assert.Equal(BitConverter.SingleToInt32Bits(first.Item3), BitConverter.SingleToInt32Bits(again.Item3));
        }
    }

    [Fact]
    public void Bad_arguments_are_rejected_naming_them()
    {
        Assert.Throws<ArgumentNullException>(() => Reductions.SumOfSquares((Tensor)null!));
        var error = Assert.Throws<ArgumentNullException>(() => Reductions.SumOfSquares([null!]));
        Assert.Equal("tensors[0]", error.ParamName);
        using var x = Tensor.Zeros(device, 8);
        using var result = Tensor.Zeros(device, 1);
        Assert.Throws<ArgumentOutOfRangeException>(() =>
            Reductions.Reduce<SumReduction, SumReduction>([x], "x", result, 1f, new ReductionLaunch(3, 1)));
        Assert.Throws<ArgumentOutOfRangeException>(() =>
            Reductions.Reduce<SumReduction, SumReduction>([x], "x", result, 1f, new ReductionLaunch(2, 0)));
        var aliased = Assert.Throws<ArgumentException>(() =>
            Reductions.Reduce<SumReduction, SumReduction>([x], "x", x.Slice(0, 1), 1f, new ReductionLaunch(2, 1)));
        Assert.Equal("result", aliased.ParamName);
    }

    [Fact]
    public void Reference_max_abs_reports_NaN_and_ignores_sign()
    {
        Assert.Equal(3.0, ReductionReference.MaxAbs([1f, -3f, 2f]));
        Assert.True(double.IsNaN(ReductionReference.MaxAbs([1f, float.NaN, 2f])));
        Assert.Equal(14.0, ReductionReference.SumOfSquares([1f, -2f, 3f]));
    }

    /// <summary>Every power-of-two group size the device can launch (up to 1024) with one, a few and many groups.</summary>
    private IEnumerable<ReductionLaunch> Launches()
    {
        for (var size = 1; size <= Launch.PowerOfTwoGroup(device, 1024); size *= 2)
            foreach (var groups in new[] { 1, 3, 64 })
                yield return new ReductionLaunch(size, groups);
    }

    /// <summary>
    /// The project's rule at 1e-5 (the reductions are compensated). A sum of random signs may cancel, so its floor is
    /// the size the inputs give it: √n times their scale.
    /// </summary>
    private static void AssertScalar(string what, float actual, double expected, double floor = 0) =>
        Numerics.AssertClose(what, [actual], [expected], 1e-5, floor);
}
