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
    // rotation is held to 1e-3 (the tolerance of the model's theta-shift test), still far below a position's turn.
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

    [Fact]
    public void ThetaShift_matches_the_reference_at_each_sequences_positions()
    {
        var x = Numerics.Uniform(50, Batch * SeqLen * Heads * HeadDim);
        Numerics.AssertClose("theta shift", Rotated(x), Reference(x, Starts), Tolerance);
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
