using RetNet.Ilgpu.Kernels.Normalization;
using RetNet.Ilgpu.Tests.Support;
using RetNet.Ilgpu.Verification.Cases;

namespace RetNet.Ilgpu.Tests.Kernels;

/// <summary>
/// Launch configurations every normalisation test runs under: the library's own choice for the device, the
/// barrier-free thread-per-row form, and the group-per-row form at each power-of-two group size up to the CPU
/// simulator's limit of 16.
/// </summary>
internal static class NormalizationConfigurations
{
    /// <summary>The configuration <see cref="NormalizationOptions.For"/> picks.</summary>
    public const int LibraryDefault = -1;

    /// <summary>One thread per row.</summary>
    public const int ThreadPerRow = 0;

    /// <summary><see cref="LibraryDefault"/>, <see cref="ThreadPerRow"/>, then group sizes.</summary>
    public static readonly int[] All = [LibraryDefault, ThreadPerRow, 1, 2, 4, 16];

    public static readonly string[] Shapes = ["5", "1x1", "3x1", "2x5", "4x37", "2x3x64", "7x300"];

    /// <summary>The options of a configuration code (a group size when positive).</summary>
    public static NormalizationOptions? Options(int configuration,
        int chunkRows = NormalizationOptions.DefaultChunkRows) => configuration switch
    {
        LibraryDefault => null,
        ThreadPerRow => new NormalizationOptions(NormalizationForm.ThreadPerRow, 1, chunkRows),
        _ => new NormalizationOptions(NormalizationForm.GroupPerRow, configuration, chunkRows),
    };

    /// <summary>eps × configuration.</summary>
    public static TheoryData<float, int> EpsCases()
    {
        var data = new TheoryData<float, int>();
        foreach (var eps in new[] { 0f, 1e-6f, 1e-5f })
            foreach (var configuration in All)
                data.Add(eps, configuration);
        return data;
    }

    /// <summary>input scale × eps × configuration.</summary>
    public static TheoryData<float, float, int> MagnitudeCases()
    {
        var data = new TheoryData<float, float, int>();
        foreach (var scale in new[] { 1e3f, 1e-3f })
            foreach (var eps in new[] { 0f, 1e-5f })
                foreach (var configuration in All)
                    data.Add(scale, eps, configuration);
        return data;
    }

    public static int[] ParseShape(string shape) => shape.Split('x').Select(int.Parse).ToArray();

    public static double[] ToDouble(float[]? values) => values is null ? [] : values.Select(v => (double)v).ToArray();

    /// <summary>The floor of dx's tolerance: <see cref="NormalizationCases.GradientFloor"/>, shared with
    /// <c>retnet verify</c>.</summary>
    public static double GradientFloor(double[] x, double[]? weight, double[] dy, int dim, double[] rstd,
        double[]? mean) => NormalizationCases.GradientFloor(x, weight, dy, dim, rstd, mean);
}

/// <summary>RMSNorm forward and backward against the double-precision reference in every launch configuration.</summary>
[Collection(DeviceCollection.Name)]
public sealed class NormalizationRmsNormTests(DeviceFixture fixture)
{
    private readonly RetNetDevice device = fixture.Device;

    public static TheoryData<string, int, bool> Cases()
    {
        var data = new TheoryData<string, int, bool>();
        foreach (var shape in NormalizationConfigurations.Shapes)
            foreach (var configuration in NormalizationConfigurations.All)
                foreach (var weighted in new[] { false, true })
                    data.Add(shape, configuration, weighted);
        return data;
    }

    [Theory, MemberData(nameof(Cases))]
    public void Forward_and_backward_match_the_reference(string shape, int configuration, bool weighted) =>
        Check(NormalizationConfigurations.ParseShape(shape), weighted, 1e-6f, configuration);

    [Theory, MemberData(nameof(NormalizationConfigurations.EpsCases), MemberType = typeof(NormalizationConfigurations))]
    public void Any_eps_from_zero_up_matches_the_reference(float eps, int configuration) =>
        Check([4, 37], weighted: true, eps, configuration);

    [Theory, MemberData(nameof(NormalizationConfigurations.MagnitudeCases), MemberType = typeof(NormalizationConfigurations))]
    public void Large_and_tiny_inputs_match_the_reference_relatively(float scale, float eps, int configuration) =>
        Check([7, 300], weighted: true, eps, configuration, scale);

