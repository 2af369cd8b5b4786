using RetNet.Ilgpu.Kernels;
using RetNet.Ilgpu.Kernels.CrossEntropy;
using RetNet.Ilgpu.Kernels.Normalization;
using RetNet.Ilgpu.Kernels.Reductions;
using RetNet.Ilgpu.Tests.Support;

namespace RetNet.Ilgpu.Tests.Kernels;

/// <summary>
/// The two-level sub-group variants of the row and whole-tensor reductions, at every group size the device can run
/// them with, on rows that are not multiples of any sub-group size, against the float64 references; and the device
/// policy's choice of variant and group size as a pure function.
/// </summary>
[Collection(DeviceCollection.Name)]
public sealed class SubGroupReductionTests(DeviceFixture fixture)
{
    private const int Ignore = CrossEntropy.DefaultIgnoreIndex;
    private const float Eps = 1e-5f;
    private const int Preferred = DevicePolicy.PreferredReductionGroup;
    private readonly RetNetDevice device = fixture.Device;

    public static TheoryData<int> RowLengths => [1, 3, 37, 1000];

    [Theory]
    [InlineData(8)]
    [InlineData(16)]
    [InlineData(32)]
    [InlineData(64)]
    public void Policy_group_is_a_whole_number_of_sub_groups_within_the_limit(int subGroup)
    {
        foreach (var maxGroup in new[] { 64, 256, 1024 })
            foreach (var rowLength in new[] { 1, 3, 37, 1000, int.MaxValue })
            {
                var size = DevicePolicy.ReductionGroupSize(GroupReduction.SubGroups, subGroup, maxGroup, rowLength,
                    Preferred);
                var what = $"sub-group {subGroup}, limit {maxGroup}, row {rowLength}: {size}";
                Assert.True(size > 0 && size % subGroup == 0 && size <= maxGroup, what);
                Assert.True(size <= Math.Max(subGroup, DevicePolicy.PreferredReductionGroup), what);
                Assert.True(size >= Math.Min(rowLength, Math.Min(maxGroup, DevicePolicy.PreferredReductionGroup)),
                    $"{what}: smaller than the row needs");
                var tree = DevicePolicy.ReductionGroupSize(GroupReduction.SharedMemoryTree, subGroup, maxGroup,
                    rowLength, Preferred);
                Assert.True(tree > 0 && (tree & (tree - 1)) == 0 && tree <= maxGroup, $"tree {what}");
            }
        // Long rows get the 256-thread group on every GPU: 4 AMD wavefronts, 8 NVIDIA warps, 8–32 Intel sub-groups.
        Assert.Equal(256,
            DevicePolicy.ReductionGroupSize(GroupReduction.SubGroups, subGroup, 1024, int.MaxValue, Preferred));
        // A single-element row still gets one whole sub-group.
        Assert.Equal(subGroup, DevicePolicy.ReductionGroupSize(GroupReduction.SubGroups, subGroup, 1024, 1, Preferred));
    }

    /// <summary>Each device class with the sub-group sizes and group limits its hardware reports.</summary>
    [Theory]
    [InlineData("NVIDIA (CUDA)", 32, 1024, 256)]
    [InlineData("AMD GCN/CDNA", 64, 256, 256)]
    [InlineData("AMD RDNA", 32, 1024, 256)]
    [InlineData("Intel SIMD8", 8, 512, 256)]
    [InlineData("Intel SIMD16", 16, 1024, 256)]
    [InlineData("Intel SIMD32", 32, 1024, 256)]
    [InlineData("CPU accelerator", 4, 16, 16)]
    public void Policy_gives_each_device_class_whole_sub_groups_for_long_rows(string device, int subGroup,
        int maxGroup, int expected)
    {
        var size = DevicePolicy.ReductionGroupSize(GroupReduction.SubGroups, subGroup, maxGroup, int.MaxValue,
            Preferred);
        Assert.True(size == expected && size % subGroup == 0 && size <= maxGroup, $"{device}: {size}");
    }

