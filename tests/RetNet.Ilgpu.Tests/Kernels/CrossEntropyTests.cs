using RetNet.Ilgpu.Kernels;
using RetNet.Ilgpu.Kernels.CrossEntropy;
using RetNet.Ilgpu.Tests.Support;

namespace RetNet.Ilgpu.Tests.Kernels;

[Collection(DeviceCollection.Name)]
public sealed class CrossEntropyTests(DeviceFixture fixture)
{
    private const int Ignore = CrossEntropy.DefaultIgnoreIndex;
    private readonly RetNetDevice device = fixture.Device;

    public static TheoryData<int, int> Shapes => new()
    {
        { 1, 1 }, { 1, 7 }, { 5, 7 }, { 13, 33 }, { 3, 1000 }, { 2, 4099 },
    };

    [Theory, MemberData(nameof(Shapes))]
    public void Loss_and_gradient_match_the_reference_for_every_form_and_group_size(int rows, int classes)
    {
        var logits = Numerics.Uniform(rows * 31 + classes, rows * classes, 5f);
        var targets = RandomTargets(rows * 7 + classes, rows, classes, ignoreEvery: 4);
        var (expectedLoss, expectedGradient) = Reference(logits, targets, classes);
        foreach (var launch in Launches())
        {
            var (loss, gradient) = Run(launch, logits, targets, [rows, classes]);
            AssertLoss($"loss {launch}", loss, expectedLoss);
            AssertGradient($"dLogits {launch}", gradient, expectedGradient, targets, Ignore);
        }
    }

    [Fact]
    public void Leading_dimensions_are_rows_and_the_public_overload_returns_the_mean()
    {
        const int batch = 2, time = 5, classes = 11;
        var logits = Numerics.Uniform(21, batch * time * classes, 4f);
        var targets = RandomTargets(22, batch * time, classes, ignoreEvery: 3);
        using var tLogits = Tensor.FromHost(device, logits, batch, time, classes);
        using var tTargets = IndexTensor.FromHost(device, targets, batch, time);
        using var dLogits = Tensor.Zeros(device, batch, time, classes);

        var loss = CrossEntropy.ForwardBackward(tLogits, tTargets, dLogits);

        var (expectedLoss, expectedGradient) = Reference(logits, targets, classes);
        AssertLoss("loss", loss, expectedLoss);
        AssertGradient("dLogits", dLogits.ToHost(), expectedGradient, targets, Ignore);
    }

    [Fact]
    public void All_rows_ignored_give_zero_loss_and_zero_gradient_for_every_form()
    {
        const int rows = 3, classes = 9;
        var logits = Numerics.Uniform(23, rows * classes, 3f);
        int[] targets = [Ignore, Ignore, Ignore];
        foreach (var launch in Launches())
        {
            var (loss, gradient) = Run(launch, logits, targets, [rows, classes]);
            Assert.Equal(0f, loss);
            Assert.All(gradient, g => Assert.Equal(0f, g));
        }
        Assert.Equal(0.0, CrossEntropyReference.Loss(logits.Select(v => (double)v).ToArray(), targets, classes));
    }

    [Fact]
    public void Extreme_logits_give_finite_loss_and_gradient()
    {
        const int rows = 4, classes = 37;
        var random = new Random(24);
        var logits = Enumerable.Range(0, rows * classes).Select(_ => random.Next(2) == 0 ? 1e4f : -1e4f).ToArray();
        logits[0] = -1e4f;
        logits[1] = 1e4f;
        // Row 0 targets a −1e4 logit next to a +1e4 one: loss 2e4, probability exp(−2e4) underflows to 0.
        int[] targets = [0, 5, 36, 17];
        var (expectedLoss, expectedGradient) = Reference(logits, targets, classes);
        foreach (var launch in Launches())
        {
            var (loss, gradient) = Run(launch, logits, targets, [rows, classes]);
            Assert.True(float.IsFinite(loss), $"loss {loss} with {launch}");
            Assert.All(gradient, g => Assert.True(float.IsFinite(g), $"gradient {g} with {launch}"));
            AssertLoss($"loss {launch}", loss, expectedLoss);
            AssertGradient($"dLogits {launch}", gradient, expectedGradient, targets, Ignore);
        }
    }