    [Theory, MemberData(nameof(NormalizationSharedTests.ChunkCases), MemberType = typeof(NormalizationSharedTests))]
    public void Weight_gradient_is_right_for_any_chunking_of_the_rows(string shape, int chunkRows, int configuration) =>
        Check(NormalizationConfigurations.ParseShape(shape), weighted: true, 1e-6f, configuration, chunkRows: chunkRows);

    [Fact]
    public void An_all_zero_row_with_positive_eps_gives_zero_and_finite_gradients()
    {
        const int dim = 6;
        var x = Numerics.Uniform(11, 3 * dim);
        Array.Clear(x, dim, dim);
        var dy = Numerics.Uniform(12, 3 * dim);
        using var tx = Tensor.FromHost(device, x, 3, dim);
        using var tdy = Tensor.FromHost(device, dy, 3, dim);
        using var y = Tensor.Zeros(device, 3, dim);
        using var dx = Tensor.Zeros(device, 3, dim);
        foreach (var configuration in NormalizationConfigurations.All)
        {
            var options = NormalizationConfigurations.Options(configuration);
            RmsNorm.Forward(tx, null, 1e-5f, y, null, options);
            RmsNorm.Backward(tx, null, tdy, 1e-5f, dx, null, null, options);
            var yHost = y.ToHost();
            Assert.All(yHost.Skip(dim).Take(dim), v => Assert.Equal(0f, v));
            Assert.All(yHost.Concat(dx.ToHost()), v => Assert.True(float.IsFinite(v)));
            var reference = NormalizationReference.RmsNormBackward(
                NormalizationConfigurations.ToDouble(x), null, NormalizationConfigurations.ToDouble(dy), dim, 1e-5);
            Numerics.AssertClose($"dx ({configuration})", dx.ToHost(), reference.Dx);
        }
    }

    [Fact]
    public void Forward_in_place_overwrites_x_with_y()
    {
        var x = Numerics.Uniform(13, 4 * 37);
        var w = Numerics.Uniform(14, 37);
        using var tx = Tensor.FromHost(device, x, 4, 37);
        using var tw = Tensor.FromHost(device, w, 37);
        RmsNorm.Forward(tx, tw, 1e-6f, tx);
        var expected = NormalizationReference.RmsNormForward(
            NormalizationConfigurations.ToDouble(x), NormalizationConfigurations.ToDouble(w), 37, 1e-6);
        Numerics.AssertClose("y", tx.ToHost(), expected.Y);
    }

    private void Check(int[] shape, bool weighted, float eps, int configuration, float scale = 1f,
        int chunkRows = NormalizationOptions.DefaultChunkRows)
    {
        var options = NormalizationConfigurations.Options(configuration, chunkRows);
        var dim = shape[^1];
        var count = shape.Aggregate(1, (a, b) => a * b);
        var rows = count / dim;
        var x = Numerics.Uniform(1, count, scale);
        var w = weighted ? Numerics.Uniform(2, dim, 2f) : null;
        var dy = Numerics.Uniform(3, count);
        var xd = NormalizationConfigurations.ToDouble(x);
        var wd = weighted ? NormalizationConfigurations.ToDouble(w) : null;
        var forward = NormalizationReference.RmsNormForward(xd, wd, dim, eps);
        var backward = NormalizationReference.RmsNormBackward(xd, wd, NormalizationConfigurations.ToDouble(dy), dim, eps);
        var dxFloor = NormalizationConfigurations.GradientFloor(xd, wd, NormalizationConfigurations.ToDouble(dy), dim,
            forward.Rstd, null);
        void assert(string what, float[] actual, double[] expected, double floor = 0) =>
            Numerics.AssertClose(what, actual, expected, floor: floor);

        using var tx = Tensor.FromHost(device, x, shape);
        using var tw = w is null ? null : Tensor.FromHost(device, w, dim);
        using var tdy = Tensor.FromHost(device, dy, shape);
        using var y = Tensor.Zeros(device, shape);
        using var rstd = Tensor.Zeros(device, rows);
        using var dx = Tensor.Zeros(device, shape);
        using var dw = tw is null ? null : Tensor.Zeros(device, dim);

        RmsNorm.Forward(tx, tw, eps, y, null, options);
        assert("y without saved statistics", y.ToHost(), forward.Y);
        RmsNorm.Forward(tx, tw, eps, y, rstd, options);
        assert("y", y.ToHost(), forward.Y);
        assert("rstd", rstd.ToHost(), forward.Rstd);
        foreach (var saved in new Tensor?[] { rstd, null })
        {
            var label = saved is null ? "recomputed" : "saved";
            RmsNorm.Backward(tx, tw, tdy, eps, dx, dw, saved, options);
            assert($"dx ({label} statistics)", dx.ToHost(), backward.Dx, dxFloor);
            if (dw is not null)
                assert($"dWeight ({label} statistics)", dw.ToHost(), backward.DWeight);
        }
    }
}

