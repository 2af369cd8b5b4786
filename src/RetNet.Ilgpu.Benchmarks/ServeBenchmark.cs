using System.Buffers;
using System.Diagnostics;
using System.IO.Pipelines;
using System.Net;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using RetNet.Ilgpu.Devices;
using RetNet.Ilgpu.Generation;
using RetNet.Ilgpu.Model;
using RetNet.Ilgpu.Serving;
using RetNet.Ilgpu.Tensors;
using RetNet.Ilgpu.Tokenizers;

namespace RetNet.Ilgpu.Benchmarks;

/// <summary>What <see cref="ServeBenchmark.Run"/> measures, validated by it.</summary>
public sealed record ServeBenchmarkOptions
{
    /// <summary>The RetNet config (a preset); the Transformer is <see cref="TransformerConfig.Matching"/> of it.</summary>
    public RetNetConfig Config { get; init; } = RetNetConfig.Preset("tiny");

    /// <summary>The models served, one after the other: "retnet", "transformer" or both.</summary>
    public IReadOnlyList<string> Architectures { get; init; } =
        [DecodeBenchmarkOptions.Retnet, DecodeBenchmarkOptions.Transformer];

    /// <summary>The concurrency levels: clients with one request in flight each.</summary>
    public IReadOnlyList<int> Concurrency { get; init; } = [1, 4, 16, 64];

    /// <summary>Requests per level at least; a level sends max(this, 4 × concurrency), so every client sends several.</summary>
    public int Requests { get; init; } = 64;

    /// <summary>Tokens in each prompt (random letters, one token each with the byte tokenizer).</summary>
    public int PromptTokens { get; init; } = 16;

    /// <summary>Tokens each request generates (max_tokens with ignore_eos, so every request generates exactly what
    /// it asks for): this many, or with <see cref="RangeRatio"/> a length drawn around it.</summary>
    public int MaxTokens { get; init; } = 128;

    /// <summary>How much the requests' lengths vary, in [0, 1) (vLLM's random-range-ratio): each asks for a length
    /// drawn uniformly from [MaxTokens·(1 − r), MaxTokens·(1 + r)] by the seeded generator. 0 (the default): every
    /// request the same length, so requests admitted together also finish together, and the batch drains and refills
    /// in waves; r &gt; 0 staggers them, as requests of real traffic are.</summary>
    public double RangeRatio { get; init; }

    /// <summary>How the weight matrices are stored.</summary>
    public TensorDType WeightType { get; init; } = TensorDType.Float32;

    /// <summary>The longest a level may run; what is still in flight then is cancelled and the level marked.</summary>
    public TimeSpan LevelTimeLimit { get; init; } = TimeSpan.FromMinutes(2);

