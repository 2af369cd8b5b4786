using RetNet.Ilgpu.Kernels.HeadGroups;
using RetNet.Ilgpu.Kernels.Rotation;
using RetNet.Ilgpu.Tests.Support;
using Xunit.Abstractions;

namespace RetNet.Ilgpu.Tests.Kernels;

/// <summary>
/// Grouped key/value heads against their double reference (spreading forward, summing backward, which must be each
/// other's transpose), the negative control that the comparison rejects kv heads assigned round-robin instead of in
/// blocks, and GPT-NeoX's rotation layout against its reference.
/// </summary>
[Collection(DeviceCollection.Name)]
public sealed class HeadGroupsTests(DeviceFixture fixture, ITestOutputHelper log)
{
    private readonly RetNetDevice device = fixture.Device;

    [Theory]
    [InlineData(1, 1, 1, 1)]
    [InlineData(6, 2, 2, 16)]
    [InlineData(3, 3, 4, 5)]
    public void Expand_and_reduce_match_the_reference_and_are_transposes(int rows, int kvHeads, int group, int width)
    {
        var heads = kvHeads * group;
        var kv = Numerics.Uniform(7, rows * kvHeads * width);
        var spread = Numerics.Uniform(8, rows * heads * width);
        using var tkv = Tensor.FromHost(device, kv, rows, kvHeads, width);
        using var expanded = Tensor.Zeros(device, rows, heads, width);
        using var tspread = Tensor.FromHost(device, spread, rows, heads, width);
        using var reduced = Tensor.Zeros(device, rows, kvHeads, width);
        HeadGroups.Expand(tkv, expanded);
        HeadGroups.Reduce(tspread, reduced);
        var e = expanded.ToHost();
        var r = reduced.ToHost();
        Numerics.AssertClose("expand", e, HeadGroupsReference.Expand(kv.Select(v => (double)v).ToArray(), rows, kvHeads, group, width), 1e-7);
        Numerics.AssertClose("reduce", r, HeadGroupsReference.Reduce(spread.Select(v => (double)v).ToArray(), rows, kvHeads, group, width), 1e-6);
        // ⟨expand(a), b⟩ = ⟨a, reduce(b)⟩: the backward is the forward's transpose.
        double left = e.Zip(spread, (x, y) => (double)x * y).Sum(), right = kv.Zip(r, (x, y) => (double)x * y).Sum();
        Assert.True(Math.Abs(left - right) <= 1e-5 * Math.Max(1, Math.Abs(left)), $"⟨Ea, b⟩ {left} ≠ ⟨a, Rb⟩ {right}");
    }

    [Fact]
    public void Check_rejects_kv_heads_assigned_round_robin()
    {
        const int rows = 2, kvHeads = 2, group = 2, width = 4, heads = kvHeads * group;
        var kv = Numerics.Uniform(9, rows * kvHeads * width);
        using var tkv = Tensor.FromHost(device, kv, rows, kvHeads, width);
        using var expanded = Tensor.Zeros(device, rows, heads, width);
        HeadGroups.Expand(tkv, expanded);
        // Query head j reading kv head j mod (H/G) instead of ⌊j/G⌋.
        var roundRobin = new double[rows * heads * width];
        for (var n = 0; n < rows; n++)
        for (var j = 0; j < heads; j++)
        for (var d = 0; d < width; d++)
            roundRobin[(n * heads + j) * width + d] = kv[(n * kvHeads + j % kvHeads) * width + d];
        var check = Numerics.Check("expand against round-robin heads", expanded.ToHost(), roundRobin, 1e-7);
        log.WriteLine(check.Message);
        Numerics.AssertRejected(check);
    }

    [Fact]
    public void Bad_shapes_are_refused_naming_the_argument()
    {
        using var kv = Tensor.Zeros(device, 2, 3, 4);
        using var query = Tensor.Zeros(device, 2, 4, 4);
        Assert.Equal("destination", Assert.Throws<ArgumentException>(() => HeadGroups.Expand(kv, query)).ParamName);
        using var other = Tensor.Zeros(device, 3, 6, 4);
        Assert.Equal("source", Assert.Throws<ArgumentException>(() => HeadGroups.Reduce(other, kv)).ParamName);
    }

    [Theory]
    [InlineData(2, 5, 3, 8)]
    [InlineData(1, 3, 2, 16)]
    public void Halves_rotation_matches_its_reference_and_differs_from_interleaved(int batch, int seqLen, int heads, int headDim)
    {
        var x = Numerics.Uniform(batch + seqLen, batch * seqLen * heads * headDim);
        var starts = Enumerable.Range(0, batch).Select(b => 3 + 500 * b).ToArray();
        using var tensor = Tensor.FromHost(device, x, batch, seqLen, heads, headDim);
        ThetaShift.Apply(tensor, starts, 1f, RotaryLayout.Halves);
        var xd = x.Select(v => (double)v).ToArray();
        Numerics.AssertClose("halves rotation", tensor.ToHost(),
            RotationReference.Apply(xd, batch, seqLen, heads, headDim, starts, 1, RotaryLayout.Halves), 1e-3);
        Numerics.AssertRejected(Numerics.Check("halves against interleaved", tensor.ToHost(),
            RotationReference.Apply(xd, batch, seqLen, heads, headDim, starts, 1, RotaryLayout.Interleaved), 1e-3));
    }

    [Fact]
    public void Neox_angles_are_theta_to_the_minus_two_i_over_d()
    {
        var angles = RotationReference.Angles(8, RotaryLayout.Halves);
        Assert.Equal([1.0, Math.Pow(10000, -0.25), Math.Pow(10000, -0.5), Math.Pow(10000, -0.75)], angles);
    }
}