/// <summary>LayerNorm forward and backward against the double-precision reference in every launch configuration.</summary>
[Collection(DeviceCollection.Name)]
public sealed class NormalizationLayerNormTests(DeviceFixture fixture)
{
    private readonly RetNetDevice device = fixture.Device;

    public static TheoryData<string, int, bool, bool> Cases()
    {
        var data = new TheoryData<string, int, bool, bool>();
        foreach (var shape in NormalizationConfigurations.Shapes)
            foreach (var configuration in NormalizationConfigurations.All)
                foreach (var weighted in new[] { false, true })
                    foreach (var biased in new[] { false, true })
                        data.Add(shape, configuration, weighted, biased);
        return data;
    }

    [Theory, MemberData(nameof(Cases))]
    public void Forward_and_backward_match_the_reference(string shape, int configuration, bool weighted, bool biased) =>
        Check(NormalizationConfigurations.ParseShape(shape), weighted, biased, 1e-5f, configuration);

    [Theory, MemberData(nameof(NormalizationConfigurations.EpsCases), MemberType = typeof(NormalizationConfigurations))]
    public void Any_eps_from_zero_up_matches_the_reference(float eps, int configuration) =>
        Check([4, 37], weighted: true, biased: true, eps, configuration);

    [Theory, MemberData(nameof(NormalizationConfigurations.MagnitudeCases), MemberType = typeof(NormalizationConfigurations))]
    public void Large_and_tiny_inputs_match_the_reference_relatively(float scale, float eps, int configuration) =>
        Check([7, 300], weighted: true, biased: true, eps, configuration, scale);

    [Theory, MemberData(nameof(NormalizationSharedTests.ChunkCases), MemberType = typeof(NormalizationSharedTests))]
    public void Weight_and_bias_gradients_are_right_for_any_chunking_of_the_rows(string shape, int chunkRows,
        int configuration) =>
        Check(NormalizationConfigurations.ParseShape(shape), weighted: true, biased: true, 1e-5f, configuration,
            chunkRows: chunkRows);

    [Fact]
    public void An_all_zero_row_with_positive_eps_gives_zero_and_finite_gradients()
    {
        const int dim = 6;
        var x = Numerics.Uniform(21, 3 * dim);
        Array.Clear(x, dim, dim);
        var w = Numerics.Uniform(22, dim);
        var dy = Numerics.Uniform(23, 3 * dim);
        using var tx = Tensor.FromHost(device, x, 3, dim);
        using var tw = Tensor.FromHost(device, w, dim);
        using var tdy = Tensor.FromHost(device, dy, 3, dim);
        using var y = Tensor.Zeros(device, 3, dim);
        using var dx = Tensor.Zeros(device, 3, dim);
        using var dw = Tensor.Zeros(device, dim);
        foreach (var configuration in NormalizationConfigurations.All)
        {
            var options = NormalizationConfigurations.Options(configuration);
            LayerNorm.Forward(tx, tw, null, 1e-5f, y, null, null, options);
            LayerNorm.Backward(tx, tw, tdy, 1e-5f, dx, dw, null, null, null, options);
            var yHost = y.ToHost();
            Assert.All(yHost.Skip(dim).Take(dim), v => Assert.Equal(0f, v));
            Assert.All(yHost.Concat(dx.ToHost()).Concat(dw.ToHost()), v => Assert.True(float.IsFinite(v)));
            var reference = NormalizationReference.LayerNormBackward(NormalizationConfigurations.ToDouble(x),
                NormalizationConfigurations.ToDouble(w), NormalizationConfigurations.ToDouble(dy), dim, 1e-5);
            Numerics.AssertClose($"dx ({configuration})", dx.ToHost(), reference.Dx);
            Numerics.AssertClose($"dWeight ({configuration})", dw.ToHost(), reference.DWeight);
        }
    }