    /// <summary>How long each server is driven, untimed, before the first level (rounds of one request per client at
    /// every level), so .NET has optimised the step and HTTP paths of every batch size.</summary>
    public TimeSpan WarmupTime { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>
    /// How many times each level is measured (default 1): the levels run in turn, round after round, and each level
    /// reports its median round by tokens/s, so a slow spell of the machine falls on every level alike rather than on
    /// one of them.
    /// </summary>
    public int Rounds { get; init; } = 1;

    /// <summary>Seed of the weights and the prompts.</summary>
    public int Seed { get; init; }
}

/// <summary>One (model, concurrency) level of <see cref="ServeBenchmark"/>.</summary>
/// <param name="Model">"retnet" or "transformer".</param>
/// <param name="Concurrency">Clients, each with one request in flight.</param>
/// <param name="Requests">Requests that completed with status 200.</param>
/// <param name="Errors">Requests that did not (status, transport error, or cancelled at the time limit).</param>
/// <param name="PromptTokens">Prompt tokens per request, as the server counted them (the mean).</param>
/// <param name="CompletionTokens">Tokens generated over the level, as the server counted them.</param>
/// <param name="Seconds">Wall time of the level, first request sent to last response read.</param>
/// <param name="TtftP50Ms">Time to first token, median over requests: request sent to the first chunk holding a
/// token.</param>
/// <param name="TtftP99Ms">Time to first token, 99th percentile.</param>
/// <param name="ItlP50Ms">Inter-token latency, median over requests of each one's (time of its last token − time of
/// its first) / (its tokens − 1) (<see cref="ServeBenchmark.Latencies"/>).</param>
/// <param name="ItlP99Ms">Inter-token latency, 99th percentile over requests.</param>
/// <param name="MeanBatch">Sequences per decoding step of the server's loop, averaged over the level's steps.</param>
/// <param name="StepP50Ms">Median wall time of one decoding step of the loop (sampling included).</param>
/// <param name="RoundTokensPerSecond">Every round's tokens/s, in the order measured, when the level ran more than
/// once (<see cref="ServeBenchmarkOptions.Rounds"/>); the other fields are those of the median round.</param>
/// <param name="CpuSeconds">CPU time of the whole process (server, loop and clients, all threads) during the level:
/// what the level cost, which the load of other programs changes far less than it changes tokens/s.</param>
/// <param name="TimedOut">The level hit <see cref="ServeBenchmarkOptions.LevelTimeLimit"/>.</param>
public sealed record ServeBenchmarkResult(string Model, int Concurrency, int Requests, int Errors, double PromptTokens,
    long CompletionTokens, double Seconds, double TtftP50Ms, double TtftP99Ms, double ItlP50Ms, double ItlP99Ms,
    double MeanBatch, double StepP50Ms, bool TimedOut, double CpuSeconds = double.NaN,
    IReadOnlyList<double>? RoundTokensPerSecond = null)
{
    /// <summary>CPU time of the process per generated token, in microseconds.</summary>
    public double CpuMicrosecondsPerToken => CpuSeconds * 1e6 / CompletionTokens;

    /// <summary>Generated tokens per second of the level, all requests together.</summary>
    public double TokensPerSecond => CompletionTokens / Seconds;
}

/// <summary>
/// <c>retnet bench serve</c>: serves each model with <see cref="RetNetServer"/> in this process on a free loopback
/// port and drives it over HTTP, as an application would: at each concurrency level that many clients each send
/// streaming /v1/completions requests one after another (temperature 0, ignore_eos, a fixed max_tokens, random
/// prompts of a fixed length) until the level's requests are sent. Every chunk asks for the usage so far
/// (stream_options.continuous_usage_stats), so the client knows how many tokens each chunk holds. It reports the
/// aggregate generated tokens per second, the time to first token and the inter-token latency (p50, p99), and, from
/// the server's loop, the mean batch per step. Server and clients share the machine, as they do on one host.
/// </summary>
public static class ServeBenchmark
{
    private static readonly JsonSerializerOptions Compact = new() { WriteIndented = false };

    /// <summary>Serves and measures each model of <paramref name="options"/> at each concurrency.</summary>
    /// <param name="device">The device the models run on.</param>
    /// <param name="options">What to measure; null for the defaults.</param>
    /// <param name="progress">Called with each level's result as soon as it is measured.</param>
    /// <param name="cancellationToken">Checked between levels (and cancels the level in flight): the results so far
    /// are returned.</param>
    /// <exception cref="ArgumentException">An option is out of range, or the preset's vocabulary has no built-in
    /// tokenizer.</exception>
    public static IReadOnlyList<ServeBenchmarkResult> Run(RetNetDevice device, ServeBenchmarkOptions? options = null,
        Action<ServeBenchmarkResult>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(device);
        options ??= new ServeBenchmarkOptions();
        Validate(options);
        var tokenizer = TextTokenizers.ForVocabulary(TokenizerKind.Auto, options.Config.VocabSize)
                        ?? throw new ArgumentException(
                            $"Argument 'options' has a config with {options.Config.VocabSize} ids; no built-in " +
                            "tokenizer has that vocabulary (byte: 256, gpt2: 50257).", nameof(options));
        var results = new List<ServeBenchmarkResult>();
        foreach (var architecture in options.Architectures)
        {
            if (cancellationToken.IsCancellationRequested)
                break;
            var model = LanguageModel.Create(device, Benchmarks.Architectures.Config(architecture, options.Config),
                options.Seed, options.WeightType);
            MeasureModel(model, tokenizer, options, results, progress, cancellationToken).GetAwaiter().GetResult();
        }
        return results;
    }