    [Fact]
    public void Policy_refuses_a_sub_group_larger_than_the_device_group_and_sizes_PoCL_to_the_row()
    {
        // Negative control: no group within the limit holds a whole sub-group.
        Assert.Equal(0, DevicePolicy.ReductionGroupSize(GroupReduction.SubGroups, 64, 32, 1000, Preferred));
        // PoCL's CPU device reports 4096 and makes each work-group one sub-group: the group follows the row, from the
        // smallest local size PoCL runs sub-group built-ins at.
        Assert.Equal(4, DevicePolicy.ReductionGroupSize(GroupReduction.SubGroups, 4096, 4096, 1, Preferred));
        Assert.Equal(64, DevicePolicy.ReductionGroupSize(GroupReduction.SubGroups, 4096, 4096, 37, Preferred));
        Assert.Equal(256, DevicePolicy.ReductionGroupSize(GroupReduction.SubGroups, 4096, 4096, 1000, Preferred));
        // With PoCL's own preference (it gets the tree, but an explicit sub-group launch follows the same rule).
        Assert.Equal(16, DevicePolicy.ReductionGroupSize(GroupReduction.SubGroups, 4096, 4096, 1000,
            DevicePolicy.PreferredOpenClCpuReductionGroup));
    }

    [Fact]
    public void Device_policy_launches_only_what_the_device_supports()
    {
        var policy = device.Policy;
        var size = policy.ReductionGroupSize(1000);
        Assert.True(size >= 1 && size <= device.MaxGroupSize && (size & (size - 1)) == 0, $"group {size}");
        if (policy.Reduction == GroupReduction.SubGroups)
        {
            Assert.True(policy.SupportsSubGroups);
            Assert.Equal(0, size % policy.SubGroupGranularity);
        }
        if (policy.SupportsSubGroups && policy.SubGroupGranularity > 1)
            Assert.Throws<ArgumentOutOfRangeException>(() => new NormalizationOptions(
                NormalizationForm.SubGroupPerRow, policy.SubGroupGranularity / 2, 32).Validate(device));
        if (!policy.SupportsSubGroups)
            Assert.Throws<ArgumentOutOfRangeException>(() =>
                new CrossEntropyLaunch(CrossEntropyForm.RowPerSubGroups, 1).Validate(device));
    }

    [Theory, MemberData(nameof(RowLengths))]
    public void Normalizations_match_the_reference_at_every_sub_group_size(int dim)
    {
        const int rows = 3;
        var x = Numerics.Uniform(dim + 1, rows * dim, 2f);
        var weight = Numerics.Uniform(dim + 2, dim).Select(v => 1 + 0.5f * v).ToArray();
        var bias = Numerics.Uniform(dim + 3, dim);
        var dy = Numerics.Uniform(dim + 4, rows * dim);
        var (xd, wd, dyd) = (ToDouble(x), ToDouble(weight), ToDouble(dy));
        var rmsForward = NormalizationReference.RmsNormForward(xd, wd, dim, Eps);
        var rmsBackward = NormalizationReference.RmsNormBackward(xd, wd, dyd, dim, Eps);
        var layerForward = NormalizationReference.LayerNormForward(xd, wd, ToDouble(bias), dim, Eps);
        var layerBackward = NormalizationReference.LayerNormBackward(xd, wd, dyd, dim, Eps);
        using var tx = Tensor.FromHost(device, x, rows, dim);
        using var tw = Tensor.FromHost(device, weight, dim);
        using var tb = Tensor.FromHost(device, bias, dim);
        using var tdy = Tensor.FromHost(device, dy, rows, dim);
        using var y = Tensor.Zeros(device, rows, dim);
        using var dx = Tensor.Zeros(device, rows, dim);
        using var mean = Tensor.Zeros(device, rows);
        using var rstd = Tensor.Zeros(device, rows);

        foreach (var groupSize in SubGroupSizes())
        {
            var options = new NormalizationOptions(NormalizationForm.SubGroupPerRow, groupSize, 2);
            RmsNorm.Forward(x: tx, weight: tw, eps: Eps, y: y, rstd: rstd, options: options);
            var rmsY = y.ToHost();
            Numerics.AssertClose($"RMSNorm y, G {groupSize}", rmsY, rmsForward.Y);
            Numerics.AssertClose($"RMSNorm rstd, G {groupSize}", rstd.ToHost(), rmsForward.Rstd);
            // Negative control: the same values one row out of place.
            if (dim > 1)
                Numerics.AssertRejected(Numerics.Check("RMSNorm y shifted a row", Shift(rmsY, dim), rmsForward.Y));
            RmsNorm.Backward(tx, tw, tdy, Eps, dx, dWeight: null, rstd: rstd, options: options);
            Numerics.AssertClose($"RMSNorm dx, G {groupSize}", dx.ToHost(), rmsBackward.Dx, floor:
                NormalizationConfigurations.GradientFloor(xd, wd, dyd, dim, rmsForward.Rstd, null));

            LayerNorm.Forward(tx, tw, tb, Eps, y, mean, rstd, options);
            Numerics.AssertClose($"LayerNorm y, G {groupSize}", y.ToHost(), layerForward.Y);
            Numerics.AssertClose($"LayerNorm mean, G {groupSize}", mean.ToHost(), layerForward.Mean, floor: 2);
            LayerNorm.Backward(tx, tw, tdy, Eps, dx, null, null, mean, rstd, options);
            var layerDx = dx.ToHost();
            var floor = NormalizationConfigurations.GradientFloor(xd, wd, dyd, dim, layerForward.Rstd,
                layerForward.Mean);
            Numerics.AssertClose($"LayerNorm dx, G {groupSize}", layerDx, layerBackward.Dx, floor: floor);
            if (dim > 1)
                Numerics.AssertRejected(Numerics.Check("LayerNorm dx shifted a row", Shift(layerDx, dim),
                    layerBackward.Dx, floor: floor));
        }
    }

