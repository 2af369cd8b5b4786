using RetNet.Ilgpu.Generation;
using RetNet.Ilgpu.Model;
using RetNet.Ilgpu.Tests.Model;
using RetNet.Ilgpu.Tests.Support;
using RetNet.Ilgpu.Tokenizers;

namespace RetNet.Ilgpu.Tests.Generation;

/// <summary><see cref="TextCompletions"/>: a reader that falls behind the decoding loop gets every waiting token's
/// text in one piece, the same text a reader that keeps up gets, and the tokens it took are counted.</summary>
[Collection(DeviceCollection.Name)]
public sealed class TextCompletionsTests(DeviceFixture fixture)
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(60);

    private readonly RetNetDevice device = fixture.Device;

    [Fact]
    public async Task A_reader_behind_the_loop_gets_the_waiting_tokens_in_one_piece()
    {
        using var model = LanguageModel.Create(device, ModelTestSupport.Micro() with { VocabSize = 256 }, seed: 4);
        const string prompt = "Once upon a time";
        const int tokens = 12;
        string solo;
        using (var decoder = new ModelTokenDecoder(model))
            solo = string.Concat(TextGenerator.Generate(decoder, ByteTokenizer.Instance, prompt,
                SamplingOptions.Greedy with { MaxTokens = tokens }));

        await using var generator = new BatchedGenerator(model);
        // The first token comes from the prefill, each other from a step: after the last step every token waits.
        var steps = 0;
        var generated = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        generator.Stepped += _ =>
        {
            if (Interlocked.Increment(ref steps) == tokens - 1)
                generated.TrySetResult();
        };
        var completion = new TextCompletions(generator, ByteTokenizer.Instance)
            .Start(prompt, SamplingOptions.Greedy with { MaxTokens = tokens });
        await generated.Task.WaitAsync(Patience);
        Assert.Equal(0, completion.TokensRead);

        var pieces = new List<string>();
        await foreach (var piece in completion.ReadTextAsync().WithCancellation(new CancellationTokenSource(Patience).Token))
            pieces.Add(piece);
        // One piece for the waiting tokens, and at most one more for an incomplete character flushed at the end;
        // piece by piece the same text would come in up to twelve.
        Assert.InRange(pieces.Count, 1, 2);
        Assert.Equal(solo, string.Concat(pieces));
        Assert.Equal(tokens, completion.TokensRead);
        var result = await completion.Completion;
        Assert.Equal((solo, tokens, FinishReason.MaxTokens), (result.Text, result.CompletionTokens, result.Reason));
    }
}
