using RetNet.Ilgpu.Attention;
using RetNet.Ilgpu.Tests.Support;

namespace RetNet.Ilgpu.Tests.Attention;

/// <summary>
/// Decoding with a KV cache: appending keys and values, then stepping one query at a time, gives the rows of the full
/// causal forward pass; cached positions past a sequence's length are never read; a cache never overflows.
/// </summary>
[Collection(DeviceCollection.Name)]
public sealed class AttentionCacheTests(DeviceFixture fixture)
{
    private readonly RetNetDevice device = fixture.Device;

    [Theory]
    [InlineData(0)]
    [InlineData(5)]
    public void Prefill_then_steps_equals_the_full_forward(int prefix)
    {
        var s = new AttentionShape(2, 12, 3, 5, 7);
        const int capacity = 16;
        using var test = new AttentionTestCase(device, s, 900 + prefix);
        using var keyCache = Tensor.Zeros(device, s.Batch, s.Heads, capacity, s.KeyDim);
        using var valueCache = Tensor.Zeros(device, s.Batch, s.Heads, capacity, s.ValueDim);
        var outputs = new float[s.ValueLength];
        var lengths = new int[s.Batch];
        using var deviceLengths = IndexTensor.FromHost(device, lengths, s.Batch);

        var head = s with { SeqLen = prefix };
        using (var q = Tokens(s, test.Q, s.KeyDim, 0, prefix))
        using (var k = Tokens(s, test.K, s.KeyDim, 0, prefix))
        using (var v = Tokens(s, test.V, s.ValueDim, 0, prefix))
        using (var o = Tensor.Zeros(device, head.ValueShape))
        {
            CausalAttention.Forward(q, k, v, test.Scale, o);
            CausalAttention.AppendToCache(k, keyCache, lengths);
            CausalAttention.AppendToCache(v, valueCache, deviceLengths);
            AttentionTokens.Place(o.ToHost(), outputs, s, s.ValueDim, 0, prefix);
        }
        Array.Fill(lengths, prefix);

        for (var t = prefix; t < s.SeqLen; t++)
        {
            using var q = Tokens(s, test.Q, s.KeyDim, t, 1);
            using var k = Tokens(s, test.K, s.KeyDim, t, 1);
            using var v = Tokens(s, test.V, s.ValueDim, t, 1);
            using var o = Tensor.Zeros(device, s.Batch, 1, s.Heads, s.ValueDim);
            // Host lengths on even steps, device lengths on odd ones: both overloads continue the same cache.
            if (t % 2 == 0)
            {
                CausalAttention.AppendToCache(k, keyCache, lengths);
                CausalAttention.AppendToCache(v, valueCache, lengths);
                Array.Fill(lengths, t + 1);
                CausalAttention.Step(q, keyCache, valueCache, lengths, test.Scale, o);
            }
            else
            {
                deviceLengths.CopyFromHost(lengths);
                CausalAttention.AppendToCache(k, keyCache, deviceLengths);
                CausalAttention.AppendToCache(v, valueCache, deviceLengths);
                Array.Fill(lengths, t + 1);
                deviceLengths.CopyFromHost(lengths);
                CausalAttention.Step(q, keyCache, valueCache, deviceLengths, test.Scale, o);
            }
            AttentionTokens.Place(o.ToHost(), outputs, s, s.ValueDim, t, 1);
        }
        Numerics.AssertClose($"prefill {prefix} + steps", outputs, test.Reference.Output);
        Numerics.AssertRejected(test.CheckOutput("zeros", new float[s.ValueLength]));
    }