    [Theory, MemberData(nameof(RowLengths))]
    public void Cross_entropy_matches_the_reference_at_every_sub_group_size(int classes)
    {
        const int rows = 5;
        var logits = Numerics.Uniform(classes + 5, rows * classes, 5f);
        var random = new Random(classes);
        var targets = Enumerable.Range(0, rows).Select(n => n == 3 ? Ignore : random.Next(classes)).ToArray();
        var (expectedLoss, expectedGradient) =
            CrossEntropyReference.ForwardBackward(ToDouble(logits), targets, classes, Ignore);
        var count = targets.Count(t => t != Ignore);
        var expectedRowGradient = expectedGradient.Select(g => g * count).ToArray();
        using var tLogits = Tensor.FromHost(device, logits, rows, classes);
        using var tTargets = IndexTensor.FromHost(device, targets, rows);
        using var dLogits = Tensor.Zeros(device, rows, classes);
        using var loss = Tensor.Zeros(device, 1);

        foreach (var groupSize in SubGroupSizes())
        {
            CrossEntropy.Run(tLogits, tTargets, dLogits, loss, Ignore, 1f,
                new CrossEntropyLaunch(CrossEntropyForm.RowPerSubGroups, groupSize));
            Numerics.AssertClose($"loss, G {groupSize}", loss.ToHost(), [expectedLoss]);
            // Gradients times the counted rows: softmax − onehot, in [−1, 1] per element.
            var rowGradient = dLogits.ToHost().Select(g => g * count).ToArray();
            Numerics.AssertClose($"dLogits, G {groupSize}", rowGradient, expectedRowGradient);
            // Negative control (one class has a zero gradient, so nothing to shift).
            if (classes > 1)
                Numerics.AssertRejected(Numerics.Check("dLogits shifted a row", Shift(rowGradient, classes),
                    expectedRowGradient));
        }
    }

