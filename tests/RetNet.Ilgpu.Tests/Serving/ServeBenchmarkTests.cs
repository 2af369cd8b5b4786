using RetNet.Ilgpu.Benchmarks;
using RetNet.Ilgpu.Tests.Model;
using RetNet.Ilgpu.Tests.Support;

namespace RetNet.Ilgpu.Tests.Serving;

/// <summary><see cref="ServeBenchmark"/> through a real in-process server: every level's requests complete and
/// generate exactly max_tokens each, its counts add up, and its latencies are measured.</summary>
[Collection(DeviceCollection.Name)]
public sealed class ServeBenchmarkTests(DeviceFixture fixture)
{
    [Fact]
    public void Each_level_completes_its_requests_and_counts_their_tokens()
    {
        var options = new ServeBenchmarkOptions
        {
            Config = ModelTestSupport.Micro() with { VocabSize = 256 },
            Concurrency = [1, 3], Requests = 3, PromptTokens = 5, MaxTokens = 6, WarmupTime = TimeSpan.Zero,
        };
        var results = ServeBenchmark.Run(fixture.Device, options);
        Assert.Equal([("retnet", 1), ("retnet", 3), ("transformer", 1), ("transformer", 3)],
            results.Select(r => (r.Model, r.Concurrency)));
        foreach (var r in results)
        {
            var requests = Math.Max(3, 4 * r.Concurrency);
            Assert.Equal((requests, 0, false), (r.Requests, r.Errors, r.TimedOut));
            Assert.Equal(5, r.PromptTokens);
            Assert.Equal(requests * 6L, r.CompletionTokens);
            Assert.True(r.Seconds > 0 && r.TokensPerSecond > 0);
            Assert.True(r.CpuSeconds > 0 && r.CpuMicrosecondsPerToken > 0, $"CPU {r.CpuSeconds} s");
            Assert.True(r.TtftP50Ms > 0 && r.TtftP99Ms >= r.TtftP50Ms);
            // An inter-token latency needs a chunk after the first: a client behind the loop may get all six at once.
            Assert.True(double.IsNaN(r.ItlP50Ms) || (r.ItlP50Ms > 0 && r.ItlP99Ms >= r.ItlP50Ms));
            Assert.InRange(r.MeanBatch, 1, r.Concurrency);
            Assert.True(r.StepP50Ms > 0);
        }
        // One client never shares a step.
        Assert.All(results.Where(r => r.Concurrency == 1), r => Assert.Equal(1, r.MeanBatch));
    }

    /// <summary>With a range ratio the requests ask for lengths drawn around max_tokens (seeded), each generates
    /// exactly its own, and the level counts what they generated.</summary>
    [Fact]
    public void Requests_of_drawn_lengths_are_counted_as_generated()
    {
        var options = new ServeBenchmarkOptions
        {
            Config = ModelTestSupport.Micro() with { VocabSize = 256 }, Architectures = ["retnet"],
            Concurrency = [2], Requests = 8, PromptTokens = 3, MaxTokens = 8, RangeRatio = 0.5,
            WarmupTime = TimeSpan.Zero,
        };
        var result = Assert.Single(ServeBenchmark.Run(fixture.Device, options));
        Assert.Equal((8, 0), (result.Requests, result.Errors));
        // Lengths in [4, 12]: not all 8 (the seeded draw), and the total between the bounds.
        Assert.InRange(result.CompletionTokens, 8 * 4, 8 * 12);
        Assert.NotEqual(8 * 8, result.CompletionTokens);
    }

    [Fact]
    public void Bad_options_are_refused_before_anything_is_served()
    {
        var options = new ServeBenchmarkOptions { Config = ModelTestSupport.Micro() with { VocabSize = 256 } };
        Assert.Throws<ArgumentException>(() => ServeBenchmark.Run(fixture.Device, options with { Concurrency = [1, 0] }));
        Assert.Throws<ArgumentException>(() => ServeBenchmark.Run(fixture.Device, options with { MaxTokens = 0 }));
        Assert.Throws<ArgumentException>(() => ServeBenchmark.Run(fixture.Device, options with { RangeRatio = 1 }));
        Assert.Throws<ArgumentException>(() => ServeBenchmark.Run(fixture.Device, options with { RangeRatio = -0.1 }));
        Assert.Throws<ArgumentException>(() => ServeBenchmark.Run(fixture.Device, options with { Architectures = ["gpt"] }));
        // No built-in tokenizer has 300 ids.
        Assert.Throws<ArgumentException>(() => ServeBenchmark.Run(fixture.Device,
            options with { Config = ModelTestSupport.Micro() with { VocabSize = 300 } }));
    }

