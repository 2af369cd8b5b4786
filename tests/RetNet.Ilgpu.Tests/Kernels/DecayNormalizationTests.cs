using RetNet.Ilgpu.Kernels.Normalization;
using RetNet.Ilgpu.Retention;
using RetNet.Ilgpu.Tests.Support;

namespace RetNet.Ilgpu.Tests.Kernels;

/// <summary>
/// The decay normalisation: the per-row decay sums s_p = Σ_{j≤p} γ^j and the head norm that adds eps·s_p, each
/// against its double reference, with controls that the checks reject.
/// </summary>
[Collection(DeviceCollection.Name)]
public sealed class DecayNormalizationTests(DeviceFixture fixture)
{
    private readonly RetNetDevice device = fixture.Device;

    /// <summary>Element-wise relative error bound of the sums: a few fp32 ulps through log, product, expm1 and a
    /// division.</summary>
    private const double SumTolerance = 2e-6;

    public static TheoryData<double[], int[]> SumCases => new()
    {
        { DecaySchedule.Torchscale(4).Gammas.ToArray(), [0, 5, 4000] },
        { DecaySchedule.Paper(3).Gammas.ToArray(), [17, 0] },
        // γ within 1e-7 of 1: 1 − γ^(p+1) formed directly in fp32 would lose most of its digits.
        { [1 - 1e-7, 0.5, 1 - Math.ScaleB(1, -30)], [0, 1, 100_000, 5_000_000] },
    };

    [Theory, MemberData(nameof(SumCases))]
    public void Row_sums_match_the_term_by_term_reference_at_per_sequence_positions(double[] gammas, int[] starts)
    {
        const int seqLen = 6;
        var decay = DecaySchedule.FromValues(gammas);
        using var sums = Tensor.Zeros(device, starts.Length, seqLen, gammas.Length);
        DecayNormalization.RowSums(sums, starts, decay);
        var expected = DecayNormalizationReference.RowSums(starts, seqLen, gammas);
        Assert.True(WorstRelative(sums.ToHost(), expected) <= SumTolerance,
            $"decay sums: worst relative error {WorstRelative(sums.ToHost(), expected):G3} > {SumTolerance}");
    }

    [Fact]
    public void The_sum_check_rejects_a_wrong_position_and_the_naive_fp32_formula()
    {
        double[] gammas = [1 - 1e-7, 1 - Math.ScaleB(1, -5)];
        var early = DecayNormalizationReference.RowSums([3], 4, gammas);
        var offByOne = DecayNormalizationReference.RowSums([4], 4, gammas).Select(v => (float)v).ToArray();
        Assert.True(WorstRelative(offByOne, early) > SumTolerance, "sums one position late pass the check");

        // At p ≈ 5·10⁶, (p + 1)(1 − γ) ≈ 0.5: fp32's rounding of γ = 1 − 1e-7 then moves the sum by ~4%.
        int[] starts = [5_000_000];
        var expected = DecayNormalizationReference.RowSums(starts, 4, gammas);
        var naive = new float[expected.Length];
        for (var i = 0; i < naive.Length; i++)
        {
            var gamma = (float)gammas[i % 2];
            var position = starts[0] + i / 2;
            naive[i] = (1f - MathF.Pow(gamma, position + 1)) / (1f - gamma);
        }
        Assert.True(WorstRelative(naive, expected) > SumTolerance, "the cancelling fp32 formula passes the check");
    }

    [Fact]
    public void Row_sums_reject_bad_arguments()
    {
        var decay = DecaySchedule.Torchscale(2);
        using var rank2 = Tensor.Zeros(device, 2, 2);
        Assert.Equal("sums", Assert.Throws<ArgumentException>(() => DecayNormalization.RowSums(rank2, [0, 0], decay)).ParamName);
        using var sums = Tensor.Zeros(device, 2, 3, 3);
        Assert.Equal("sums", Assert.Throws<ArgumentException>(() => DecayNormalization.RowSums(sums, [0, 0], decay)).ParamName);
        using var good = Tensor.Zeros(device, 2, 3, 2);
        Assert.Equal("startPositions",
            Assert.Throws<ArgumentException>(() => DecayNormalization.RowSums(good, [0], decay)).ParamName);
        Assert.Equal("startPositions",
            Assert.Throws<ArgumentException>(() => DecayNormalization.RowSums(good, [0, -1], decay)).ParamName);
    }

