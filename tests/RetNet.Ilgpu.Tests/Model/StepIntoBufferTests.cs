using RetNet.Ilgpu.Model;
using RetNet.Ilgpu.Tests.Support;

namespace RetNet.Ilgpu.Tests.Model;

/// <summary>
/// <see cref="ILanguageModel.Step(IReadOnlyList{int}, DecodingState, Span{float})"/>, the decoding step a serving loop
/// runs thousands of times a second: the same logit bits as the allocating overload, into the caller's buffer, with a
/// buffer of the wrong size refused by name; and on the host path the step allocates little (each gen-0 collection
/// stops every thread of a server).
/// </summary>
[Collection(DeviceCollection.Name)]
public sealed class StepIntoBufferTests(DeviceFixture fixture, HostCpu hostCpu) : IClassFixture<HostCpu>
{
    public static TheoryData<string> Architectures => ModelTestSupport.Architectures;

    private static ModelConfig Config(string architecture) => ModelTestSupport.MicroOf(architecture);

    [Theory, MemberData(nameof(Architectures))]
    public void A_step_into_a_buffer_writes_the_bits_of_the_allocating_step(string architecture)
    {
        using var model = LanguageModel.Create(fixture.Device, Config(architecture), seed: 4);
        var tokens = ModelTestSupport.Tokens(seed: 6, batch: 3, seqLen: 5, model.VocabSize);
        int[][] prompts =
            [ModelTestSupport.Row(tokens, 0), ModelTestSupport.Row(tokens, 1, 2), ModelTestSupport.Row(tokens, 2, 4)];
        using var arrays = model.Prefill(prompts).State;
        using var buffered = model.Prefill(prompts).State;
        var vocab = model.VocabSize;
        var buffer = new float[3 * vocab];
        float[] previous = [];
        for (var step = 0; step < 4; step++)
        {
            int[] next = [step + 1, step + 2, step + 3];
            var expected = model.Step(next, arrays);
            model.Step(next, buffered, buffer);
            for (var b = 0; b < 3; b++)
                Assert.Equal(expected[b], buffer.AsSpan(b * vocab, vocab).ToArray());
            // Negative control: the previous step's logits are other bits.
            if (step > 0)
                Assert.NotEqual(previous, buffer);
            previous = (float[])buffer.Clone();
        }
        Assert.Equal(arrays.Positions, buffered.Positions);
    }

    [Fact]
    public void A_buffer_of_the_wrong_size_is_refused_naming_it_and_leaves_the_state_as_it_was()
    {
        using var model = LanguageModel.Create(fixture.Device, Config("retnet"), seed: 4);
        using var state = model.Prefill([[1, 2], [3]]).State;
        foreach (var length in new[] { 2 * model.VocabSize - 1, 2 * model.VocabSize + 1, 0 })
        {
            var e = Assert.Throws<ArgumentException>(() => model.Step([1, 2], state, new float[length]));
            Assert.Equal("logits", e.ParamName);
            Assert.Contains($"{length} elements", e.Message);
            Assert.Contains($"{2 * model.VocabSize}", e.Message);
        }
        Assert.Equal([2, 1], state.Positions);
    }

    /// <summary>
    /// A batch-16 step of the tiny preset on the host path allocates a few KiB of views and work items, not its logits:
    /// the buffer overload stays under 16 KiB a step where the allocating one (the negative control) needs at least
    /// the 16 KiB of logits it returns.
    /// </summary>
    [Fact]
    public void A_host_step_into_a_buffer_allocates_less_than_its_logits()
    {
        var device = hostCpu.WithHostExecution(fixture.Device);
        using var model = LanguageModel.Create(device, RetNetConfig.Preset("tiny"), seed: 3);
        const int Batch = 16, Steps = 200;
        var prompts = Enumerable.Range(0, Batch).Select(b => (IReadOnlyList<int>)[1 + b, 2, 3]).ToList();
        using var state = model.Prefill(prompts).State;
        var tokens = Enumerable.Range(5, Batch).ToArray();
        var buffer = new float[Batch * model.VocabSize];
        for (var i = 0; i < 50; i++)
            model.Step(tokens, state, buffer);
        var before = GC.GetAllocatedBytesForCurrentThread();
        for (var i = 0; i < Steps; i++)
            model.Step(tokens, state, buffer);
        var perStep = (GC.GetAllocatedBytesForCurrentThread() - before) / (double)Steps;
        var logitBytes = Batch * model.VocabSize * sizeof(float);
        Assert.True(perStep < logitBytes, $"{perStep:F0} bytes a step; expected under {logitBytes}");

        before = GC.GetAllocatedBytesForCurrentThread();
        for (var i = 0; i < Steps; i++)
            model.Step(tokens, state);
        var allocating = (GC.GetAllocatedBytesForCurrentThread() - before) / (double)Steps;
        Assert.True(allocating >= logitBytes, $"{allocating:F0} bytes a step; the logits alone are {logitBytes}");
    }
}
