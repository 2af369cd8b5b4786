using RetNet.Ilgpu.Attention;
using RetNet.Ilgpu.Kernels.Gemm;
using RetNet.Ilgpu.Tests.Support;
using Xunit.Abstractions;

namespace RetNet.Ilgpu.Tests.Attention;

/// <summary>
/// The host decode step and cache append (<see cref="AttentionLaunch.Host"/>) on every instruction-set path and thread
/// count: a step of sequence b at length n_b is row n_b − 1 of the double reference's causal forward pass, a length of
/// 0 gives zeros; a sequence's output does not change by a bit with the rest of the batch or the thread count; the host
/// code agrees with the step kernel. Like <see cref="AttentionHostTests"/>, these open the CPU accelerator in host
/// execution when the test device is not one.
/// </summary>
[Collection(DeviceCollection.Name)]
public sealed class AttentionStepHostTests(DeviceFixture fixture, HostCpu hostCpu, ITestOutputHelper log)
    : IClassFixture<HostCpu>
{
    // Lengths 1, 37 (no multiple of 8 or 16), 700 (long) and 0; Dk = 20 and Dv = 19 leave a vector and a scalar tail
    // on both vector widths.
    private static readonly AttentionShape Ragged = new(4, 700, 2, 20, 19);
    private static readonly int[] RaggedLengths = [1, 37, 700, 0];

    private readonly RetNetDevice device = fixture.Device;

    private RetNetDevice Cpu => hostCpu.WithHostExecution(device);

    public static TheoryData<string, int> PathsAndThreads => new()
    {
        { nameof(HostGemmPath.Auto), 2 },
        { nameof(HostGemmPath.Vector512), 3 },
        { nameof(HostGemmPath.Vector256), 2 },
        { nameof(HostGemmPath.Scalar), 1 },
    };

    [Theory, MemberData(nameof(PathsAndThreads))]
    public void Host_step_equals_the_reference_row_at_each_sequences_length(string pathName, int threads)
    {
        var launch = AttentionLaunch.HostWith(Enum.Parse<HostGemmPath>(pathName), threads);
        using var test = new AttentionTestCase(Cpu, Ragged, 5000);
        var output = StepAt(test, RaggedLengths, launch);
        Numerics.AssertClose($"ragged step, {launch}", output, ExpectedRows(test, RaggedLengths));

        // Tiny-preset heads (Dk = Dv = 32, whole vectors only), every sequence at a different length.
        using var narrow = new AttentionTestCase(Cpu, new AttentionShape(3, 40, 2, 32, 32), 5010);
        int[] lengths = [40, 17, 8];
        Numerics.AssertClose($"Dk = Dv = 32, {launch}", StepAt(narrow, lengths, launch), ExpectedRows(narrow, lengths));
    }

    [Fact]
    public void Check_rejects_a_step_one_position_too_long_or_unscaled()
    {
        using var test = new AttentionTestCase(Cpu, Ragged, 5100);
        var expected = ExpectedRows(test, RaggedLengths);
        var output = StepAt(test, RaggedLengths, AttentionLaunch.Host);
        Numerics.AssertClose("host step", output, expected);

        var tooLong = StepAt(test, RaggedLengths, AttentionLaunch.Host, extra: 1);
        Rejected(Numerics.Check("each sequence one position too long", tooLong, expected));
        var unscaled = StepAt(test, RaggedLengths, AttentionLaunch.Host, scale: 1f);
        Rejected(Numerics.Check("scores not scaled", unscaled, expected));
        Rejected(Numerics.Check("zeros", new float[output.Length], expected));
    }

    [Fact]
    public void A_sequences_step_is_bit_identical_alone_in_any_batch_and_on_any_thread_count()
    {
        // Σ n_b · H · (Dk + Dv) = 2138 · 2 · 128 is past the threshold where the step splits over threads; alone, the
        // sequence stays on the calling thread.
        var shape = new AttentionShape(4, 700, 2, 64, 64);
        int[] lengths = [700, 333, 700, 405];
        int[] others = [1, 333, 0, 699];
        using var test = new AttentionTestCase(Cpu, shape, 5200);
        var rowLength = shape.Heads * shape.ValueDim;
        foreach (var path in new[] { HostGemmPath.Auto, HostGemmPath.Vector256, HostGemmPath.Scalar })
        {
            var inBatch = StepAt(test, lengths, AttentionLaunch.HostWith(path, 2));
            var otherBatch = StepAt(test, others, AttentionLaunch.HostWith(path, 1));
            var alone = StepAlone(test, 1, lengths[1], AttentionLaunch.HostWith(path, 1));
            Assert.Equal(Bits(alone), Bits(inBatch[rowLength..(2 * rowLength)]));
            Assert.Equal(Bits(alone), Bits(otherBatch[rowLength..(2 * rowLength)]));
            var threads = StepAt(test, lengths, AttentionLaunch.HostWith(path, 7));
            Assert.Equal(Bits(inBatch), Bits(threads));
            Assert.Equal(Bits(inBatch), Bits(StepAt(test, lengths, AttentionLaunch.HostWith(path, 1))));
        }
    }

    [Fact]
    public void Host_step_and_append_agree_with_the_kernels()
    {
        using var test = new AttentionTestCase(Cpu, Ragged, 5300);
        var (host, hostKeys) = StepAndCache(test, RaggedLengths, AttentionLaunch.Host);
        var (kernel, kernelKeys) = StepAndCache(test, RaggedLengths, AttentionLaunch.BarrierFree);
        Assert.Equal(Bits(kernelKeys), Bits(hostKeys));
        Numerics.AssertClose("host step against the kernel", host, kernel);
        Numerics.AssertRejected(Numerics.Check("unscaled host step against the kernel",
            StepAt(test, RaggedLengths, AttentionLaunch.Host, scale: 1f), kernel));
    }

    [Fact]
    public void Host_append_drops_positions_outside_the_cache()
    {
        // Sequence 0 starts at capacity − 1 (one row kept, two dropped), sequence 1 at −1 (one dropped), both in a
        // cache that is the first half of a larger buffer whose second half must stay untouched.
        using var keys = Tensor.FromHost(Cpu, Numerics.Uniform(5400, 2 * 3 * 2 * 4), 2, 3, 2, 4);
        using var buffer = Tensor.Zeros(Cpu, 4, 2, 5, 4);
        var cache = buffer.Slice(0, 2);
        using var lengths = IndexTensor.FromHost(Cpu, [4, -1], 2);
        using var kernelBuffer = Tensor.Zeros(Cpu, 4, 2, 5, 4);
        CausalAttention.AppendToCache(keys, cache, lengths, AttentionLaunch.Host);
        CausalAttention.AppendToCache(keys, kernelBuffer.Slice(0, 2), lengths, AttentionLaunch.BarrierFree);
        var contents = buffer.ToHost();
        Assert.Equal(Bits(kernelBuffer.ToHost()), Bits(contents));
        Assert.Contains(contents[..80], x => x != 0f);
        Assert.All(contents[80..], x => Assert.Equal(0f, x));
    }

    [Fact]
    public void Host_step_is_refused_on_a_device_that_does_not_run_on_the_host()
    {
        using var simulator = device.RunsOnHost ? RetNetDevice.Open(DeviceKind.Cpu, CpuExecution.Simulator) : null;
        var other = simulator ?? device;
        using var q = Tensor.Zeros(other, 1, 1, 1, 2);
        using var cache = Tensor.Zeros(other, 1, 1, 3, 2);
        using var output = Tensor.Zeros(other, 1, 1, 1, 2);
        var error = Assert.Throws<NotSupportedException>(() =>
            CausalAttention.Step(q, cache, cache, [1], 1f, output, AttentionLaunch.Host));
        Assert.Contains("host execution", error.Message);
        Assert.Throws<NotSupportedException>(() =>
            CausalAttention.AppendToCache(q, cache, [0], AttentionLaunch.Host));
    }

    /// <summary>
    /// The whole sequence's keys and values appended to empty caches of capacity T + 3, then one step of each sequence
    /// b's query at position n_b − 1 (position 0 when n_b = 0) over its first n_b + <paramref name="extra"/> positions.
    /// </summary>
    private static float[] StepAt(AttentionTestCase test, int[] lengths, AttentionLaunch launch, float? scale = null,
        int extra = 0) =>
        StepAndCache(test, lengths, launch, scale, extra).Output;

    private static (float[] Output, float[] KeyCache) StepAndCache(AttentionTestCase test, int[] lengths,
        AttentionLaunch launch, float? scale = null, int extra = 0)
    {
        var (s, cpu) = (test.Shape, test.Device);
        var capacity = s.SeqLen + 3;
        using var keyCache = Tensor.Zeros(cpu, s.Batch, s.Heads, capacity, s.KeyDim);
        using var valueCache = Tensor.Zeros(cpu, s.Batch, s.Heads, capacity, s.ValueDim);
        using var deviceLengths = IndexTensor.FromHost(cpu, lengths.Select(n => n + extra).ToArray(), s.Batch);
        CausalAttention.AppendToCache(test.KeyTensor, keyCache, new int[s.Batch], launch);
        CausalAttention.AppendToCache(test.ValueTensor, valueCache, new int[s.Batch], launch);
        using var q = Tensor.FromHost(cpu, Queries(test, lengths), s.Batch, 1, s.Heads, s.KeyDim);
        using var output = Tensor.Zeros(cpu, s.Batch, 1, s.Heads, s.ValueDim);
        CausalAttention.Step(q, keyCache, valueCache, deviceLengths, scale ?? test.Scale, output, launch);
        return (output.ToHost(), keyCache.ToHost());
    }

    /// <summary>Sequence <paramref name="b"/> of the case alone, a batch of one, stepped at
    /// <paramref name="length"/>.</summary>
    private static float[] StepAlone(AttentionTestCase test, int b, int length, AttentionLaunch launch)
    {
        var s = test.Shape;
        using var one = new AttentionTestCase(test.Device, s with { Batch = 1 }, 0);
        var (keys, values) = (s.Heads * s.SeqLen * s.KeyDim, s.Heads * s.SeqLen * s.ValueDim);
        one.KeyTensor.CopyFromHost(test.K.AsSpan(b * keys, keys).ToArray());
        one.ValueTensor.CopyFromHost(test.V.AsSpan(b * values, values).ToArray());
        using var q = Tensor.FromHost(test.Device, Queries(test, [.. Enumerable.Repeat(length, s.Batch)])
            .AsSpan(b * s.Heads * s.KeyDim, s.Heads * s.KeyDim).ToArray(), 1, 1, s.Heads, s.KeyDim);
        var capacity = s.SeqLen + 3;
        using var keyCache = Tensor.Zeros(test.Device, 1, s.Heads, capacity, s.KeyDim);
        using var valueCache = Tensor.Zeros(test.Device, 1, s.Heads, capacity, s.ValueDim);
        using var output = Tensor.Zeros(test.Device, 1, 1, s.Heads, s.ValueDim);
        CausalAttention.AppendToCache(one.KeyTensor, keyCache, [0], launch);
        CausalAttention.AppendToCache(one.ValueTensor, valueCache, [0], launch);
        CausalAttention.Step(q, keyCache, valueCache, [length], test.Scale, output, launch);
        return output.ToHost();
    }

    /// <summary>q [B, 1, H, Dk]: each sequence's query at position max(n_b − 1, 0).</summary>
    private static float[] Queries(AttentionTestCase test, int[] lengths)
    {
        var s = test.Shape;
        var queries = new float[s.Batch * s.Heads * s.KeyDim];
        for (var b = 0; b < s.Batch; b++)
        {
            var t = Math.Clamp(lengths[b] - 1, 0, s.SeqLen - 1);
            Array.Copy(test.Q, (b * s.SeqLen + t) * s.Heads * s.KeyDim, queries, b * s.Heads * s.KeyDim,
                s.Heads * s.KeyDim);
        }
        return queries;
    }

    /// <summary>Row n_b − 1 of the reference output for each sequence b, zeros where n_b = 0.</summary>
    private static double[] ExpectedRows(AttentionTestCase test, int[] lengths)
    {
        var s = test.Shape;
        var rows = new double[s.Batch * s.Heads * s.ValueDim];
        for (var b = 0; b < s.Batch; b++)
            if (lengths[b] > 0)
                Array.Copy(test.Reference.Output, (b * s.SeqLen + lengths[b] - 1) * s.Heads * s.ValueDim, rows,
                    b * s.Heads * s.ValueDim, s.Heads * s.ValueDim);
        return rows;
    }

    private void Rejected(Closeness check)
    {
        log.WriteLine(check.Message);
        Numerics.AssertRejected(check);
    }

    private static int[] Bits(float[] values) => values.Select(BitConverter.SingleToInt32Bits).ToArray();
}
