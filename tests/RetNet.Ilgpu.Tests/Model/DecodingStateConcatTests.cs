using RetNet.Ilgpu.Model;
using RetNet.Ilgpu.Tests.Support;

namespace RetNet.Ilgpu.Tests.Model;

/// <summary>
/// <see cref="DecodingState.Concat"/>, the join of continuous batching: sequences prefilled apart and then joined
/// decode exactly as if they had been prefilled as one batch, for both token mixers; and the in-place join and leave
/// (<see cref="DecodingState.Append"/>, <see cref="DecodingState.Keep"/>) that keep the slots.
/// </summary>
[Collection(DeviceCollection.Name)]
public sealed class DecodingStateConcatTests(DeviceFixture fixture)
{
    private readonly RetNetDevice device = fixture.Device;

    public static TheoryData<string> Architectures => ModelTestSupport.Architectures;

    private static ModelConfig Config(string architecture) => ModelTestSupport.MicroOf(architecture);

    [Theory, MemberData(nameof(Architectures))]
    public void Joined_states_step_to_the_same_logit_bits_as_one_batch_prefill(string architecture)
    {
        using var model = LanguageModel.Create(device, Config(architecture), seed: 3);
        var tokens = ModelTestSupport.Tokens(seed: 5, batch: 3, seqLen: 21, model.VocabSize);
        // Lengths past a KV cache's first capacity (16), so the joined caches have different widths.
        int[] a = ModelTestSupport.Row(tokens, 0, 21), b = ModelTestSupport.Row(tokens, 1, 3),
            c = ModelTestSupport.Row(tokens, 2, 9);

        var together = model.Prefill([a, b, c]);
        using var batch = together.State;
        var apart = new[] { model.Prefill([a]), model.Prefill([b, c]) };
        using var joined = DecodingState.Concat([apart[0].State, apart[1].State]);
        foreach (var part in apart)
            part.State.Dispose();
        Assert.Equal([21, 3, 9], joined.Positions);

        for (var step = 0; step < 3; step++)
        {
            int[] next = [step + 1, step + 2, step + 3];
            var expected = model.Step(next, batch);
            var actual = model.Step(next, joined);
            for (var s = 0; s < 3; s++)
                Assert.Equal(expected[s], actual[s]);
        }

        // Negative control: the parts joined in the other order put another sequence in row 0.
        var again = new[] { model.Prefill([a]), model.Prefill([b, c]) };
        using var swapped = DecodingState.Concat([again[1].State, again[0].State]);
        foreach (var part in again)
            part.State.Dispose();
        var first = model.Step([1, 2, 3], swapped);
        using var fresh = model.Prefill([a, b, c]).State;
        Assert.NotEqual(model.Step([1, 2, 3], fresh)[0], first[0]);
    }

