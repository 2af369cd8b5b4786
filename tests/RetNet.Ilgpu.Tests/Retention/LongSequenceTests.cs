using RetNet.Ilgpu.Retention;
using RetNet.Ilgpu.Tests.Support;

namespace RetNet.Ilgpu.Tests.Retention;

/// <summary>
/// Retention over 65,536 tokens (narrow heads so that it runs on the CPU in CI): chunkwise forward and backward and
/// the recurrent scan stay finite and agree with the float64 recurrence, for a decay within 2⁻²⁰ of 1 and for
/// torchscale's schedule. Over that many tokens (1 − 2⁻²⁰)^T ≈ 0.94, so a γ rounded to 1 anywhere would be caught.
/// </summary>
[Collection(DeviceCollection.Name)]
public sealed class LongSequenceTests(DeviceFixture fixture)
{
    private const int SeqLen = 65_536, Dim = 8;
    private const double Tolerance = 1e-3;

    private readonly RetNetDevice device = fixture.Device;

    public static TheoryData<string> Schedules => ["one minus 2^-20", "torchscale"];

    private static DecaySchedule Schedule(string name) => name == "torchscale"
        ? DecaySchedule.Torchscale(4)
        : DecaySchedule.FromValues(1 - Math.ScaleB(1, -20), 1 - Math.ScaleB(1, -20));

    [Theory, MemberData(nameof(Schedules))]
    public void Chunkwise_and_recurrent_forms_match_the_float64_recurrence_over_65536_tokens(string name)
    {
        var decay = Schedule(name);
        var shape = new RetentionShape(1, SeqLen, decay.Heads, Dim, Dim);
        var q = Numerics.Uniform(1, shape.QueryLength, 0.5f);
        var k = Numerics.Uniform(2, shape.QueryLength, 0.5f);
        var v = Numerics.Uniform(3, shape.ValueLength, 0.5f);
        var reference = RetentionReference.Recurrent(shape, decay, q, k, v);
        using var tq = Tensor.FromHost(device, q, shape.QueryShape);
        using var tk = Tensor.FromHost(device, k, shape.QueryShape);
        using var tv = Tensor.FromHost(device, v, shape.ValueShape);
        using var output = Tensor.Uninitialized(device, shape.ValueShape);
        using var final = Tensor.Uninitialized(device, shape.StateShape);

        ChunkwiseRetention.Forward(tq, tk, tv, decay, 64, output, finalState: final);
        var chunkwise = output.ToHost();
        Assert.All(chunkwise, x => Assert.True(float.IsFinite(x)));
        Numerics.AssertClose($"{name}: chunkwise output", chunkwise, reference.Output, Tolerance);
        Numerics.AssertClose($"{name}: chunkwise final state", final.ToHost(), reference.FinalState, Tolerance);

        using var state = Tensor.Zeros(device, shape.StateShape);
        RecurrentRetention.Forward(tq, tk, tv, decay, output, state);
        Numerics.AssertClose($"{name}: recurrent output", output.ToHost(), reference.Output, Tolerance);

        // The control: the same recurrence with every γ a hair from 1 (what a γ rounded to 1 would compute).
        var nearOne = DecaySchedule.FromValues(Enumerable.Repeat(1 - Math.ScaleB(1, -40), decay.Heads).ToArray());
        if (name != "torchscale")
            Numerics.AssertRejected(Numerics.Check($"{name}: against γ → 1", chunkwise,
                RetentionReference.Recurrent(shape, nearOne, q, k, v).Output, Tolerance));
    }

    [Theory, MemberData(nameof(Schedules))]
    public void Chunkwise_backward_matches_the_float64_recurrence_over_65536_tokens(string name)
    {
        var decay = Schedule(name);
        var shape = new RetentionShape(1, SeqLen, decay.Heads, Dim, Dim);
        var q = Numerics.Uniform(4, shape.QueryLength, 0.5f);
        var k = Numerics.Uniform(5, shape.QueryLength, 0.5f);
        var v = Numerics.Uniform(6, shape.ValueLength, 0.5f);
        var dO = Numerics.Uniform(7, shape.ValueLength, 0.5f);
        var reference = RetentionReference.RecurrentBackward(shape, decay, q, k, v, null, dO, null);
        using var tq = Tensor.FromHost(device, q, shape.QueryShape);
        using var tk = Tensor.FromHost(device, k, shape.QueryShape);
        using var tv = Tensor.FromHost(device, v, shape.ValueShape);
        using var tdO = Tensor.FromHost(device, dO, shape.ValueShape);
        using var dq = Tensor.Uninitialized(device, shape.QueryShape);
        using var dk = Tensor.Uninitialized(device, shape.QueryShape);
        using var dv = Tensor.Uninitialized(device, shape.ValueShape);

        ChunkwiseRetention.Backward(tq, tk, tv, decay, 64, null, tdO, null, dq, dk, dv);

        foreach (var (what, actual, expected) in new[]
                 {
                     ("dq", dq.ToHost(), reference.QueryGradient), ("dk", dk.ToHost(), reference.KeyGradient),
                     ("dv", dv.ToHost(), reference.ValueGradient),
                 })
        {
            Assert.All(actual, x => Assert.True(float.IsFinite(x)));
            Numerics.AssertClose($"{name}: {what}", actual, expected, Tolerance);
        }
        if (name != "torchscale")
        {
            var nearOne = DecaySchedule.FromValues(Enumerable.Repeat(1 - Math.ScaleB(1, -40), decay.Heads).ToArray());
            Numerics.AssertRejected(Numerics.Check($"{name}: dk against γ → 1", dk.ToHost(),
                RetentionReference.RecurrentBackward(shape, nearOne, q, k, v, null, dO, null).KeyGradient, Tolerance));
        }
    }
}