    [Fact]
    public void Gradient_scale_scales_the_gradient_and_not_the_loss()
    {
        const int rows = 6, classes = 10;
        var logits = Numerics.Uniform(25, rows * classes, 2f);
        var targets = RandomTargets(26, rows, classes, ignoreEvery: 5);
        using var tLogits = Tensor.FromHost(device, logits, rows, classes);
        using var tTargets = IndexTensor.FromHost(device, targets, rows);
        using var dLogits = Tensor.Zeros(device, rows, classes);

        var loss = CrossEntropy.ForwardBackward(tLogits, tTargets, dLogits, gradientScale: -2.5f);

        var doubles = logits.Select(v => (double)v).ToArray();
        var expected = CrossEntropyReference.ForwardBackward(doubles, targets, classes, gradientScale: -2.5);
        AssertLoss("loss", loss, expected.Loss);
        AssertGradient("dLogits", dLogits.ToHost(), expected.DLogits, targets, Ignore);
    }

    [Fact]
    public void A_custom_ignore_index_inside_the_classes_skips_those_rows()
    {
        const int rows = 5, classes = 6;
        var logits = Numerics.Uniform(27, rows * classes, 2f);
        int[] targets = [0, 3, 0, 5, 2];
        using var tLogits = Tensor.FromHost(device, logits, rows, classes);
        using var tTargets = IndexTensor.FromHost(device, targets, rows);
        using var dLogits = Tensor.Zeros(device, rows, classes);

        var loss = CrossEntropy.ForwardBackward(tLogits, tTargets, dLogits, ignoreIndex: 0);

        var (expectedLoss, expectedGradient) = Reference(logits, targets, classes, ignoreIndex: 0);
        AssertLoss("loss", loss, expectedLoss);
        AssertGradient("dLogits", dLogits.ToHost(), expectedGradient, targets, 0);
        Assert.All(dLogits.ToHost()[..classes], g => Assert.Equal(0f, g));
    }

    [Fact]
    public void Gradient_may_overwrite_the_logits_in_place_for_every_form()
    {
        const int rows = 7, classes = 45;
        var logits = Numerics.Uniform(28, rows * classes, 6f);
        var targets = RandomTargets(29, rows, classes, ignoreEvery: 3);
        var (expectedLoss, expectedGradient) = Reference(logits, targets, classes);
        using var tTargets = IndexTensor.FromHost(device, targets, rows);
        using var loss = Tensor.Zeros(device, 1);
        foreach (var launch in Launches())
        {
            using var tLogits = Tensor.FromHost(device, logits, rows, classes);
            CrossEntropy.Run(tLogits, tTargets, tLogits, loss, Ignore, 1f, launch);
            AssertLoss($"loss {launch}", loss.ToHost()[0], expectedLoss);
            AssertGradient($"in-place dLogits {launch}", tLogits.ToHost(), expectedGradient, targets, Ignore);
        }
    }

    [Fact]
    public void Device_loss_overload_writes_the_mean_and_returns_the_count()
    {
        const int rows = 8, classes = 5;
        var logits = Numerics.Uniform(30, rows * classes, 1f);
        var targets = RandomTargets(31, rows, classes, ignoreEvery: 4);
        using var tLogits = Tensor.FromHost(device, logits, rows, classes);
        using var tTargets = IndexTensor.FromHost(device, targets, rows);
        using var dLogits = Tensor.Zeros(device, rows, classes);
        using var loss = Tensor.Zeros(device, 1);

        var count = CrossEntropy.ForwardBackward(tLogits, tTargets, dLogits, loss);

        Assert.Equal(targets.Count(t => t != Ignore), count);
        AssertLoss("loss", loss.ToHost()[0], Reference(logits, targets, classes).Loss);
    }