    private static async Task MeasureModel(ILanguageModel model, ITextTokenizer tokenizer,
        ServeBenchmarkOptions options, List<ServeBenchmarkResult> results, Action<ServeBenchmarkResult>? progress,
        CancellationToken cancellationToken)
    {
        var most = options.Concurrency.Max();
        var serverOptions = new ServerOptions
        {
            ModelId = model.Architecture,
            Generation = new BatchedGeneratorOptions
            {
                MaxBatch = most,
                MaxQueue = most,
                MaxContext = options.PromptTokens + Longest(options) + 1,
            },
        };
        await using var server = await RetNetServer.StartAsync(model, tokenizer, serverOptions, ownsModel: true,
            cancellationToken: cancellationToken).ConfigureAwait(false);
        var steps = new StepLog();
        server.Generator.Stepped += steps.Add;
        using var handler = new SocketsHttpHandler
        {
            MaxConnectionsPerServer = int.MaxValue,
            PooledConnectionLifetime = Timeout.InfiniteTimeSpan,
            UseProxy = false,
        };
        using var client = new HttpClient(handler) { BaseAddress = server.Address, Timeout = Timeout.InfiniteTimeSpan };
        var prompts = new PromptSource(tokenizer, options.PromptTokens, options.Seed);

        // Every level's batch sizes and code paths, untimed, until .NET has had time to optimise them.
        var warmup = Stopwatch.StartNew();
        while (warmup.Elapsed < options.WarmupTime && !cancellationToken.IsCancellationRequested)
            foreach (var concurrency in options.Concurrency)
                await RunLevel(client, model.Architecture, concurrency, concurrency, prompts, options, steps,
                    cancellationToken).ConfigureAwait(false);
        var rounds = options.Concurrency.Select(_ => new List<ServeBenchmarkResult>()).ToArray();
        for (var round = 0; round < options.Rounds; round++)
            for (var level = 0; level < options.Concurrency.Count; level++)
            {
                if (cancellationToken.IsCancellationRequested)
                    break;
                var concurrency = options.Concurrency[level];
                var requests = Math.Max(options.Requests, 4 * concurrency);
                var result = await RunLevel(client, model.Architecture, concurrency, requests, prompts, options, steps,
                    cancellationToken).ConfigureAwait(false);
                rounds[level].Add(result);
                if (options.Rounds == 1)
                    progress?.Invoke(result);
            }
        if (options.Rounds == 1)
        {
            results.AddRange(rounds.SelectMany(r => r));
            return;
        }
        foreach (var measured in rounds.Where(r => r.Count > 0))
        {
            var median = MedianRound(measured);
            results.Add(median);
            progress?.Invoke(median);
        }
    }

    /// <summary>The round with the median tokens/s (the lower middle one of an even count), carrying every round's
    /// tokens/s.</summary>
    internal static ServeBenchmarkResult MedianRound(IReadOnlyList<ServeBenchmarkResult> rounds)
    {
        var ordered = rounds.OrderBy(r => r.TokensPerSecond).ToList();
        return ordered[(ordered.Count - 1) / 2] with
        {
            RoundTokensPerSecond = rounds.Select(r => r.TokensPerSecond).ToArray(),
        };
    }