    [Fact]
    public void A_step_reads_only_each_sequences_own_length_of_the_cache()
    {
        // The whole sequence is cached, but sequence b stands at length n_b: the step of its query n_b − 1 must equal
        // row n_b − 1 of the causal forward pass, ignoring the later positions in the cache; length 0 gives zeros.
        var s = new AttentionShape(4, 9, 2, 4, 3);
        int[] lengths = [1, 4, 9, 0];
        using var test = new AttentionTestCase(device, s, 1000);
        using var keyCache = Tensor.Zeros(device, s.Batch, s.Heads, s.SeqLen, s.KeyDim);
        using var valueCache = Tensor.Zeros(device, s.Batch, s.Heads, s.SeqLen, s.ValueDim);
        CausalAttention.AppendToCache(test.KeyTensor, keyCache, new int[s.Batch]);
        CausalAttention.AppendToCache(test.ValueTensor, valueCache, new int[s.Batch]);

        var queries = new float[s.Batch * s.Heads * s.KeyDim];
        var expected = new double[s.Batch * s.Heads * s.ValueDim];
        for (var b = 0; b < s.Batch; b++)
        {
            var t = Math.Max(lengths[b] - 1, 0);
            Array.Copy(test.Q, ((b * s.SeqLen + t) * s.Heads) * s.KeyDim, queries, b * s.Heads * s.KeyDim,
                s.Heads * s.KeyDim);
            if (lengths[b] > 0)
                Array.Copy(test.Reference.Output, ((b * s.SeqLen + t) * s.Heads) * s.ValueDim, expected,
                    b * s.Heads * s.ValueDim, s.Heads * s.ValueDim);
        }
        using var q = Tensor.FromHost(device, queries, s.Batch, 1, s.Heads, s.KeyDim);
        using var output = Tensor.Zeros(device, s.Batch, 1, s.Heads, s.ValueDim);
        CausalAttention.Step(q, keyCache, valueCache, lengths, test.Scale, output);
        Numerics.AssertClose("ragged lengths", output.ToHost(), expected);

        // The negative control: a step that read the whole cache (length T for every sequence) is rejected.
        CausalAttention.Step(q, keyCache, valueCache, [9, 9, 9, 9], test.Scale, output);
        Numerics.AssertRejected(Numerics.Check("whole cache read", output.ToHost(), expected));
    }

    [Fact]
    public void Host_lengths_that_would_overflow_the_cache_are_refused_before_any_write()
    {
        using var keys = Tensor.FromHost(device, Numerics.Uniform(1100, 2 * 3 * 2 * 4), 2, 3, 2, 4);
        using var cache = Tensor.Zeros(device, 2, 2, 5, 4);
        using var q = Tensor.Zeros(device, 2, 1, 2, 4);
        using var output = Tensor.Zeros(device, 2, 1, 2, 4);

        var error = Assert.Throws<ArgumentException>(() => CausalAttention.AppendToCache(keys, cache, [2, 3]));
        Assert.Equal("lengths", error.ParamName);
        Assert.Contains("sequence 1", error.Message);
        Assert.Contains("appending 3 tokens would need 6 positions", error.Message);
        Assert.Contains("holds only 5", error.Message);
        Assert.All(cache.ToHost(), x => Assert.Equal(0f, x));

        error = Assert.Throws<ArgumentException>(() => CausalAttention.AppendToCache(keys, cache, [-1, 0]));
        Assert.Contains("≥ 0", error.Message);
        error = Assert.Throws<ArgumentException>(() => CausalAttention.AppendToCache(keys, cache, [0]));
        Assert.Contains("expected 2", error.Message);
        error = Assert.Throws<ArgumentException>(() => CausalAttention.Step(q, cache, cache, [6, 0], 1f, output));
        Assert.Equal("lengths", error.ParamName);
        Assert.Contains("holds only 5", error.Message);
        CausalAttention.AppendToCache(keys, cache, [2, 0]);
    }

    [Fact]
    public void Device_lengths_past_the_capacity_never_write_outside_the_cache()
    {
        // The cache is the first half of a larger buffer: appending at capacity − 1 writes one position and drops two,
        // leaving the second half untouched, and a step reads at most the capacity.
        using var keys = Tensor.FromHost(device, Numerics.Uniform(1200, 1 * 3 * 1 * 2), 1, 3, 1, 2);
        using var buffer = Tensor.Zeros(device, 2, 1, 4, 2);
        var cache = buffer.Slice(0, 1);
        using var lengths = IndexTensor.FromHost(device, [3], 1);
        CausalAttention.AppendToCache(keys, cache, lengths);
        var contents = buffer.ToHost();
        Assert.Equal(keys.ToHost()[..2], contents[6..8]);
        Assert.All(contents[..6].Concat(contents[8..]), x => Assert.Equal(0f, x));

        using var q = Tensor.FromHost(device, [1f, 0.5f], 1, 1, 1, 2);
        using var output = Tensor.Zeros(device, 1, 1, 1, 2);
        using var whole = Tensor.Zeros(device, 1, 1, 1, 2);
        using var tooLong = IndexTensor.FromHost(device, [99], 1);
        CausalAttention.Step(q, cache, cache, tooLong, 1f, output);
        CausalAttention.Step(q, cache, cache, [4], 1f, whole);
        Assert.Equal(whole.ToHost(), output.ToHost());
    }

    private Tensor Tokens(AttentionShape s, float[] x, int dim, int start, int count) =>
        Tensor.FromHost(device, AttentionTokens.Slice(x, s, dim, start, count), s.Batch, count, s.Heads, dim);
}