    public static TheoryData<int> Configurations()
    {
        var data = new TheoryData<int>();
        foreach (var configuration in NormalizationConfigurations.All)
            data.Add(configuration);
        return data;
    }

    [Theory, MemberData(nameof(Configurations))]
    public void A_per_row_eps_scale_equals_dividing_the_row_by_the_root_of_its_decay_sum(int configuration)
    {
        // Rows small enough that eps·s dominates some of them: the factor then changes the output by up to ~100%.
        const int rows = 12, dim = 8;
        const float eps = 1e-3f;
        var x = Numerics.Uniform(41, rows * dim, 0.05f);
        var scale = Enumerable.Range(0, rows).Select(r => DecayNormalizationReference.DecaySum(0.9, 3 * r)).ToArray();
        using var tx = Tensor.FromHost(device, x, rows, dim);
        using var tScale = Tensor.FromHost(device, scale.Select(v => (float)v).ToArray(), rows);
        using var y = Tensor.Zeros(device, rows, dim);
        var options = NormalizationConfigurations.Options(configuration);
        RmsNorm.Forward(tx, null, eps, y, rstd: null, options, tScale);

        // torchscale's order: divide row r by √s_r, then RMSNorm with the plain eps.
        var divided = x.Select((v, i) => v / Math.Sqrt(scale[i / dim])).ToArray();
        var expected = NormalizationReference.RmsNormForward(divided, null, dim, eps).Y;
        Numerics.AssertClose("head norm with decay sums", y.ToHost(), expected);
        var viaScale = NormalizationReference.RmsNormForward(x.Select(v => (double)v).ToArray(), null, dim, eps, scale).Y;
        Numerics.AssertClose("reference identity", viaScale.Select(v => (float)v).ToArray(), expected, 1e-6);

        var plain = NormalizationReference.RmsNormForward(x.Select(v => (double)v).ToArray(), null, dim, eps).Y;
        Assert.True(MaxRelative(plain, expected) > 1e-2,
            "without the decay sums the reference barely changes: the case cannot tell them apart");
    }

    [Theory, MemberData(nameof(Configurations))]
    public void Backward_with_a_per_row_eps_scale_matches_the_reference(int configuration)
    {
        const int rows = 5, dim = 16;
        const float eps = 1e-3f;
        var x = Numerics.Uniform(43, rows * dim, 0.05f);
        var dy = Numerics.Uniform(44, rows * dim);
        var scale = Enumerable.Range(0, rows).Select(r => DecayNormalizationReference.DecaySum(0.8, r * 7)).ToArray();
        using var tx = Tensor.FromHost(device, x, rows, dim);
        using var tdy = Tensor.FromHost(device, dy, rows, dim);
        using var tScale = Tensor.FromHost(device, scale.Select(v => (float)v).ToArray(), rows);
        using var dx = Tensor.Zeros(device, rows, dim);
        RmsNorm.Backward(tx, null, tdy, eps, dx, null, rstd: null, NormalizationConfigurations.Options(configuration), tScale);
        var expected = NormalizationReference.RmsNormBackward(x.Select(v => (double)v).ToArray(), null,
            dy.Select(v => (double)v).ToArray(), dim, eps, scale).Dx;
        Numerics.AssertClose("dx", dx.ToHost(), expected);
    }

    [Fact]
    public void An_eps_scale_of_the_wrong_shape_is_rejected_by_name()
    {
        using var x = Tensor.Zeros(device, 3, 4);
        using var y = Tensor.Zeros(device, 3, 4);
        using var scale = Tensor.Zeros(device, 4);
        var error = Assert.Throws<ArgumentException>(() => RmsNorm.Forward(x, null, 1e-6f, y, null, null, scale));
        Assert.Equal("epsScale", error.ParamName);
    }

    private static double WorstRelative(IReadOnlyList<float> actual, IReadOnlyList<double> expected)
    {
        var worst = 0.0;
        for (var i = 0; i < expected.Count; i++)
        {
            var error = Math.Abs(actual[i] - expected[i]) / Math.Abs(expected[i]);
            worst = double.IsNaN(error) ? double.PositiveInfinity : Math.Max(worst, error);
        }
        return worst;
    }

    private static double MaxRelative(IReadOnlyList<double> actual, IReadOnlyList<double> expected) =>
        actual.Zip(expected, (a, e) => Math.Abs(a - e)).Max() / expected.Max(Math.Abs);
}
