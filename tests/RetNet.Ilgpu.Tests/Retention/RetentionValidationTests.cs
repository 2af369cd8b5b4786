using RetNet.Ilgpu.Retention;
using RetNet.Ilgpu.Tests.Support;

namespace RetNet.Ilgpu.Tests.Retention;

/// <summary>Bad arguments raise exceptions that name the argument and the expected and actual shape, before any write.</summary>
[Collection(DeviceCollection.Name)]
public sealed class RetentionValidationTests(DeviceFixture fixture)
{
    private readonly RetNetDevice device = fixture.Device;
    private static readonly DecaySchedule TwoHeads = DecaySchedule.Torchscale(2);

    // B = 1, T = 3, H = 2, Dk = 4, Dv = 5.
    private Tensor Q() => Tensor.Zeros(device, 1, 3, 2, 4);
    private Tensor V() => Tensor.Zeros(device, 1, 3, 2, 5);
    private Tensor State() => Tensor.Zeros(device, 1, 2, 4, 5);

    private static void AssertRejected(string parameter, Action call, params string[] fragments)
    {
        var error = Assert.ThrowsAny<ArgumentException>(call);
        Assert.Equal(parameter, error.ParamName);
        foreach (var fragment in fragments)
            Assert.Contains(fragment, error.Message);
    }

    [Fact]
    public void Input_shapes_are_checked_naming_the_argument_and_both_shapes()
    {
        using var q = Q();
        using var k = Q();
        using var v = V();
        using var o = V();
        using var q3 = Tensor.Zeros(device, 3, 2, 4);
        using var kShort = Tensor.Zeros(device, 1, 2, 2, 4);
        using var vWrongHeads = Tensor.Zeros(device, 1, 3, 1, 5);
        using var empty = Tensor.Zeros(device, 1, 0, 2, 4);
        using var emptyV = Tensor.Zeros(device, 1, 3, 2, 0);
        using var state = State();

        AssertRejected("q", () => ParallelRetention.Forward(q3, k, v, TwoHeads, o), "[3, 2, 4]", "rank 4");
        AssertRejected("q", () => ParallelRetention.Forward(empty, empty, v, TwoHeads, o), "[1, 0, 2, 4]", "≥ 1");
        AssertRejected("k", () => ChunkwiseRetention.Forward(q, kShort, v, TwoHeads, 2, o), "[1, 2, 2, 4]", "[1, 3, 2, 4]");
        AssertRejected("v", () => RecurrentRetention.Forward(q, k, vWrongHeads, TwoHeads, o, state), "[1, 3, 1, 5]",
            "[1, 3, 2, *]");
        AssertRejected("v", () => ParallelRetention.Forward(q, k, emptyV, TwoHeads, o), "[1, 3, 2, 0]");
    }

    [Fact]
    public void Output_and_state_shapes_are_checked()
    {
        using var q = Q();
        using var k = Q();
        using var v = V();
        using var o = V();
        using var state = State();
        using var wrongOutput = Tensor.Zeros(device, 1, 3, 2, 4);
        using var wrongState = Tensor.Zeros(device, 1, 2, 5, 4);

        AssertRejected("output", () => ParallelRetention.Forward(q, k, v, TwoHeads, wrongOutput), "[1, 3, 2, 4]",
            "[1, 3, 2, 5]");
        AssertRejected("initialState", () => ParallelRetention.Forward(q, k, v, TwoHeads, o, wrongState),
            "[1, 2, 5, 4]", "[1, 2, 4, 5]");
        AssertRejected("finalState", () => ChunkwiseRetention.Forward(q, k, v, TwoHeads, 2, o, null, wrongState),
            "[1, 2, 5, 4]", "[1, 2, 4, 5]");
        AssertRejected("state", () => RecurrentRetention.Forward(q, k, v, TwoHeads, o, wrongState), "[1, 2, 5, 4]");
        AssertRejected("output", () => RecurrentRetention.Forward(q, k, v, TwoHeads, wrongOutput, state));
    }

