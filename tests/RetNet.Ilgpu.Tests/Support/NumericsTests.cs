namespace RetNet.Ilgpu.Tests.Support;

/// <summary>The tolerance rule itself: relative to the reference, floored only by the inputs' scale and fp32's range.</summary>
public sealed class NumericsTests
{
    [Theory]
    [InlineData(1e-9)]
    [InlineData(1.0)]
    [InlineData(1e9)]
    public void Check_is_relative_to_the_reference_at_any_scale(double scale)
    {
        double[] expected = [2 * scale, -1 * scale, 0.5 * scale];
        float[] close = [(float)(2 * scale * (1 + 5e-5)), (float)(-1 * scale), (float)(0.5 * scale)];
        float[] far = [(float)(2 * scale * (1 + 5e-4)), (float)(-1 * scale), (float)(0.5 * scale)];
        Assert.True(Numerics.Check("close", close, expected).Passed);
        Numerics.AssertRejected(Numerics.Check("far", far, expected));
        Numerics.AssertRejected(Numerics.Check("zeros", new float[3], expected));
    }

    [Fact]
    public void Check_rejects_nan_on_either_side_and_mismatched_lengths()
    {
        Numerics.AssertRejected(Numerics.Check("nan", [1f, float.NaN], [1.0, 2.0]));
        Numerics.AssertRejected(Numerics.Check("nan reference", [1f, 2f], [1.0, double.NaN]));
        Numerics.AssertRejected(Numerics.Check("infinite reference", [1f, 2f], [1.0, double.PositiveInfinity]));
        Numerics.AssertRejected(Numerics.Check("length", [1f], [1.0, 2.0]));
    }

    [Fact]
    public void An_all_zero_reference_demands_zeros_unless_the_inputs_give_a_floor()
    {
        Assert.True(Numerics.Check("zeros", [0f, 0f], [0.0, 0.0]).Passed);
        Numerics.AssertRejected(Numerics.Check("rounding residue", [1e-7f, 0f], [0.0, 0.0]));
        // A cancelling result, 1 − 1 computed from terms of size 1, may carry their rounding.
        Assert.True(Numerics.Check("residue of terms of 1", [1e-7f, 0f], [0.0, 0.0], floor: 1).Passed);
        Numerics.AssertRejected(Numerics.Check("beyond the floor", [1e-3f, 0f], [0.0, 0.0], floor: 1));
    }

    [Fact]
    public void A_reference_below_fp32s_smallest_normal_accepts_zero_and_tolerance_zero_demands_equality()
    {
        // γ^T of a tiny decay: 1e-260 has no fp32 representation, and 0 is the right fp32 answer.
        Assert.True(Numerics.Check("underflow", [0f], [1e-260]).Passed);
        Numerics.AssertRejected(Numerics.Check("representable", [0f], [1e-30]));
        Assert.True(Numerics.Check("exact", [0.1f], [0.1f], tolerance: 0).Passed);
        Numerics.AssertRejected(Numerics.Check("one ulp off", [0.1f], [(double)MathF.BitIncrement(0.1f)], 0));
    }

    [Fact]
    public void The_message_names_the_worst_element_and_the_bound()
    {
        var verdict = Numerics.Check("x", [1f, 2.5f, 3f], [1.0, 2.0, 3.0]);
        Assert.False(verdict.Passed);
        Assert.Equal(0.5, verdict.MaxDifference);
        Assert.Equal(3e-4, verdict.Bound, 12);
        Assert.Contains("at [1] (got 2.5, expected 2)", verdict.Message);
        Assert.Contains("exceeds bound 0.0003 = 0.0001 · max |expected| 3", verdict.Message);
    }
}