    private static async Task<ServeBenchmarkResult> RunLevel(HttpClient client, string modelId, int concurrency,
        int requests, PromptSource prompts, ServeBenchmarkOptions options, StepLog steps,
        CancellationToken cancellationToken)
    {
        using var limit = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        limit.CancelAfter(options.LevelTimeLimit);
        var outcomes = new List<RequestOutcome>();
        var next = 0;
        steps.Reset();
        using var process = Process.GetCurrentProcess();
        var cpuBefore = process.TotalProcessorTime;
        var started = Stopwatch.GetTimestamp();
        var clients = Enumerable.Range(0, concurrency).Select(_ => Task.Run(async () =>
        {
            var mine = new List<RequestOutcome>();
            while (Interlocked.Increment(ref next) <= requests && !limit.IsCancellationRequested)
                mine.Add(await Send(client, modelId, prompts.Next(), prompts.Length(options), limit.Token)
                    .ConfigureAwait(false));
            return mine;
        }, CancellationToken.None)).ToArray();
        foreach (var mine in await Task.WhenAll(clients).ConfigureAwait(false))
            outcomes.AddRange(mine);
        var seconds = Stopwatch.GetElapsedTime(started).TotalSeconds;
        process.Refresh();
        var cpuSeconds = (process.TotalProcessorTime - cpuBefore).TotalSeconds;
        var done = outcomes.Where(o => o.Error is null).ToList();
        var (meanBatch, stepMs) = steps.Summary();
        return new ServeBenchmarkResult(modelId, concurrency, done.Count, outcomes.Count - done.Count,
            done.Count == 0 ? 0 : done.Average(o => o.PromptTokens), outcomes.Sum(o => (long)o.CompletionTokens),
            seconds, Percentile(done.Select(o => o.TtftMs), 50), Percentile(done.Select(o => o.TtftMs), 99),
            Percentile(done.Select(o => o.ItlMs).Where(double.IsFinite), 50),
            Percentile(done.Select(o => o.ItlMs).Where(double.IsFinite), 99), meanBatch,
            stepMs, limit.IsCancellationRequested && !cancellationToken.IsCancellationRequested, cpuSeconds);
    }

    /// <summary>One streaming request, timed chunk by chunk.</summary>
    private static async Task<RequestOutcome> Send(HttpClient client, string modelId, string prompt, int maxTokens,
        CancellationToken cancellationToken)
    {
        var body = new JsonObject
        {
            ["model"] = modelId,
            ["prompt"] = prompt,
            ["max_tokens"] = maxTokens,
            ["temperature"] = 0,
            ["ignore_eos"] = true,
            ["stream"] = true,
            ["stream_options"] = new JsonObject { ["include_usage"] = true, ["continuous_usage_stats"] = true },
        };
        var sent = Stopwatch.GetTimestamp();
        var chunks = new List<(double Ms, int Tokens)>();
        var promptTokens = 0;
        try
        {
            using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/completions")
            {
                Content = new StringContent(body.ToJsonString(Compact), Encoding.UTF8, "application/json"),
            };
            using var response = await client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead,
                cancellationToken).ConfigureAwait(false);
            if (response.StatusCode != HttpStatusCode.OK)
                return RequestOutcome.Failed($"status {(int)response.StatusCode}: " +
                                             await response.Content.ReadAsStringAsync(cancellationToken)
                                                 .ConfigureAwait(false), 0);
            // The events are read as bytes and only the usage is parsed out of each: the clients share the machine
            // with the server, so their per-token work is kept to a scan.
            using var stream = await response.Content.ReadAsStreamAsync(cancellationToken).ConfigureAwait(false);
            var reader = PipeReader.Create(stream);
            try
            {
                var done = false;
                while (!done)
                {
                    var read = await reader.ReadAsync(cancellationToken).ConfigureAwait(false);
                    var buffer = read.Buffer;
                    while (!done && buffer.PositionOf((byte)'\n') is { } end)
                    {
                        var line = buffer.Slice(0, end);
                        buffer = buffer.Slice(buffer.GetPosition(1, end));
                        if (!new SequenceReader<byte>(line).IsNext("data: "u8))
                            continue;
                        var now = Stopwatch.GetElapsedTime(sent).TotalMilliseconds;
                        var data = line.Slice(6);
                        if (data.Length == 6 && new SequenceReader<byte>(data).IsNext("[DONE]"u8))
                            done = true;
                        else if (UsageOf(data) is var (inPrompt, completion))
                        {
                            promptTokens = inPrompt;
                            chunks.Add((now, completion));
                        }
                    }
                    reader.AdvanceTo(buffer.Start, buffer.End);
                    if (read.IsCompleted)
                        break;
                }
            }
            finally
            {
                await reader.CompleteAsync().ConfigureAwait(false);
            }
        }
        catch (Exception e) when (e is HttpRequestException or IOException or OperationCanceledException or JsonException)
        {
            return RequestOutcome.Failed(e.Message, chunks.Count == 0 ? 0 : chunks[^1].Tokens);
        }
        var tokens = chunks.Count == 0 ? 0 : chunks[^1].Tokens;
        if (tokens != maxTokens)
            return RequestOutcome.Failed($"generated {tokens} tokens; expected {maxTokens}", tokens);
        var (ttft, itl) = Latencies(chunks);
        return new RequestOutcome(null, promptTokens, tokens, ttft, itl);
    }

