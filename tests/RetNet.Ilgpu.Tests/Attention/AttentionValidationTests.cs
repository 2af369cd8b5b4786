using RetNet.Ilgpu.Attention;
using RetNet.Ilgpu.Tests.Support;

namespace RetNet.Ilgpu.Tests.Attention;

/// <summary>Bad arguments raise exceptions that name the argument and the expected and actual shape, before any write;
/// T = 0 is no work.</summary>
[Collection(DeviceCollection.Name)]
public sealed class AttentionValidationTests(DeviceFixture fixture)
{
    private readonly RetNetDevice device = fixture.Device;

    // B = 1, T = 3, H = 2, Dk = 4, Dv = 5.
    private Tensor Q() => Tensor.Zeros(device, 1, 3, 2, 4);
    private Tensor V() => Tensor.Zeros(device, 1, 3, 2, 5);

    private static void AssertRejected(string parameter, Action call, params string[] fragments)
    {
        var error = Assert.ThrowsAny<ArgumentException>(call);
        Assert.Equal(parameter, error.ParamName);
        foreach (var fragment in fragments)
            Assert.Contains(fragment, error.Message);
    }

    [Fact]
    public void Forward_shapes_are_checked_naming_the_argument_and_both_shapes()
    {
        using var q = Q();
        using var k = Q();
        using var v = V();
        using var o = V();
        using var q3 = Tensor.Zeros(device, 3, 2, 4);
        using var kShort = Tensor.Zeros(device, 1, 2, 2, 4);
        using var vWrongHeads = Tensor.Zeros(device, 1, 3, 1, 5);
        using var noHeads = Tensor.Zeros(device, 1, 3, 0, 4);
        using var wrongOutput = Tensor.Zeros(device, 1, 3, 2, 4);
        using var wrongLogSumExp = Tensor.Zeros(device, 1, 3, 2);

        AssertRejected("q", () => CausalAttention.Forward(q3, k, v, 0.5f, o), "[3, 2, 4]", "rank 4");
        AssertRejected("q", () => CausalAttention.Forward(noHeads, noHeads, v, 0.5f, o), "[1, 3, 0, 4]", "≥ 1");
        AssertRejected("k", () => CausalAttention.Forward(q, kShort, v, 0.5f, o), "[1, 2, 2, 4]", "[1, 3, 2, 4]");
        AssertRejected("v", () => CausalAttention.Forward(q, k, vWrongHeads, 0.5f, o), "[1, 3, 1, 5]", "[1, 3, 2, *]");
        AssertRejected("output", () => CausalAttention.Forward(q, k, v, 0.5f, wrongOutput), "[1, 3, 2, 4]",
            "[1, 3, 2, 5]");
        AssertRejected("logSumExp", () => CausalAttention.Forward(q, k, v, 0.5f, o, wrongLogSumExp), "[1, 3, 2]",
            "[1, 2, 3]");
        AssertRejected("scale", () => CausalAttention.Forward(q, k, v, float.NaN, o), "finite");
        AssertRejected("output", () => CausalAttention.Forward(q, k, v, 0.5f, v), "shares storage with 'v'");
    }

    [Fact]
    public void Backward_shapes_and_aliasing_are_checked()
    {
        using var q = Q();
        using var k = Q();
        using var v = V();
        using var o = V();
        using var dO = V();
        using var lse = Tensor.Zeros(device, 1, 2, 3);
        using var dq = Q();
        using var dk = Q();
        using var dv = V();

        AssertRejected("logSumExp", () => CausalAttention.Backward(q, k, v, 0.5f, o, dq, dO, dq, dk, dv),
            "[1, 3, 2, 4]", "[1, 2, 3]");
        AssertRejected("dv", () => CausalAttention.Backward(q, k, v, 0.5f, o, lse, dO, dq, dk, dq), "[1, 3, 2, 4]",
            "[1, 3, 2, 5]");
        AssertRejected("dq", () => CausalAttention.Backward(q, k, v, 0.5f, o, lse, dO, q, dk, dv),
            "shares storage with 'q'");
        AssertRejected("dk", () => CausalAttention.Backward(q, k, v, 0.5f, o, lse, dO, dq, dq, dv),
            "shares storage with 'dq'");
    }

    [Fact]
    public void Step_and_append_shapes_are_checked()
    {
        using var q = Tensor.Zeros(device, 1, 1, 2, 4);
        using var q2 = Tensor.Zeros(device, 1, 2, 2, 4);
        using var keyCache = Tensor.Zeros(device, 1, 2, 6, 4);
        using var valueCache = Tensor.Zeros(device, 1, 2, 6, 5);
        using var shortValues = Tensor.Zeros(device, 1, 2, 5, 5);
        using var output = Tensor.Zeros(device, 1, 1, 2, 5);
        using var lengths = IndexTensor.FromHost(device, [0, 0], 2);
        using var keys = Q();

        AssertRejected("q", () => CausalAttention.Step(q2, keyCache, valueCache, [1], 1f, output), "[1, 2, 2, 4]",
            "[*, 1, *, *]");
        AssertRejected("keyCache", () => CausalAttention.Step(q, valueCache, valueCache, [1], 1f, output),
            "[1, 2, 6, 5]", "[1, 2, *, 4]");
        AssertRejected("valueCache", () => CausalAttention.Step(q, keyCache, shortValues, [1], 1f, output),
            "[1, 2, 5, 5]", "[1, 2, 6, *]");
        AssertRejected("output", () => CausalAttention.Step(q, keyCache, valueCache, [1], 1f, q), "[1, 1, 2, 4]",
            "[1, 1, 2, 5]");
        AssertRejected("lengths", () => CausalAttention.Step(q, keyCache, valueCache, lengths, 1f, output), "[2]",
            "expected [1]");
        AssertRejected("cache", () => CausalAttention.AppendToCache(keys, valueCache, [0]), "[1, 2, 6, 5]",
            "[1, 2, *, 4]");
    }

    [Fact]
    public void An_empty_sequence_is_no_work()
    {
        using var q = Tensor.Zeros(device, 2, 0, 3, 4);
        using var v = Tensor.Zeros(device, 2, 0, 3, 5);
        using var o = Tensor.Zeros(device, 2, 0, 3, 5);
        using var lse = Tensor.Zeros(device, 2, 3, 0);
        using var dq = Tensor.Zeros(device, 2, 0, 3, 4);
        using var dk = Tensor.Zeros(device, 2, 0, 3, 4);
        using var dv = Tensor.Zeros(device, 2, 0, 3, 5);
        using var cache = Tensor.Zeros(device, 2, 3, 0, 4);
        CausalAttention.Forward(q, q, v, 0.5f, o, lse);
        CausalAttention.Backward(q, q, v, 0.5f, o, lse, v, dq, dk, dv);
        CausalAttention.AppendToCache(q, cache, [0, 0]);
        Assert.Empty(o.ToHost());
    }
}