    [Fact]
    public void Backward_is_bitwise_reproducible()
    {
        var x = Numerics.Uniform(24, 40 * 37);
        var w = Numerics.Uniform(25, 37);
        var dy = Numerics.Uniform(26, 40 * 37);
        using var tx = Tensor.FromHost(device, x, 40, 37);
        using var tw = Tensor.FromHost(device, w, 37);
        using var tdy = Tensor.FromHost(device, dy, 40, 37);
        using var dx = Tensor.Zeros(device, 40, 37);
        using var dw = Tensor.Zeros(device, 37);
        using var db = Tensor.Zeros(device, 37);
        foreach (var configuration in new[] { NormalizationConfigurations.LibraryDefault, 16 })
        {
            var options = NormalizationConfigurations.Options(configuration, chunkRows: 3);
            LayerNorm.Backward(tx, tw, tdy, 1e-5f, dx, dw, db, null, null, options);
            var first = (dx.ToHost(), dw.ToHost(), db.ToHost());
            LayerNorm.Backward(tx, tw, tdy, 1e-5f, dx, dw, db, null, null, options);
            Assert.Equal(first.Item1, dx.ToHost());
            Assert.Equal(first.Item2, dw.ToHost());
            Assert.Equal(first.Item3, db.ToHost());
        }
    }

    [Fact]
    public void Zero_rows_give_zero_parameter_gradients()
    {
        using var x = Tensor.Zeros(device, 0, 4);
        using var dy = Tensor.Zeros(device, 0, 4);
        using var y = Tensor.Zeros(device, 0, 4);
        using var dx = Tensor.Zeros(device, 0, 4);
        using var w = Tensor.FromHost(device, [1f, 2f, 3f, 4f], 4);
        using var dw = Tensor.FromHost(device, [5f, 5f, 5f, 5f], 4);
        using var db = Tensor.FromHost(device, [5f, 5f, 5f, 5f], 4);
        LayerNorm.Forward(x, w, null, 1e-5f, y);
        LayerNorm.Backward(x, w, dy, 1e-5f, dx, dw, db);
        Assert.Equal([0f, 0f, 0f, 0f], dw.ToHost());
        Assert.Equal([0f, 0f, 0f, 0f], db.ToHost());
    }

