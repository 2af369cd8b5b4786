using RetNet.Ilgpu.Kernels.Gemm;
using RetNet.Ilgpu.Kernels.Rotation;
using RetNet.Ilgpu.Tests.Support;
using Xunit.Abstractions;

namespace RetNet.Ilgpu.Tests.Kernels;

/// <summary>
/// The theta shift against its double reference at per-sequence start positions, and the negative control that the
/// same comparison rejects a rotation one position off.
/// </summary>
[Collection(DeviceCollection.Name)]
public sealed class RotationTests(DeviceFixture fixture, ITestOutputHelper log)
{
    private readonly RetNetDevice device = fixture.Device;

    // The kernel forms the angle p·θ in fp32: at positions past 1000 that carries ~1e-4 rad of rounding, so the
    // rotation is held to 1e-3, still far below the turn of one position.
    private const double Tolerance = 1e-3;

    private const int Batch = 3, SeqLen = 5, Heads = 2, HeadDim = 16;

    private static readonly int[] Starts = [0, 1037, 74];

    private float[] Rotated(float[] x)
    {
        using var tensor = Tensor.FromHost(device, x, Batch, SeqLen, Heads, HeadDim);
        ThetaShift.Apply(tensor, Starts);
        return tensor.ToHost();
    }

    private static double[] Reference(float[] x, IReadOnlyList<int> starts) =>
        RotationReference.Apply(x.Select(v => (double)v).ToArray(), Batch, SeqLen, Heads, HeadDim, starts);

    [Theory]
    [InlineData(2, 5, 3, 8, 1f)]
    [InlineData(1, 3, 1, 2, 0.25f)]
    [InlineData(3, 1, 2, 16, 1f)]
    public void ThetaShift_matches_the_double_reference_at_per_sequence_positions(int batch, int seqLen, int heads,
        int headDim, float scale)
    {
        var x = Numerics.Uniform(batch * 10 + seqLen, batch * seqLen * heads * headDim);
        var starts = Enumerable.Range(0, batch).Select(b => b * 37 + 1000 * (b % 2)).ToArray();
        using var tensor = Tensor.FromHost(device, x, batch, seqLen, heads, headDim);
        ThetaShift.Apply(tensor, starts, scale);
        var expected = RotationReference.Apply(x.Select(v => (double)v).ToArray(), batch, seqLen, heads, headDim,
            starts, scale);
        Numerics.AssertClose("theta shift", tensor.ToHost(), expected, Tolerance);
    }

    [Fact]
    public void The_host_rotation_gives_the_kernels_bits_when_its_table_is_reused_and_when_it_is_not()
    {
        // Host execution rotates as host code and keeps the last call's cosines and sines: calls with the same
        // positions and angles reuse them, any other positions or angles recompute. Every call must give the
        // kernel's bits, whichever happened, and the kernel must match the reference (the check rejects a rotation
        // one position off, below).
        using var host = RetNetDevice.Open(DeviceKind.Cpu, CpuExecution.Host);
        var x = Numerics.Uniform(31, Batch * SeqLen * Heads * HeadDim);
        int[][] positions = [Starts, Starts, [0, 1037, 75], [5, 5, 5], [5, 5, 5], Starts];
        var interleaved = ThetaShift.Angles(HeadDim);
        var halves = ThetaShift.Angles(HeadDim, RotaryLayout.Halves);
        var call = 0;
        foreach (var layout in new[] { RotaryLayout.Interleaved, RotaryLayout.Halves, RotaryLayout.Interleaved })
        {
            foreach (var starts in positions)
            {
                var angleValues = layout == RotaryLayout.Halves ? halves : interleaved;
                using var angles = Tensor.FromHost(host, angleValues, HeadDim / 2);
                using var startTensor = IndexTensor.FromHost(host, starts, Batch);
                using var viaHost = Tensor.FromHost(host, x, Batch, SeqLen, Heads, HeadDim);
                using var viaKernel = Tensor.FromHost(host, x, Batch, SeqLen, Heads, HeadDim);
                ThetaShift.Apply(viaHost, startTensor, angles, 0.5f, layout, hostLoop: true);
                ThetaShift.Apply(viaKernel, startTensor, angles, 0.5f, layout, hostLoop: false);
                Assert.True(viaKernel.ToHost().SequenceEqual(viaHost.ToHost()),
                    $"call {call} ({layout}, starts {string.Join(",", starts)}): host rotation differs from the kernel.");
                if (layout == RotaryLayout.Interleaved)
                    Numerics.AssertClose($"call {call}", viaHost.ToHost(),
                        Reference(x, starts).Select(v => 0.5 * v).ToArray(), Tolerance);
                call++;
            }
        }
    }