    [Fact]
    public void Zero_rows_give_zero_loss()
    {
        using var logits = Tensor.Zeros(device, 0, 4);
        using var targets = IndexTensor.FromHost(device, [], 0);
        using var dLogits = Tensor.Zeros(device, 0, 4);
        Assert.Equal(0f, CrossEntropy.ForwardBackward(logits, targets, dLogits));
    }

    [Fact]
    public void Results_are_bit_identical_run_to_run_for_every_form()
    {
        const int rows = 9, classes = 1000;
        var logits = Numerics.Uniform(32, rows * classes, 8f);
        var targets = RandomTargets(33, rows, classes, ignoreEvery: 4);
        foreach (var launch in Launches())
        {
            var (loss1, gradient1) = Run(launch, logits, targets, [rows, classes]);
            var (loss2, gradient2) = Run(launch, logits, targets, [rows, classes]);
            Assert.Equal(BitConverter.SingleToInt32Bits(loss1), BitConverter.SingleToInt32Bits(loss2));
            Assert.Equal(gradient1.Select(BitConverter.SingleToInt32Bits), gradient2.Select(BitConverter.SingleToInt32Bits));
        }
    }

    [Fact]
    public void Targets_outside_the_classes_are_rejected_naming_position_value_and_V()
    {
        using var logits = Tensor.Zeros(device, 2, 3, 5);
        using var dLogits = Tensor.Zeros(device, 2, 3, 5);
        using var tooLarge = IndexTensor.FromHost(device, [0, 1, 2, 3, 4, 5], 2, 3);
        var error = Assert.Throws<ArgumentException>(() => CrossEntropy.ForwardBackward(logits, tooLarge, dLogits));
        Assert.Equal("targets", error.ParamName);
        Assert.Contains("has 5 at position 5 (index [1, 2])", error.Message);
        Assert.Contains("[0, 5)", error.Message);
        Assert.Contains("V = 5", error.Message);

        using var negative = IndexTensor.FromHost(device, [0, -1, 2, 3, 4, Ignore], 2, 3);
        var negativeError = Assert.Throws<ArgumentException>(() => CrossEntropy.ForwardBackward(logits, negative, dLogits));
        Assert.Equal("targets", negativeError.ParamName);
        Assert.Contains("has -1 at position 1", negativeError.Message);
    }

    [Fact]
    public void Wrong_shapes_aliases_and_scales_are_rejected_naming_the_argument()
    {
        using var logits = Tensor.Zeros(device, 4, 6);
        using var dLogits = Tensor.Zeros(device, 4, 6);
        using var targets = IndexTensor.FromHost(device, [0, 1, 2, 3], 4);
        using var wrongTargets = IndexTensor.FromHost(device, [0, 1, 2], 3);
        using var wrongGradient = Tensor.Zeros(device, 4, 5);
        using var wrongLoss = Tensor.Zeros(device, 2);
        using var scalar = Tensor.Zeros(device);

        Assert.Equal("targets", Assert.Throws<ArgumentException>(() =>
            CrossEntropy.ForwardBackward(logits, wrongTargets, dLogits)).ParamName);
        Assert.Equal("dLogits", Assert.Throws<ArgumentException>(() =>
            CrossEntropy.ForwardBackward(logits, targets, wrongGradient)).ParamName);
        Assert.Equal("loss", Assert.Throws<ArgumentException>(() =>
            CrossEntropy.ForwardBackward(logits, targets, dLogits, wrongLoss)).ParamName);
        Assert.Equal("loss", Assert.Throws<ArgumentException>(() =>
            CrossEntropy.ForwardBackward(logits, targets, dLogits, dLogits.Reshape(-1).Slice(0, 1))).ParamName);
        Assert.Equal("logits", Assert.Throws<ArgumentException>(() =>
            CrossEntropy.ForwardBackward(scalar, targets, scalar)).ParamName);
        using var wide = Tensor.Zeros(device, 5, 6);
        Assert.Equal("dLogits", Assert.Throws<ArgumentException>(() =>
            CrossEntropy.ForwardBackward(wide.Slice(0, 4), targets, wide.Slice(1, 4))).ParamName);
        Assert.Equal("gradientScale", Assert.Throws<ArgumentOutOfRangeException>(() =>
            CrossEntropy.ForwardBackward(logits, targets, dLogits, gradientScale: float.NaN)).ParamName);
        Assert.Throws<ArgumentOutOfRangeException>(() => CrossEntropy.Run(logits, targets, dLogits, wrongLoss.Slice(0, 1),
            Ignore, 1f, new CrossEntropyLaunch(CrossEntropyForm.RowPerGroup, 3)));
    }