    private void Check(int[] shape, bool weighted, bool biased, float eps, int configuration, float scale = 1f,
        int chunkRows = NormalizationOptions.DefaultChunkRows)
    {
        var options = NormalizationConfigurations.Options(configuration, chunkRows);
        var dim = shape[^1];
        var count = shape.Aggregate(1, (a, b) => a * b);
        var rows = count / dim;
        var x = Numerics.Uniform(4, count, scale);
        var w = weighted ? Numerics.Uniform(5, dim, 2f) : null;
        var b = biased ? Numerics.Uniform(6, dim) : null;
        var dy = Numerics.Uniform(7, count);
        var xd = NormalizationConfigurations.ToDouble(x);
        var wd = weighted ? NormalizationConfigurations.ToDouble(w) : null;
        var bd = biased ? NormalizationConfigurations.ToDouble(b) : null;
        var forward = NormalizationReference.LayerNormForward(xd, wd, bd, dim, eps);
        var backward = NormalizationReference.LayerNormBackward(xd, wd, NormalizationConfigurations.ToDouble(dy), dim,
            eps);
        var dxFloor = NormalizationConfigurations.GradientFloor(xd, wd, NormalizationConfigurations.ToDouble(dy), dim,
            forward.Rstd, forward.Mean);
        void assert(string what, float[] actual, double[] expected, double floor = 0) =>
            Numerics.AssertClose(what, actual, expected, floor: floor);

        using var tx = Tensor.FromHost(device, x, shape);
        using var tw = w is null ? null : Tensor.FromHost(device, w, dim);
        using var tb = b is null ? null : Tensor.FromHost(device, b, dim);
        using var tdy = Tensor.FromHost(device, dy, shape);
        using var y = Tensor.Zeros(device, shape);
        using var mean = Tensor.Zeros(device, rows);
        using var rstd = Tensor.Zeros(device, rows);
        using var dx = Tensor.Zeros(device, shape);
        using var dw = tw is null ? null : Tensor.Zeros(device, dim);
        using var db = tb is null ? null : Tensor.Zeros(device, dim);

        LayerNorm.Forward(tx, tw, tb, eps, y, null, null, options);
        assert("y without saved statistics", y.ToHost(), forward.Y);
        LayerNorm.Forward(tx, tw, tb, eps, y, mean, rstd, options);
        assert("y", y.ToHost(), forward.Y);
        assert("mean", mean.ToHost(), forward.Mean);
        assert("rstd", rstd.ToHost(), forward.Rstd);
        foreach (var saved in new[] { true, false })
        {
            var label = saved ? "saved" : "recomputed";
            LayerNorm.Backward(tx, tw, tdy, eps, dx, dw, db, saved ? mean : null, saved ? rstd : null, options);
            assert($"dx ({label} statistics)", dx.ToHost(), backward.Dx, dxFloor);
            if (dw is not null)
                assert($"dWeight ({label} statistics)", dw.ToHost(), backward.DWeight);
            if (db is not null)
                assert($"dBias ({label} statistics)", db.ToHost(), backward.DBias!);
        }
    }
}

/// <summary>The references against finite differences, and argument checking of both operators.</summary>
[Collection(DeviceCollection.Name)]
public sealed class NormalizationSharedTests(DeviceFixture fixture)
{
    private readonly RetNetDevice device = fixture.Device;

    /// <summary>Shapes and chunk sizes that give one chunk, several, and a ragged last chunk.</summary>
    public static TheoryData<string, int, int> ChunkCases()
    {
        var data = new TheoryData<string, int, int>();
        foreach (var shape in new[] { "7x300", "40x5" })
            foreach (var chunkRows in new[] { 1, 3, 7, 32 })
                foreach (var configuration in new[] { NormalizationConfigurations.ThreadPerRow, 4 })
                    data.Add(shape, chunkRows, configuration);
        return data;
    }

    [Fact]
    public void Reference_gradients_agree_with_central_finite_differences()
    {
        const int dim = 5;
        const double eps = 1e-3;
        var x = NormalizationConfigurations.ToDouble(Numerics.Uniform(31, 2 * dim, 2f));
        var w = NormalizationConfigurations.ToDouble(Numerics.Uniform(32, dim, 2f));
        var b = NormalizationConfigurations.ToDouble(Numerics.Uniform(33, dim));
        var dy = NormalizationConfigurations.ToDouble(Numerics.Uniform(34, 2 * dim));

        // L = Σ dy ⊙ y, so ∂L/∂θ is the backward of the normalisation for this dy.
        double Loss(double[] y) => y.Select((v, i) => v * dy[i]).Sum();
        double LayerLoss(double[] xs, double[] ws, double[] bs) =>
            Loss(NormalizationReference.LayerNormForward(xs, ws, bs, dim, eps).Y);
        double RmsLoss(double[] xs, double[]? ws) => Loss(NormalizationReference.RmsNormForward(xs, ws, dim, eps).Y);

        var layer = NormalizationReference.LayerNormBackward(x, w, dy, dim, eps);
        AssertGradient("LayerNorm dx", layer.Dx, x, v => LayerLoss(v, w, b));
        AssertGradient("LayerNorm dWeight", layer.DWeight, w, v => LayerLoss(x, v, b));
        AssertGradient("LayerNorm dBias", layer.DBias!, b, v => LayerLoss(x, w, v));

        var rms = NormalizationReference.RmsNormBackward(x, w, dy, dim, eps);
        AssertGradient("RMSNorm dx", rms.Dx, x, v => RmsLoss(v, w));
        AssertGradient("RMSNorm dWeight", rms.DWeight, w, v => RmsLoss(x, v));
        var unweighted = NormalizationReference.RmsNormBackward(x, null, dy, dim, eps);
        AssertGradient("RMSNorm dx without weight", unweighted.Dx, x, v => RmsLoss(v, null));
    }