    /// <summary>The top-level <c>usage</c> of one streamed chunk (its prompt and completion tokens), or null when the
    /// chunk has none (or a null one).</summary>
    /// <exception cref="JsonException">The chunk is not JSON, or its usage lacks a count.</exception>
    internal static (int Prompt, int Completion)? UsageOf(ReadOnlySequence<byte> chunk)
    {
        var json = new Utf8JsonReader(chunk);
        if (!json.Read() || json.TokenType != JsonTokenType.StartObject)
            throw new JsonException("A streamed chunk is not a JSON object.");
        while (json.Read() && json.TokenType == JsonTokenType.PropertyName)
        {
            var isUsage = json.ValueTextEquals("usage"u8);
            json.Read();
            if (!isUsage || json.TokenType != JsonTokenType.StartObject)
            {
                json.Skip();
                continue;
            }
            int? prompt = null, completion = null;
            while (json.Read() && json.TokenType == JsonTokenType.PropertyName)
            {
                if (json.ValueTextEquals("prompt_tokens"u8))
                    prompt = json.Read() ? json.GetInt32() : null;
                else if (json.ValueTextEquals("completion_tokens"u8))
                    completion = json.Read() ? json.GetInt32() : null;
                else
                {
                    json.Read();
                    json.Skip();
                }
            }
            return prompt is { } p && completion is { } c
                ? (p, c)
                : throw new JsonException("A streamed chunk's usage lacks prompt_tokens or completion_tokens.");
        }
        return null;
    }

    /// <summary>
    /// The time to first token and the inter-token latency of one stream from its chunks: when each arrived (ms after
    /// the request was sent) and how many tokens had come by then. The first chunk holding a token gives the time to
    /// first token; the inter-token latency is the time from there to the chunk with the last token over the tokens
    /// after the first (vLLM's time per output token, GenAI-Perf's inter-token latency). Per stream rather than per
    /// chunk, because chunks that left the server apart can arrive together in one read (then their gaps read as 0),
    /// and one chunk may hold several tokens. NaN with fewer than two tokens, or when they all came at once.
    /// </summary>
    internal static (double TtftMs, double ItlMs) Latencies(IReadOnlyList<(double Ms, int Tokens)> chunks)
    {
        double first = double.NaN, last = double.NaN;
        int firstTokens = 0, tokens = 0;
        foreach (var (ms, total) in chunks)
        {
            if (total <= tokens)
                continue;
            if (tokens == 0)
                (first, firstTokens) = (ms, total);
            (last, tokens) = (ms, total);
        }
        return (first, tokens > firstTokens ? (last - first) / (tokens - 1) : double.NaN);
    }

    /// <summary>The <paramref name="percent"/>th percentile (nearest rank) of <paramref name="values"/>; NaN when
    /// there are none.</summary>
    internal static double Percentile(IEnumerable<double> values, double percent)
    {
        var sorted = values.Order().ToArray();
        if (sorted.Length == 0)
            return double.NaN;
        var rank = (int)Math.Ceiling(percent / 100 * sorted.Length);
        return sorted[Math.Clamp(rank - 1, 0, sorted.Length - 1)];
    }