    /// <summary>A stream's chunks to latencies: the first token's chunk is the time to first token; the inter-token
    /// latency is the time from it to the last token's chunk over the tokens after the first, however the tokens were
    /// split into chunks and whatever the gaps between them.</summary>
    [Fact]
    public void The_inter_token_latency_spreads_the_stream_over_its_tokens()
    {
        var (ttft, itl) = ServeBenchmark.Latencies([(0.5, 0), (2.0, 1), (3.0, 2), (3.5, 2), (9.0, 5), (10.0, 6)]);
        Assert.Equal((2.0, 8.0 / 5), (ttft, itl));
        // The same tokens delivered in two bursts: the same latencies.
        Assert.Equal((2.0, 8.0 / 5), ServeBenchmark.Latencies([(2.0, 1), (10.0, 6), (10.0, 6)]));
        // Two tokens in the first chunk: the first token's time is the chunk's, and both count after it.
        Assert.Equal((4.0, 2.0 / 2), ServeBenchmark.Latencies([(4.0, 2), (6.0, 3)]));
        // Negative control: the last token two ms later is a longer latency.
        Assert.NotEqual(8.0 / 5, ServeBenchmark.Latencies([(2.0, 1), (12.0, 6)]).ItlMs);
        Assert.True(double.IsNaN(ServeBenchmark.Latencies([(1.0, 0)]).TtftMs));
        Assert.True(double.IsNaN(ServeBenchmark.Latencies([(1.0, 3)]).ItlMs));
    }

    [Fact]
    public void Percentiles_are_nearest_rank()
    {
        var values = Enumerable.Range(1, 100).Select(v => (double)v).Reverse().ToArray();
        Assert.Equal(50, ServeBenchmark.Percentile(values, 50));
        Assert.Equal(99, ServeBenchmark.Percentile(values, 99));
        Assert.Equal(100, ServeBenchmark.Percentile(values, 100));
        Assert.Equal(7, ServeBenchmark.Percentile([7], 99));
        Assert.True(double.IsNaN(ServeBenchmark.Percentile([], 50)));
    }

    /// <summary>The clients read each chunk's top-level usage with a reader scan: in one segment or split across
    /// several, with fields in any order; a usage nested inside a choice is not the chunk's.</summary>
    [Fact]
    public void A_chunk_s_usage_is_read_from_its_top_level()
    {
        static (int, int)? Usage(string json, int split = 0)
        {
            var bytes = System.Text.Encoding.UTF8.GetBytes(json);
            if (split == 0)
                return ServeBenchmark.UsageOf(new System.Buffers.ReadOnlySequence<byte>(bytes));
            var first = new Segment(bytes.AsMemory(0, split));
            var last = first.Append(bytes.AsMemory(split));
            return ServeBenchmark.UsageOf(new System.Buffers.ReadOnlySequence<byte>(first, 0, last, last.Memory.Length));
        }

        const string Chunk = "{\"id\":\"cmpl-1\",\"choices\":[{\"index\":0,\"text\":\"a \\\"usage\\\"\",\"logprobs\":null}]," +
                             "\"usage\":{\"prompt_tokens\":16,\"total_tokens\":19,\"completion_tokens\":3}}";
        Assert.Equal((16, 3), Usage(Chunk));
        for (var split = 1; split < Chunk.Length; split += 7)
            Assert.Equal((16, 3), Usage(Chunk, split));
        Assert.Null(Usage("""{"id":"cmpl-1","choices":[],"usage":null}"""));
        // Negative control: a usage inside a choice is not the chunk's.
        Assert.Null(Usage("""{"choices":[{"usage":{"prompt_tokens":1,"completion_tokens":2}}]}"""));
        Assert.Throws<System.Text.Json.JsonException>(() => Usage("""{"usage":{"prompt_tokens":1}}"""));
        Assert.ThrowsAny<System.Text.Json.JsonException>(() => Usage("""[1]"""));
    }

    /// <summary>With several rounds a level reports its median round by tokens/s (the lower middle of an even count)
    /// and carries every round's tokens/s in the order measured.</summary>
    [Fact]
    public void A_level_measured_in_rounds_reports_its_median_round()
    {
        static ServeBenchmarkResult Round(double seconds, double step) =>
            new("retnet", 16, 8, 0, 16, 1000, seconds, 1, 2, 0.1, 0.2, 16, step, false, 0.5);

        var rounds = new[] { Round(0.010, 1), Round(0.020, 2), Round(0.005, 3), Round(0.040, 4), Round(0.008, 5) };
        var median = ServeBenchmark.MedianRound(rounds);
        Assert.Equal(1, median.StepP50Ms);
        Assert.Equal(100_000, median.TokensPerSecond, 6);
        Assert.Equal(rounds.Select(r => r.TokensPerSecond), median.RoundTokensPerSecond!);
        // Negative control: the fastest round is not the median.
        Assert.NotEqual(3, median.StepP50Ms);
        Assert.Equal(2, ServeBenchmark.MedianRound(rounds[..4]).StepP50Ms);
        Assert.Throws<ArgumentException>(() => ServeBenchmark.Run(fixture.Device,
            new ServeBenchmarkOptions { Rounds = 0 }));
    }

    private sealed class Segment : System.Buffers.ReadOnlySequenceSegment<byte>
    {
        public Segment(ReadOnlyMemory<byte> memory) => Memory = memory;

        public Segment Append(ReadOnlyMemory<byte> memory)
        {
            var next = new Segment(memory) { RunningIndex = RunningIndex + Memory.Length };
            Next = next;
            return next;
        }
    }
}
