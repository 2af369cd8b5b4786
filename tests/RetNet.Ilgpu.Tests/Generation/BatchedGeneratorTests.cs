using RetNet.Ilgpu.Generation;
using RetNet.Ilgpu.Model;
using RetNet.Ilgpu.Tests.Model;
using RetNet.Ilgpu.Tests.Support;

namespace RetNet.Ilgpu.Tests.Generation;

/// <summary>
/// <see cref="BatchedGenerator"/>: a request generates what <see cref="Generator"/> generates for its prompt alone,
/// whichever requests share its batch; cancelled requests free their slots; the queue is bounded; usage is counted.
/// </summary>
[Collection(DeviceCollection.Name)]
public sealed class BatchedGeneratorTests(DeviceFixture fixture)
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(60);

    private readonly RetNetDevice device = fixture.Device;

    public static TheoryData<string> Architectures => ["retnet", "transformer"];

    private LanguageModel Model(string architecture) => LanguageModel.Create(device, architecture == "retnet"
        ? ModelTestSupport.Micro()
        : new TransformerConfig { EmbedDim = 32, Heads = 2, FfnEmbedDim = 40, Layers = 2, VocabSize = 40 }, seed: 11);

    private static int[][] Prompts(int count, int vocab) => Enumerable.Range(0, count)
        .Select(i => ModelTestSupport.Row(ModelTestSupport.Tokens(seed: 20 + i, 1, 2 + 3 * i, vocab), 0)).ToArray();

    private static IReadOnlyList<int> Solo(ILanguageModel model, int[] prompt, SamplingOptions options)
    {
        var decoder = new ModelTokenDecoder(model);
        try
        {
            return Generator.Complete(decoder, [prompt], options)[0].Tokens;
        }
        finally
        {
            decoder.Dispose();
        }
    }

    [Theory, MemberData(nameof(Architectures))]
    public async Task Each_request_among_concurrent_ones_generates_its_solo_output(string architecture)
    {
        using var model = Model(architecture);
        var prompts = Prompts(6, model.VocabSize);
        var greedy = SamplingOptions.Greedy with { MaxTokens = 12 };
        var sampled = new SamplingOptions { Temperature = 0.9, TopK = 20, Seed = 5, MaxTokens = 12 };
        // Odd requests sample with a seed: their draws must not depend on their neighbours either.
        var options = prompts.Select((_, i) => i % 2 == 0 ? greedy : sampled with { Seed = 5 + i }).ToArray();
        var expected = prompts.Select((p, i) => Solo(model, p, options[i])).ToArray();

        await using var generator = new BatchedGenerator(model, new BatchedGeneratorOptions { MaxBatch = 4 });
        var alone = await generator.Submit(prompts[0], options[0]).Completion.WaitAsync(Patience);
        Assert.Equal(expected[0], alone.Tokens);

        var handles = prompts.Select((p, i) => generator.Submit(p, options[i])).ToArray();
        for (var i = 0; i < handles.Length; i++)
        {
            var result = await handles[i].Completion.WaitAsync(Patience);
            Assert.Equal(expected[i], result.Tokens);
        }
        // Negative control: another seed samples something else.
        Assert.NotEqual(expected[1], Solo(model, prompts[1], sampled with { Seed = 999 }));
    }

    [Fact]
    public async Task Streamed_tokens_and_usage_are_those_of_the_result()
    {
        using var model = Model("retnet");
        var prompt = Prompts(1, model.VocabSize)[0];
        await using var generator = new BatchedGenerator(model);
        var handle = generator.Submit(prompt, SamplingOptions.Greedy with { MaxTokens = 7 });
        var streamed = new List<int>();
        await foreach (var token in handle.ReadTokensAsync().WithCancellation(new CancellationTokenSource(Patience).Token))
            streamed.Add(token);
        var result = await handle.Completion.WaitAsync(Patience);
        Assert.Equal(result.Tokens, streamed);
        Assert.Equal((FinishReason.MaxTokens, prompt.Length, 7), (result.Reason, result.PromptTokens, result.CompletionTokens));

        var stop = result.Tokens[2];
        var stopped = await generator.Submit(prompt, SamplingOptions.Greedy with
        {
            MaxTokens = 7, StopTokens = new HashSet<int> { stop },
        }).Completion.WaitAsync(Patience);
        Assert.Equal(FinishReason.StopToken, stopped.Reason);
        Assert.Equal(result.Tokens.TakeWhile(t => t != stop), stopped.Tokens);
    }

    [Fact]
    public async Task A_cancelled_request_frees_its_slot_and_a_full_queue_refuses_fast()
    {
        using var model = Model("transformer");
        var prompt = Prompts(1, model.VocabSize)[0];
        await using var generator = new BatchedGenerator(model,
            new BatchedGeneratorOptions { MaxBatch = 1, MaxQueue = 1, MaxContext = 100_000 });
        using var cancel = new CancellationTokenSource();
        var endless = generator.Submit(prompt, SamplingOptions.Greedy with { MaxTokens = 50_000 }, cancel.Token);
        await using (var tokens = endless.ReadTokensAsync().GetAsyncEnumerator())
            Assert.True(await tokens.MoveNextAsync().AsTask().WaitAsync(Patience));
        Assert.Equal(1, generator.ActiveSequences);

        var queued = generator.Submit(prompt, SamplingOptions.Greedy with { MaxTokens = 3 });
        Assert.Equal(1, generator.QueuedRequests);
        var full = Assert.Throws<GenerationQueueFullException>(() => generator.Submit(prompt, SamplingOptions.Greedy));
        Assert.Equal(1, full.MaxQueue);

        cancel.Cancel();
        var cancelled = await endless.Completion.WaitAsync(Patience);
        Assert.Equal(FinishReason.Cancelled, cancelled.Reason);
        Assert.True(cancelled.CompletionTokens is > 0 and < 50_000);
        Assert.Equal(3, (await queued.Completion.WaitAsync(Patience)).CompletionTokens);
        for (var i = 0; i < 100 && generator.ActiveSequences > 0; i++)
            await Task.Delay(20);
        Assert.Equal(0, generator.ActiveSequences);
    }

    [Fact]
    public async Task A_queue_of_zero_still_admits_requests_into_free_slots()
    {
        using var model = Model("retnet");
        await using var generator = new BatchedGenerator(model,
            new BatchedGeneratorOptions { MaxBatch = 2, MaxQueue = 0 });
        var results = await Task.WhenAll(Enumerable.Range(0, 2).Select(_ =>
            generator.Submit([1, 2], SamplingOptions.Greedy with { MaxTokens = 3 }).Completion)).WaitAsync(Patience);
        Assert.All(results, r => Assert.Equal(3, r.CompletionTokens));
    }

    [Fact]
    public async Task Prompts_past_the_context_are_refused_and_generation_stops_at_its_end()
    {
        using var model = Model("retnet");
        await using var generator = new BatchedGenerator(model, new BatchedGeneratorOptions { MaxContext = 8 });
        Assert.Equal("prompt", Assert.Throws<ArgumentException>(() =>
            generator.Submit(new int[8], SamplingOptions.Greedy)).ParamName);
        Assert.Equal("prompt", Assert.Throws<ArgumentException>(() =>
            generator.Submit([model.VocabSize], SamplingOptions.Greedy)).ParamName);
        var result = await generator.Submit(new int[5], SamplingOptions.Greedy with { MaxTokens = 64 })
            .Completion.WaitAsync(Patience);
        Assert.Equal((FinishReason.MaxTokens, 3), (result.Reason, result.CompletionTokens));
    }

    [Fact]
    public async Task Stopping_finishes_what_is_in_flight_and_refuses_new_requests()
    {
        using var model = Model("retnet");
        var generator = new BatchedGenerator(model);
        var handle = generator.Submit([1, 2, 3], SamplingOptions.Greedy with { MaxTokens = 5 });
        await generator.StopAsync().WaitAsync(Patience);
        Assert.Equal(FinishReason.MaxTokens, (await handle.Completion.WaitAsync(Patience)).Reason);
        Assert.Throws<ObjectDisposedException>(() => generator.Submit([1], SamplingOptions.Greedy));
        generator.Dispose();
    }
}