    [Fact]
    public void Reference_gradient_agrees_with_finite_differences()
    {
        const int rows = 4, classes = 6;
        var logits = Numerics.Uniform(34, rows * classes, 3f).Select(v => (double)v).ToArray();
        int[] targets = [2, Ignore, 0, 5];
        const double scale = 1.75;
        var (_, gradient) = CrossEntropyReference.ForwardBackward(logits, targets, classes, gradientScale: scale);
        const double h = 1e-6;
        for (var i = 0; i < logits.Length; i++)
        {
            var plus = (double[])logits.Clone();
            var minus = (double[])logits.Clone();
            plus[i] += h;
            minus[i] -= h;
            var numeric = scale * (CrossEntropyReference.Loss(plus, targets, classes) -
                                   CrossEntropyReference.Loss(minus, targets, classes)) / (2 * h);
            Assert.True(Math.Abs(numeric - gradient[i]) <= 1e-8, $"[{i}]: numeric {numeric}, analytic {gradient[i]}");
        }
    }

    /// <summary>The row-per-thread form and the row-per-group form at every power-of-two group size up to 1024.</summary>
    private IEnumerable<CrossEntropyLaunch> Launches()
    {
        yield return new CrossEntropyLaunch(CrossEntropyForm.RowPerThread, 1);
        for (var size = 1; size <= Launch.PowerOfTwoGroup(device, 1024); size *= 2)
            yield return new CrossEntropyLaunch(CrossEntropyForm.RowPerGroup, size);
    }

    private (float Loss, float[] Gradient) Run(CrossEntropyLaunch launch, float[] logits, int[] targets, int[] shape)
    {
        using var tLogits = Tensor.FromHost(device, logits, shape);
        using var tTargets = IndexTensor.FromHost(device, targets, shape[..^1]);
        using var dLogits = Tensor.FromHost(device, Enumerable.Repeat(7f, logits.Length).ToArray(), shape);
        using var loss = Tensor.Zeros(device, 1);
        CrossEntropy.Run(tLogits, tTargets, dLogits, loss, Ignore, 1f, launch);
        return (loss.ToHost()[0], dLogits.ToHost());
    }

    private static (double Loss, double[] DLogits) Reference(float[] logits, int[] targets, int classes,
        int ignoreIndex = Ignore) =>
        CrossEntropyReference.ForwardBackward(logits.Select(v => (double)v).ToArray(), targets, classes, ignoreIndex);

    private static int[] RandomTargets(int seed, int rows, int classes, int ignoreEvery)
    {
        var random = new Random(seed);
        return Enumerable.Range(0, rows)
            .Select(n => rows > 1 && n % ignoreEvery == ignoreEvery - 1 ? Ignore : random.Next(classes))
            .ToArray();
    }

    private static void AssertLoss(string what, float actual, double expected) =>
        Numerics.AssertClose(what, [actual], [expected]);

    /// <summary>
    /// Compares the gradient times the number of counted rows (elements of softmax − onehot, in [−1, 1]), so the
    /// tolerance is relative to the per-row gradient rather than to its 1/count-scaled size.
    /// </summary>
    private static void AssertGradient(string what, float[] actual, double[] expected, int[] targets, int ignoreIndex)
    {
        var count = Math.Max(1, targets.Count(t => t != ignoreIndex));
        Numerics.AssertClose(what, actual.Select(g => g * count).ToArray(), expected.Select(g => g * count).ToArray());
    }
}