    private static void Validate(ServeBenchmarkOptions options)
    {
        ArgumentNullException.ThrowIfNull(options.Config, nameof(options.Config));
        options.Config.Validate();
        Benchmarks.Architectures.Validate(options.Architectures);
        if (options.Concurrency.Count == 0 || options.Concurrency.Any(c => c < 1))
            throw new ArgumentException(
                $"Argument 'options' has concurrency levels [{string.Join(", ", options.Concurrency)}]; expected " +
                "at least one, each ≥ 1.", nameof(options));
        if (!(options.RangeRatio is >= 0 and < 1))
            throw new ArgumentException(
                $"Argument 'options' has a range ratio of {options.RangeRatio}; expected one in [0, 1).",
                nameof(options));
        if (options.Requests < 1 || options.PromptTokens < 1 || options.MaxTokens < 1)
            throw new ArgumentException(
                $"Argument 'options' has {options.Requests} requests, prompts of {options.PromptTokens} tokens, " +
                $"max tokens {options.MaxTokens}; expected each ≥ 1.", nameof(options));
        if (options.Rounds < 1)
            throw new ArgumentException(
                $"Argument 'options' has {options.Rounds} rounds; expected ≥ 1.", nameof(options));
        if (options.LevelTimeLimit <= TimeSpan.Zero || options.WarmupTime < TimeSpan.Zero)
            throw new ArgumentException(
                $"Argument 'options' has a level time limit of {options.LevelTimeLimit} and a warm-up of " +
                $"{options.WarmupTime}; expected a positive limit and a warm-up ≥ 0.", nameof(options));
    }

    /// <summary>The longest length a request may ask for.</summary>
    private static int Longest(ServeBenchmarkOptions options) =>
        (int)Math.Floor(options.MaxTokens * (1 + options.RangeRatio));

    private sealed record RequestOutcome(string? Error, int PromptTokens, int CompletionTokens, double TtftMs,
        double ItlMs)
    {
        public static RequestOutcome Failed(string error, int tokens) => new(error, 0, tokens, 0, double.NaN);
    }

    /// <summary>Random prompts of a fixed number of tokens: letters, each one token for the byte tokenizer; for
    /// another tokenizer the text of that many random letter tokens' worth, counted by the server.</summary>
    private sealed class PromptSource(ITextTokenizer tokenizer, int tokens, int seed)
    {
        private readonly Random random = new(seed);
        private readonly Lock gate = new();

        /// <summary>The next request's length: <see cref="ServeBenchmarkOptions.MaxTokens"/>, or drawn around it.</summary>
        public int Length(ServeBenchmarkOptions options)
        {
            if (options.RangeRatio == 0)
                return options.MaxTokens;
            lock (gate)
            {
                var low = Math.Max(1, (int)Math.Ceiling(options.MaxTokens * (1 - options.RangeRatio)));
                return random.Next(low, Longest(options) + 1);
            }
        }

        public string Next()
        {
            lock (gate)
            {
                // The byte tokenizer reads a letter as one token; another merges letters, so it gets one-letter
                // words (one or more tokens each).
                var words = tokenizer.VocabularySize != ByteTokenizer.Instance.VocabularySize;
                var text = new StringBuilder(2 * tokens);
                for (var i = 0; i < tokens; i++)
                    (words ? text.Append(' ') : text).Append((char)('a' + random.Next(26)));
                return text.ToString();
            }
        }
    }

    /// <summary>The server loop's steps during a level (written on the loop's thread, read between levels).</summary>
    private sealed class StepLog
    {
        private readonly Lock gate = new();
        private readonly List<GenerationStep> steps = [];

        public void Add(GenerationStep step)
        {
            lock (gate)
                steps.Add(step);
        }

        public void Reset()
        {
            lock (gate)
                steps.Clear();
        }

        public (double MeanBatch, double StepP50Ms) Summary()
        {
            lock (gate)
                return steps.Count == 0
                    ? (0, double.NaN)
                    : (steps.Average(s => s.Batch), Percentile(steps.Select(s => s.Elapsed.TotalMilliseconds), 50));
        }
    }
}