    [Fact]
    public void Wrong_parameter_lengths_are_rejected_naming_the_argument_and_shapes()
    {
        using var x = Tensor.Zeros(device, 2, 5);
        using var y = Tensor.Zeros(device, 2, 5);
        using var w4 = Tensor.Zeros(device, 4);
        using var w5 = Tensor.Zeros(device, 5);

        var weight = Assert.Throws<ArgumentException>(() => RmsNorm.Forward(x, w4, 1e-6f, y));
        Assert.Equal("weight", weight.ParamName);
        Assert.Contains("[4]", weight.Message);
        Assert.Contains("[5]", weight.Message);

        var bias = Assert.Throws<ArgumentException>(() => LayerNorm.Forward(x, w5, w4, 1e-5f, y));
        Assert.Equal("bias", bias.ParamName);
        Assert.Contains("[4]", bias.Message);

        using var rstd3 = Tensor.Zeros(device, 3);
        var rstd = Assert.Throws<ArgumentException>(() => RmsNorm.Forward(x, null, 1e-6f, y, rstd3));
        Assert.Equal("rstd", rstd.ParamName);
        Assert.Contains("[3]", rstd.Message);
        Assert.Contains("[2]", rstd.Message);

        using var dx = Tensor.Zeros(device, 2, 5);
        var dWeight = Assert.Throws<ArgumentException>(() => LayerNorm.Backward(x, w5, y, 1e-5f, dx, w4));
        Assert.Equal("dWeight", dWeight.ParamName);
        var noWeight = Assert.Throws<ArgumentException>(() => RmsNorm.Backward(x, null, y, 1e-6f, dx, w5));
        Assert.Equal("dWeight", noWeight.ParamName);
    }

    [Fact]
    public void Gradient_shapes_must_match_x()
    {
        using var x = Tensor.Zeros(device, 2, 5);
        using var dyWrong = Tensor.Zeros(device, 5, 2);
        using var dy = Tensor.Zeros(device, 2, 5);
        using var dx = Tensor.Zeros(device, 2, 5);
        using var dxWrong = Tensor.Zeros(device, 10);

        var error = Assert.Throws<ArgumentException>(() => RmsNorm.Backward(x, null, dyWrong, 1e-6f, dx));
        Assert.Equal("dy", error.ParamName);
        Assert.Contains("[5, 2]", error.Message);
        Assert.Contains("[2, 5]", error.Message);

        var layer = Assert.Throws<ArgumentException>(() => LayerNorm.Backward(x, null, dyWrong, 1e-5f, dx));
        Assert.Equal("dy", layer.ParamName);

        var output = Assert.Throws<ArgumentException>(() => LayerNorm.Backward(x, null, dy, 1e-5f, dxWrong));
        Assert.Equal("dx", output.ParamName);
        Assert.Contains("[10]", output.Message);
    }

    [Theory]
    [InlineData(-1e-6f)]
    [InlineData(float.NaN)]
    [InlineData(float.PositiveInfinity)]
    public void Eps_must_be_finite_and_not_negative(float eps)
    {
        using var x = Tensor.Zeros(device, 2, 5);
        using var y = Tensor.Zeros(device, 2, 5);
        Assert.Equal("eps", Assert.Throws<ArgumentOutOfRangeException>(() => RmsNorm.Forward(x, null, eps, y)).ParamName);
        Assert.Equal("eps",
            Assert.Throws<ArgumentOutOfRangeException>(() => LayerNorm.Forward(x, null, null, eps, y)).ParamName);
        Assert.Equal("eps",
            Assert.Throws<ArgumentOutOfRangeException>(() => RmsNorm.Backward(x, null, y, eps, x)).ParamName);
        Assert.Equal("eps",
            Assert.Throws<ArgumentOutOfRangeException>(() => LayerNorm.Backward(x, null, y, eps, x)).ParamName);
    }