    // Paths travel as names: the enum is internal to the library and theory methods are public. Head dimensions
    // with a whole number of vectors of both widths, with a tail after them, and shorter than one vector.
    public static TheoryData<string, int> PathsAndHeadDims()
    {
        var data = new TheoryData<string, int>();
        foreach (var path in new[] { HostGemmPath.Vector512, HostGemmPath.Vector256, HostGemmPath.Scalar })
            foreach (var headDim in new[] { 2, 6, 16, 34, 64 })
                data.Add(path.ToString(), headDim);
        return data;
    }

    [Theory, MemberData(nameof(PathsAndHeadDims))]
    public void Every_host_path_gives_the_kernels_bits_in_both_layouts(string pathName, int headDim)
    {
        // Vectors hold whole interleaved pairs (x·c₂ + swap(x)·s₂) or runs of halves; pairs past the last vector take
        // the scalar loop. Each must give the kernel's bits, at positions where the angles are large.
        var path = Enum.Parse<HostGemmPath>(pathName);
        using var host = RetNetDevice.Open(DeviceKind.Cpu, CpuExecution.Host);
        const int batch = 3, seqLen = 2, heads = 3;
        var x = Numerics.Uniform(headDim, batch * seqLen * heads * headDim);
        foreach (var layout in new[] { RotaryLayout.Interleaved, RotaryLayout.Halves })
        {
            var angleValues = ThetaShift.Angles(headDim, layout);
            using var startTensor = IndexTensor.FromHost(host, [0, 1037, 74], batch);
            float[] Rotate(float[] angleSet, bool hostLoop)
            {
                using var angles = Tensor.FromHost(host, angleSet, headDim / 2);
                using var tensor = Tensor.FromHost(host, x, batch, seqLen, heads, headDim);
                ThetaShift.Apply(tensor, startTensor, angles, 0.75f, layout, hostLoop, path);
                return tensor.ToHost();
            }
            var kernel = Rotate(angleValues, hostLoop: false);
            var viaHost = Rotate(angleValues, hostLoop: true);
            Assert.True(kernel.SequenceEqual(viaHost), $"{path}, Dk {headDim}, {layout}: host rotation differs from the kernel.");
            // Negative control: the rotation the other way (what a sign slip in the sines would give) is told apart.
            var backwards = Rotate(angleValues.Select(a => -a).ToArray(), hostLoop: false);
            Assert.False(backwards.SequenceEqual(viaHost), $"{path}, Dk {headDim}, {layout}: the backward rotation passed.");
        }
    }

    [Fact]
    public void Angles_follow_torchscale_linspace_including_one()
    {
        var angles = RotationReference.Angles(8);
        Assert.Equal(1.0, angles[0]);
        Assert.Equal(1e-4, angles[3], 12);
        Assert.Equal([1.0], RotationReference.Angles(2));
        Assert.Throws<ArgumentOutOfRangeException>(() => RotationReference.Angles(3));
    }

    [Fact]
    public void ThetaShift_rejects_bad_arguments()
    {
        using var odd = Tensor.Zeros(device, 1, 2, 1, 3);
        Assert.Equal("x", Assert.Throws<ArgumentException>(() => ThetaShift.Apply(odd, [0])).ParamName);
        using var x = Tensor.Zeros(device, 2, 2, 1, 4);
        Assert.Equal("startPositions", Assert.Throws<ArgumentException>(() => ThetaShift.Apply(x, [0])).ParamName);
        Assert.Equal("startPositions", Assert.Throws<ArgumentException>(() => ThetaShift.Apply(x, [0, -1])).ParamName);
    }

    [Fact]
    public void Check_rejects_a_rotation_one_position_off()
    {
        // The reference at p + 1: the first pair turns by one more radian, the rotation of a neighbouring token.
        var x = Numerics.Uniform(51, Batch * SeqLen * Heads * HeadDim);
        var check = Numerics.Check("theta shift against position p + 1", Rotated(x),
            Reference(x, Starts.Select(p => p + 1).ToArray()), Tolerance);
        log.WriteLine(check.Message);
        Numerics.AssertRejected(check);
    }
}