    [Theory]
    [InlineData(1)]
    [InlineData(3)]
    [InlineData(1000)]
    [InlineData(4099)]
    public void Whole_tensor_reductions_match_the_reference_at_every_sub_group_size(int n)
    {
        var x = Numerics.Uniform(n, n, 3f);
        using var tx = Tensor.FromHost(device, x, n);
        using var result = Tensor.Zeros(device, 1);
        var sum = ReductionReference.Sum(x);
        var squares = ReductionReference.SumOfSquares(x);
        foreach (var groupSize in SubGroupSizes())
            foreach (var groups in new[] { 1, 3 })
            {
                var launch = new ReductionLaunch(groupSize, groups, GroupReduction.SubGroups);
                Reductions.Reduce<SumReduction, SumReduction>([tx], "x", result, 1f, launch);
                var actual = result.ToHost();
                Numerics.AssertClose($"sum {launch}", actual, [sum], 1e-5, Math.Sqrt(n) * 3);
                // Negative control: a total that lost the elements of the group's last thread (part of its last
                // sub-group's partial) in the first group.
                if (n >= groupSize && n > 1)
                {
                    var dropped = sum - x.Where((_, i) => i < groupSize * groups && i % groupSize == groupSize - 1)
                        .Sum(v => (double)v);
                    Numerics.AssertRejected(Numerics.Check("sum without the last thread", actual, [dropped], 1e-5,
                        Math.Sqrt(n) * 3));
                }
                Reductions.Reduce<SquareSumReduction, SumReduction>([tx], "x", result, 0.5f, launch);
                Numerics.AssertClose($"half sum of squares {launch}", result.ToHost(), [0.5 * squares], 1e-5);
                Reductions.Reduce<AbsMaxReduction, AbsMaxReduction>([tx], "x", result, 1f, launch);
                Assert.Equal((float)ReductionReference.MaxAbs(x), result.ToHost()[0]);
            }
    }

    [Fact]
    public void Sub_group_sum_of_squares_of_ten_million_elements_keeps_fp32_precision()
    {
        // The built-in's order is the device's: PoCL adds a 256-wide sub-group in an order that lost 3e-6 here before
        // the sums were split into parts whose totals are exact in any order.
        const int n = 10_000_000;
        var x = new float[n];
        Array.Fill(x, 0.1f);
        using var tx = Tensor.FromHost(device, x, n);
        using var result = Tensor.Zeros(device, 1);
        var expected = ReductionReference.SumOfSquares(x);
        const double tolerance = 1e-6;
        var sizes = SubGroupSizes().ToList();
        foreach (var groupSize in sizes.Count == 0 ? [] : new[] { sizes[^1] })
        {
            Reductions.Reduce<SquareSumReduction, SumReduction>([tx], "x", result, 1f,
                new ReductionLaunch(groupSize, 1024, GroupReduction.SubGroups));
            Numerics.AssertClose($"G {groupSize}", result.ToHost(), [expected], tolerance);
        }
        // Negative control: a plain sequential fp32 sum (addends round to the sum's ulp above 65536).
        var naive = 0f;
        foreach (var v in x)
            naive += v * v;
        Numerics.AssertRejected(Numerics.Check("sequential fp32 sum", [naive], [expected], tolerance));
    }

    [Fact]
    public void Sub_group_max_abs_reports_NaN_from_any_lane()
    {
        const int n = 777;
        var x = Numerics.Uniform(5, n, 1f);
        x[n - 1] = float.NaN;
        using var tx = Tensor.FromHost(device, x, n);
        using var result = Tensor.Zeros(device, 1);
        foreach (var groupSize in SubGroupSizes())
        {
            Reductions.Reduce<AbsMaxReduction, AbsMaxReduction>([tx], "x", result, 1f,
                new ReductionLaunch(groupSize, 3, GroupReduction.SubGroups));
            Assert.True(float.IsNaN(result.ToHost()[0]), $"G {groupSize}: {result.ToHost()[0]}");
        }
    }

    /// <summary>Every power-of-two group the device runs the sub-group variant with, from one sub-group (the smallest
    /// OpenCL launch where sub-groups shrink) up to 256; none on a device without sub-group operations.</summary>
    private IEnumerable<int> SubGroupSizes()
    {
        if (!device.Policy.SupportsSubGroups)
            yield break;
        var limit = Math.Min(device.MaxGroupSize, DevicePolicy.PreferredReductionGroup);
        for (var size = device.Policy.SubGroupGranularity; size <= limit; size *= 2)
            yield return size;
    }

    /// <summary>The rows rotated down by one: row r holds row r − 1's values.</summary>
    private static float[] Shift(float[] values, int dim) =>
        values.Skip(values.Length - dim).Concat(values.Take(values.Length - dim)).ToArray();

    private static double[] ToDouble(float[] values) => values.Select(v => (double)v).ToArray();
}