    [Fact]
    public void States_of_different_models_or_none_are_refused_naming_the_argument()
    {
        using var retnet = LanguageModel.Create(device, Config("retnet"), seed: 1);
        using var twin = LanguageModel.Create(device, Config("retnet"), seed: 1);
        using var mine = retnet.CreateState(1);
        using var theirs = twin.CreateState(2);
        Assert.Equal("states", Assert.Throws<ArgumentException>(() => DecodingState.Concat([mine, theirs])).ParamName);
        Assert.Equal("states", Assert.Throws<ArgumentException>(() => DecodingState.Concat([])).ParamName);
        using var one = DecodingState.Concat([mine, mine]);
        Assert.Equal(2, one.Batch);
    }
    /// <summary>
    /// Sequences joined one by one into free slots and dropped in place step to the same logit bits as the same
    /// sequences joined and selected by copies, through growth of the slots and of a KV cache; the freed slots are
    /// reused without reallocating; the state's tensors show only its sequences.
    /// </summary>
    [Theory, MemberData(nameof(Architectures))]
    public void Appended_and_kept_sequences_step_like_copied_ones(string architecture)
    {
        using var model = LanguageModel.Create(device, Config(architecture), seed: 3);
        var tokens = ModelTestSupport.Tokens(seed: 8, batch: 4, seqLen: 21, model.VocabSize);
        int[][] prompts = [ModelTestSupport.Row(tokens, 0, 5), ModelTestSupport.Row(tokens, 1, 21),
            ModelTestSupport.Row(tokens, 2, 2), ModelTestSupport.Row(tokens, 3, 13)];
        var parts = prompts.Select(p => model.Prefill([p]).State).ToList();
        try
        {
            using var slots = parts[0].Clone();
            foreach (var part in parts.Skip(1))
                slots.Append(part);
            Assert.Equal([5, 21, 2, 13], slots.Positions);
            Assert.Equal(4, slots.SequenceCapacity);
            using var copied = DecodingState.Concat(parts);
            Assert.All(slots.Tensors.Values, t => Assert.Equal(4, t.Dim(0)));
            Step(model, slots, copied, 2);

            // Drop sequences 0 and 2 in place; the copy selects the same ones.
            slots.Keep([1, 3]);
            using var selected = copied.Select([1, 3]);
            Assert.Equal(selected.Positions, slots.Positions);
            Assert.Equal((2, 4), (slots.Batch, slots.SequenceCapacity));
            Assert.All(slots.Tensors.Values, t => Assert.Equal(2, t.Dim(0)));
            Step(model, slots, selected, 2);

            // The freed slots take a new sequence without reallocating.
            var bytes = slots.Bytes;
            slots.Append(parts[2]);
            using var joined = DecodingState.Concat([selected, parts[2]]);
            Assert.Equal((3, 4, bytes), (slots.Batch, slots.SequenceCapacity, slots.Bytes));
            Step(model, slots, joined, 3);

            // Negative control: the slots' row 1 holds another sequence than the copy's row 0.
            Assert.NotEqual(model.Step([1, 1, 1], joined)[0], model.Step([1, 1, 1], slots)[1]);
        }
        finally
        {
            foreach (var part in parts)
                part.Dispose();
        }
    }

    private static void Step(LanguageModel model, DecodingState actual, DecodingState expected, int steps)
    {
        for (var step = 0; step < steps; step++)
        {
            var next = Enumerable.Range(0, expected.Batch).Select(b => (b + step) % model.VocabSize).ToArray();
            var want = model.Step(next, expected);
            var got = model.Step(next, actual);
            for (var b = 0; b < want.Length; b++)
                Assert.Equal(want[b], got[b]);
        }
    }

    [Fact]
    public void Keep_refuses_unordered_indices_and_an_emptied_state_refuses_all_but_append()
    {
        using var model = LanguageModel.Create(device, Config("retnet"), seed: 1);
        using var state = model.Prefill([[1, 2, 3], [4, 5, 6], [7, 8, 9]]).State;
        Assert.Equal("batchIndices", Assert.Throws<ArgumentException>(() => state.Keep([2, 1])).ParamName);
        Assert.Equal("batchIndices", Assert.Throws<ArgumentException>(() => state.Keep([0, 0])).ParamName);
        Assert.Equal("batchIndices", Assert.Throws<ArgumentException>(() => state.Keep([3])).ParamName);
        Assert.Equal("other", Assert.Throws<ArgumentException>(() => state.Append(state)).ParamName);
        using var twin = LanguageModel.Create(device, Config("retnet"), seed: 1);
        using var theirs = twin.CreateState(1);
        Assert.Equal("other", Assert.Throws<ArgumentException>(() => state.Append(theirs)).ParamName);

        state.Keep([]);
        Assert.Equal((0, 3), (state.Batch, state.SequenceCapacity));
        Assert.Throws<InvalidOperationException>(() => model.Step([], state));
        Assert.Throws<InvalidOperationException>(() => state.Clone());
        Assert.Throws<InvalidOperationException>(() => state.Save(Path.Combine(Path.GetTempPath(), "never.safetensors")));
        using var one = model.Prefill([[1, 2, 3]]).State;
        state.Append(one);
        Assert.Equal(model.Step([4], one)[0], model.Step([4], state)[0]);
    }
}