    [Fact]
    public void Rows_need_at_least_one_dimension_and_one_element()
    {
        using var scalar = Tensor.Zeros(device);
        using var empty = Tensor.Zeros(device, 3, 0);
        Assert.Equal("x", Assert.Throws<ArgumentException>(() => RmsNorm.Forward(scalar, null, 0f, scalar)).ParamName);
        var error = Assert.Throws<ArgumentException>(() => LayerNorm.Forward(empty, null, null, 1e-5f, empty));
        Assert.Equal("x", error.ParamName);
        Assert.Contains("[3, 0]", error.Message);
    }

    [Fact]
    public void Layer_norm_statistics_come_in_pairs()
    {
        using var x = Tensor.Zeros(device, 2, 5);
        using var y = Tensor.Zeros(device, 2, 5);
        using var mean = Tensor.Zeros(device, 2);
        var error = Assert.Throws<ArgumentException>(() => LayerNorm.Forward(x, null, null, 1e-5f, y, mean));
        Assert.Equal("rstd", error.ParamName);
        error = Assert.Throws<ArgumentException>(() => LayerNorm.Backward(x, null, y, 1e-5f, x, rstd: mean));
        Assert.Equal("mean", error.ParamName);
    }

    [Fact]
    public void Outputs_that_alias_inputs_are_rejected_before_anything_is_written()
    {
        using var x = Tensor.FromHost(device, Numerics.Uniform(35, 10), 2, 5);
        using var dy = Tensor.FromHost(device, Numerics.Uniform(36, 10), 2, 5);
        using var w = Tensor.FromHost(device, Numerics.Uniform(37, 5), 5);
        using var rows = Tensor.Zeros(device, 4, 5);
        var before = dy.ToHost();

        var error = Assert.Throws<ArgumentException>(() => RmsNorm.Backward(x, w, dy, 1e-6f, dy));
        Assert.Equal("dx", error.ParamName);
        error = Assert.Throws<ArgumentException>(() => RmsNorm.Forward(rows.Slice(0, 2), null, 1e-6f, rows.Slice(1, 2)));
        Assert.Equal("y", error.ParamName);
        error = Assert.Throws<ArgumentException>(() => LayerNorm.Backward(x, w, dy, 1e-5f, rows.Slice(0, 2), w));
        Assert.Equal("dWeight", error.ParamName);

        using var y = Tensor.FromHost(device, Enumerable.Repeat(7f, 10).ToArray(), 2, 5);
        using var badRstd = Tensor.Zeros(device, 3);
        Assert.Throws<ArgumentException>(() => RmsNorm.Forward(x, w, 1e-6f, y, badRstd));
        Assert.All(y.ToHost(), v => Assert.Equal(7f, v));
        Assert.Equal(before, dy.ToHost());
    }

    [Fact]
    public void Group_sizes_that_cannot_be_launched_are_rejected()
    {
        using var x = Tensor.Zeros(device, 2, 5);
        using var y = Tensor.Zeros(device, 2, 5);
        using var dx = Tensor.Zeros(device, 2, 5);
        Assert.Throws<ArgumentOutOfRangeException>(() => RmsNorm.Forward(x, null, 1e-6f, y, null,
            new NormalizationOptions(NormalizationForm.GroupPerRow, 3, 32)));
        Assert.Throws<ArgumentOutOfRangeException>(() => RmsNorm.Forward(x, null, 1e-6f, y, null,
            new NormalizationOptions(NormalizationForm.GroupPerRow, device.MaxGroupSize * 2, 32)));
        Assert.Throws<ArgumentOutOfRangeException>(() => RmsNorm.Backward(x, null, y, 1e-6f, dx, null, null,
            new NormalizationOptions(NormalizationForm.ThreadPerRow, 1, 0)));
    }

    private static void AssertGradient(string what, double[] analytic, double[] at, Func<double[], double> loss)
    {
        const double h = 1e-6;
        for (var i = 0; i < at.Length; i++)
        {
            var plus = (double[])at.Clone();
            var minus = (double[])at.Clone();
            plus[i] += h;
            minus[i] -= h;
            var numeric = (loss(plus) - loss(minus)) / (2 * h);
            Assert.True(Math.Abs(numeric - analytic[i]) <= 1e-6 * (1 + Math.Abs(analytic[i])),
                $"{what}[{i}]: analytic {analytic[i]:R}, finite difference {numeric:R}.");
        }
    }
}