    [Fact]
    public void Gradient_shapes_are_checked()
    {
        using var q = Q();
        using var k = Q();
        using var v = V();
        using var dO = V();
        using var dq = Q();
        using var dk = Q();
        using var dv = V();
        using var wrong = Tensor.Zeros(device, 2, 2);

        AssertRejected("dOutput", () =>
            ParallelRetention.Backward(q, k, v, TwoHeads, null, wrong, null, dq, dk, dv), "[2, 2]", "[1, 3, 2, 5]");
        AssertRejected("dFinalState", () =>
            ChunkwiseRetention.Backward(q, k, v, TwoHeads, 2, null, dO, wrong, dq, dk, dv), "[1, 2, 4, 5]");
        AssertRejected("dq", () =>
            ParallelRetention.Backward(q, k, v, TwoHeads, null, dO, null, wrong, dk, dv), "[1, 3, 2, 4]");
        AssertRejected("dv", () =>
            ChunkwiseRetention.Backward(q, k, v, TwoHeads, 2, null, dO, null, dq, dk, dq), "[1, 3, 2, 5]");
        AssertRejected("dInitialState", () =>
            ParallelRetention.Backward(q, k, v, TwoHeads, null, dO, null, dq, dk, dv, wrong), "[1, 2, 4, 5]");
    }

    [Fact]
    public void Decay_head_count_and_chunk_size_are_checked()
    {
        using var q = Q();
        using var k = Q();
        using var v = V();
        using var o = V();
        AssertRejected("decay", () => ParallelRetention.Forward(q, k, v, DecaySchedule.Paper(3), o), "3 heads", "H = 2");
        AssertRejected("chunkSize", () => ChunkwiseRetention.Forward(q, k, v, TwoHeads, 0, o), "≥ 1");
        using var dq = Q();
        using var dk = Q();
        using var dv = V();
        AssertRejected("chunkSize", () =>
            ChunkwiseRetention.Backward(q, k, v, TwoHeads, -3, null, o, null, dq, dk, dv), "-3");
        Assert.Throws<ArgumentOutOfRangeException>(() => ChunkwiseRetention.Forward(q, k, v, TwoHeads, 0, o));
    }

    [Fact]
    public void Outputs_may_not_alias_inputs_except_a_state_advanced_in_place()
    {
        using var storage = Tensor.Zeros(device, 64);
        var q = storage.Slice(0, 24).Reshape(1, 3, 2, 4);
        var overlappingState = storage.Slice(10, 40).Reshape(1, 2, 4, 5);
        using var k = Q();
        using var v = V();
        using var o = V();
        using var dq = Q();
        using var states = Tensor.Zeros(device, 2, 2, 4, 5);

        AssertRejected("output", () => ParallelRetention.Forward(q, k, v, TwoHeads, v), "'v'");
        AssertRejected("state", () => RecurrentRetention.Forward(q, k, v, TwoHeads, o, overlappingState), "'q'");
        AssertRejected("dk", () => ParallelRetention.Backward(q, k, v, TwoHeads, null, o, null, dq, dq, v), "'dq'");
        // A final state shifted against the initial one would be read after being overwritten.
        using var flat = Tensor.Zeros(device, 2 * 40 + 1);
        var initial = flat.Slice(0, 40).Reshape(1, 2, 4, 5);
        var shifted = flat.Slice(1, 40).Reshape(1, 2, 4, 5);
        AssertRejected("finalState", () => ChunkwiseRetention.Forward(q, k, v, TwoHeads, 2, o, initial, shifted));

        var same = states.Slice(0, 1);
        ChunkwiseRetention.Forward(q, k, v, TwoHeads, 2, o, same, same);
        ParallelRetention.Forward(q, k, v, TwoHeads, o, same, same);
    }

    [Fact]
    public void A_rejected_call_writes_nothing()
    {
        using var q = Q();
        using var k = Q();
        using var v = V();
        var sentinel = Enumerable.Repeat(7f, 30).ToArray();
        using var o = Tensor.FromHost(device, sentinel, 1, 3, 2, 5);
        using var final = Tensor.Zeros(device, 1, 2, 4, 4);
        Assert.ThrowsAny<ArgumentException>(() => ChunkwiseRetention.Forward(q, k, v, TwoHeads, 2, o, null, final));
        Assert.Equal(sentinel, o.ToHost());
    }
}
