using System.ClientModel;
using System.Net;
using System.Text;
using System.Text.Json;
using OpenAI;
using OpenAI.Chat;
using RetNet.Ilgpu.Generation;
using RetNet.Ilgpu.Model;
using RetNet.Ilgpu.Serving;
using RetNet.Ilgpu.Tests.Model;
using RetNet.Ilgpu.Tests.Support;
using RetNet.Ilgpu.Tokenizers;

namespace RetNet.Ilgpu.Tests.Serving;

/// <summary>
/// <see cref="RetNetServer"/> started in process on a free loopback port with a micro byte-level model, driven by a
/// real HttpClient and by the official OpenAI .NET SDK: answers equal what the library generates alone, every bad
/// input gets its status and OpenAI error body and the server keeps serving, a full queue answers 429, a client that
/// disconnects frees its slot.
/// </summary>
[Collection(DeviceCollection.Name)]
public sealed class ServerTests(DeviceFixture fixture)
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(60);

    private readonly RetNetDevice device = fixture.Device;

    private LanguageModel ByteModel() =>
        LanguageModel.Create(device, ModelTestSupport.Micro() with { VocabSize = 256 }, seed: 4);

    private static Task<RetNetServer> Start(ILanguageModel model, ServerOptions? options = null) =>
        RetNetServer.StartAsync(model, ByteTokenizer.Instance, options ?? new ServerOptions { ModelId = "micro" });

    private static HttpClient Client(RetNetServer server) => new() { BaseAddress = server.Address, Timeout = Patience };

    /// <summary>What <see cref="TextGenerator"/> generates greedily for <paramref name="prompt"/> alone, cut at the
    /// first of <paramref name="stop"/>.</summary>
    private static string Solo(ILanguageModel model, string prompt, int maxTokens, string? stop = null)
    {
        var decoder = new ModelTokenDecoder(model);
        try
        {
            var text = string.Concat(TextGenerator.Generate(decoder, ByteTokenizer.Instance, prompt,
                SamplingOptions.Greedy with { MaxTokens = maxTokens }));
            var at = stop is null ? -1 : text.IndexOf(stop, StringComparison.Ordinal);
            return at >= 0 ? text[..at] : text;
        }
        finally
        {
            decoder.Dispose();
        }
    }

    private static async Task<(HttpStatusCode Status, JsonElement Body)> Post(HttpClient http, string path, string json)
    {
        using var response = await http.PostAsync(path, new StringContent(json, Encoding.UTF8, "application/json"));
        var text = await response.Content.ReadAsStringAsync();
        return (response.StatusCode, JsonDocument.Parse(text).RootElement.Clone());
    }

    /// <summary>The data lines of a server-sent event stream, the last being [DONE].</summary>
    private static async Task<List<string>> Events(HttpClient http, string path, string json)
    {
        using var response = await http.PostAsync(path, new StringContent(json, Encoding.UTF8, "application/json"));
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("text/event-stream", response.Content.Headers.ContentType?.MediaType);
        var body = await response.Content.ReadAsStringAsync();
        var events = body.Split("\n\n", StringSplitOptions.RemoveEmptyEntries).ToList();
        Assert.All(events, e => Assert.StartsWith("data: ", e));
        Assert.Equal("data: [DONE]", events[^1]);
        return events.Select(e => e["data: ".Length..]).ToList();
    }

    [Fact]
    public async Task Completions_and_chat_answer_the_solo_text_streamed_or_not()
    {
        using var model = ByteModel();
        const string prompt = "Once upon a time";
        var completion = Solo(model, prompt, 12);
        var chatPrompt = PlainChatFormat.Render([("user", "Say hello.")]);
        var chat = Solo(model, chatPrompt, 12, PlainChatFormat.UserTurn);
        await using var server = await Start(model);
        using var http = Client(server);

        Assert.Equal("ok", (await http.GetFromJsonDocument("/health")).GetProperty("status").GetString());
        Assert.Equal("micro", (await http.GetFromJsonDocument("/v1/models")).GetProperty("data")[0]
            .GetProperty("id").GetString());

        var request = $$"""{"model":"micro","prompt":"{{prompt}}","max_tokens":12,"temperature":0}""";
        var (status, body) = await Post(http, "/v1/completions", request);
        Assert.Equal(HttpStatusCode.OK, status);
        var choice = body.GetProperty("choices")[0];
        Assert.Equal(completion, choice.GetProperty("text").GetString());
        Assert.Equal("length", choice.GetProperty("finish_reason").GetString());
        var usage = body.GetProperty("usage");
        Assert.Equal((prompt.Length, 12, prompt.Length + 12), (usage.GetProperty("prompt_tokens").GetInt32(),
            usage.GetProperty("completion_tokens").GetInt32(), usage.GetProperty("total_tokens").GetInt32()));

        var chunks = (await Events(http, "/v1/completions", request[..^1] + ""","stream":true}"""))
            .SkipLast(1).Select(e => JsonDocument.Parse(e).RootElement).ToList();
        Assert.Equal(completion, string.Concat(chunks.Select(c => c.GetProperty("choices")[0].GetProperty("text").GetString())));
        Assert.Equal(12, chunks[^1].GetProperty("usage").GetProperty("completion_tokens").GetInt32());

        var chatRequest = """{"messages":[{"role":"user","content":"Say hello."}],"max_completion_tokens":12,"temperature":0""";
        (status, body) = await Post(http, "/v1/chat/completions", chatRequest + "}");
        Assert.Equal(HttpStatusCode.OK, status);
        Assert.Equal(chat, body.GetProperty("choices")[0].GetProperty("message").GetProperty("content").GetString());
        Assert.True(body.GetProperty("usage").GetProperty("completion_tokens").GetInt32() > 0);

        var events = (await Events(http, "/v1/chat/completions",
            chatRequest + ""","stream":true,"stream_options":{"include_usage":true}}""")).SkipLast(1)
            .Select(e => JsonDocument.Parse(e).RootElement).ToList();
        Assert.Equal(chat, string.Concat(events.Where(e => e.GetProperty("choices").GetArrayLength() > 0)
            .Select(e => e.GetProperty("choices")[0].GetProperty("delta"))
            .Select(d => d.TryGetProperty("content", out var c) ? c.GetString() : "")));
        Assert.Equal(0, events[^1].GetProperty("choices").GetArrayLength());
        Assert.True(events[^1].GetProperty("usage").GetProperty("total_tokens").GetInt32() > 0);
    }

    /// <summary>
    /// vLLM's two extensions that benchmarks use: ignore_eos generates max_tokens past the end-of-text token (the
    /// control: without it the same request stops there), and stream_options.continuous_usage_stats puts the usage so
    /// far in every chunk, counting up to the final usage.
    /// </summary>
    [Fact]
    public async Task Ignore_eos_runs_past_the_end_of_text_and_every_chunk_can_carry_the_usage_so_far()
    {
        using var model = ByteModel();
        const string prompt = "Once upon a time";
        int first;
        using (var decoder = new ModelTokenDecoder(model))
            first = Generator.Generate(decoder, ByteTokenizer.Instance.Encode(prompt),
                SamplingOptions.Greedy with { MaxTokens = 1 }).Single().TokenId;
        var text = Solo(model, prompt, 10);
        await using var server = await RetNetServer.StartAsync(model, new EndsAt(first),
            new ServerOptions { ModelId = "micro" });
        using var http = Client(server);
        var request = $$"""{"prompt":"{{prompt}}","max_tokens":10,"temperature":0""";

        var (status, body) = await Post(http, "/v1/completions", request + "}");
        Assert.Equal(HttpStatusCode.OK, status);
        Assert.Equal("stop", body.GetProperty("choices")[0].GetProperty("finish_reason").GetString());
        Assert.Equal(0, body.GetProperty("usage").GetProperty("completion_tokens").GetInt32());

        (status, body) = await Post(http, "/v1/completions", request + ""","ignore_eos":true}""");
        Assert.Equal(HttpStatusCode.OK, status);
        Assert.Equal("length", body.GetProperty("choices")[0].GetProperty("finish_reason").GetString());
        Assert.Equal(text, body.GetProperty("choices")[0].GetProperty("text").GetString());

        var chunks = (await Events(http, "/v1/completions", request +
                ""","ignore_eos":true,"stream":true,"stream_options":{"continuous_usage_stats":true}}"""))
            .SkipLast(1).Select(e => JsonDocument.Parse(e).RootElement).ToList();
        var counts = chunks.Select(c => c.GetProperty("usage").GetProperty("completion_tokens").GetInt32()).ToList();
        Assert.All(chunks, c => Assert.Equal(prompt.Length, c.GetProperty("usage").GetProperty("prompt_tokens").GetInt32()));
        Assert.Equal(counts.Order(), counts);
        Assert.True(counts[0] >= 1);
        Assert.Equal(10, counts[^1]);
        Assert.Equal(text, string.Concat(chunks.Select(c => c.GetProperty("choices")[0].GetProperty("text").GetString())));

        // Without the option only the last chunk has the usage.
        chunks = (await Events(http, "/v1/completions", request + ""","ignore_eos":true,"stream":true}"""))
            .SkipLast(1).Select(e => JsonDocument.Parse(e).RootElement).ToList();
        Assert.All(chunks.SkipLast(1), c => Assert.False(c.TryGetProperty("usage", out _)));
        Assert.Equal(10, chunks[^1].GetProperty("usage").GetProperty("completion_tokens").GetInt32());
    }

    /// <summary>The byte tokenizer with <paramref name="end"/> as its end-of-text token.</summary>
    private sealed class EndsAt(int end) : ITextTokenizer
    {
        public string Name => "byte-with-end";

        public int VocabularySize => ByteTokenizer.Instance.VocabularySize;

        public int? EndOfText => end;

        public IReadOnlyList<int> Encode(string text) => ByteTokenizer.Instance.Encode(text);

        public string Decode(IReadOnlyList<int> ids) => ByteTokenizer.Instance.Decode(ids);

        public ReadOnlyMemory<byte> TokenBytes(int id) => ByteTokenizer.Instance.TokenBytes(id);
    }

    private static readonly (string Path, string Json, int Status, string? Param)[] BadRequests =
    [
        ("/v1/completions", "{\"prompt\": \"a\",", 400, null),
        ("/v1/completions", "[1, 2]", 400, null),
        ("/v1/completions", "{\"max_tokens\": 4}", 400, "prompt"),
        ("/v1/completions", "{\"prompt\": 7}", 400, "prompt"),
        ("/v1/completions", "{\"prompt\": \"a\", \"max_tokens\": -1}", 400, "max_tokens"),
        ("/v1/completions", "{\"prompt\": \"a\", \"max_tokens\": 0}", 400, "max_tokens"),
        ("/v1/completions", "{\"prompt\": \"a\", \"max_tokens\": \"many\"}", 400, "max_tokens"),
        ("/v1/completions", "{\"prompt\": \"a\", \"temperature\": -0.5}", 400, "temperature"),
        ("/v1/completions", "{\"prompt\": \"a\", \"top_p\": 0}", 400, "top_p"),
        ("/v1/completions", "{\"prompt\": \"a\", \"top_p\": 1.5}", 400, "top_p"),
        ("/v1/completions", "{\"prompt\": \"a\", \"stop\": 3}", 400, "stop"),
        ("/v1/completions", "{\"prompt\": \"a\", \"model\": \"gpt-4\"}", 404, "model"),
        ("/v1/completions", "{\"prompt\": \"a\", \"ignore_eos\": 1}", 400, "ignore_eos"),
        ("/v1/completions", "{\"prompt\": \"a\", \"stream_options\": true}", 400, "stream_options"),
        ("/v1/completions", "{\"prompt\": \"a\", \"stream_options\": {\"continuous_usage_stats\": \"yes\"}}", 400,
            "stream_options.continuous_usage_stats"),
        ("/v1/completions", "{\"prompt\": \"" + new string('x', 80) + "\"}", 400, "prompt"),
        ("/v1/chat/completions", "{\"model\": \"micro\"}", 400, "messages"),
        ("/v1/chat/completions", "{\"messages\": []}", 400, "messages"),
        ("/v1/chat/completions", "{\"messages\": [{\"role\": \"wizard\", \"content\": \"a\"}]}", 400, "messages[0].role"),
        ("/v1/chat/completions", "{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}], \"max_completion_tokens\": -1}", 400, "max_completion_tokens"),
        ("/v1/completions", "{\"prompt\": \"" + new string('y', 5000) + "\"}", 413, null),
    ];

    [Fact]
    public async Task Every_bad_request_gets_its_status_and_an_OpenAI_error_and_the_server_keeps_serving()
    {
        using var model = ByteModel();
        await using var server = await Start(model, new ServerOptions
        {
            ModelId = "micro", MaxBodyBytes = 4096, Generation = new BatchedGeneratorOptions { MaxContext = 64 },
        });
        using var http = Client(server);
        foreach (var (path, json, expected, param) in BadRequests)
        {
            var (status, body) = await Post(http, path, json);
            Assert.True(expected == (int)status, $"{json[..Math.Min(60, json.Length)]}: {(int)status}, expected {expected}");
            var error = body.GetProperty("error");
            Assert.False(string.IsNullOrEmpty(error.GetProperty("message").GetString()));
            Assert.Equal(JsonValueKind.String, error.GetProperty("type").ValueKind);
            Assert.Equal(param, error.GetProperty("param").GetString());
            Assert.Equal(HttpStatusCode.OK, (await http.GetAsync("/health")).StatusCode);
        }
        var metrics = await http.GetStringAsync("/metrics");
        Assert.Contains("retnet_requests_total{endpoint=\"/v1/completions\",status=\"413\"} 1", metrics);
        Assert.Contains("retnet_requests_total{endpoint=\"/v1/completions\",status=\"404\"} 1", metrics);
    }

    [Fact]
    public async Task A_full_queue_answers_429_and_a_client_that_disconnects_frees_its_slot()
    {
        using var model = ByteModel();
        await using var server = await Start(model, new ServerOptions
        {
            ModelId = "micro",
            Generation = new BatchedGeneratorOptions { MaxBatch = 1, MaxQueue = 1, MaxContext = 100_000 },
        });
        using var http = Client(server);
        using var endless = new HttpRequestMessage(HttpMethod.Post, "/v1/completions")
        {
            Content = new StringContent("""{"prompt":"a","max_tokens":90000,"stream":true}""", Encoding.UTF8,
                "application/json"),
        };
        var streaming = await http.SendAsync(endless, HttpCompletionOption.ResponseHeadersRead);
        var reader = new StreamReader(await streaming.Content.ReadAsStreamAsync());
        Assert.StartsWith("data: ", await reader.ReadLineAsync().WaitAsync(Patience));
        Assert.Equal(1, server.Generator.ActiveSequences);

        var queued = Post(http, "/v1/completions", """{"prompt":"b","max_tokens":3}""");
        for (var i = 0; i < 500 && server.Generator.QueuedRequests == 0; i++)
            await Task.Delay(10);
        Assert.Equal(1, server.Generator.QueuedRequests);
        using (var refused = await http.PostAsync("/v1/completions",
                   new StringContent("""{"prompt":"c"}""", Encoding.UTF8, "application/json")))
        {
            Assert.Equal(HttpStatusCode.TooManyRequests, refused.StatusCode);
            Assert.NotNull(refused.Headers.RetryAfter);
            var error = JsonDocument.Parse(await refused.Content.ReadAsStringAsync()).RootElement.GetProperty("error");
            Assert.Equal("rate_limit_exceeded", error.GetProperty("code").GetString());
        }

        // The client goes away: its sequence is cancelled, and the queued request gets the slot.
        reader.Dispose();
        streaming.Dispose();
        var (status, body) = await queued.WaitAsync(Patience);
        Assert.Equal(HttpStatusCode.OK, status);
        Assert.Equal(3, body.GetProperty("usage").GetProperty("completion_tokens").GetInt32());
        for (var i = 0; i < 500 && server.Generator.ActiveSequences > 0; i++)
            await Task.Delay(10);
        Assert.Contains("retnet_active_sequences 0\n", await http.GetStringAsync("/metrics"));
        Assert.Contains("retnet_queue_depth 0\n", await http.GetStringAsync("/metrics"));
    }

    [Fact]
    public async Task Concurrent_requests_each_get_their_solo_greedy_output()
    {
        using var model = ByteModel();
        var prompts = Enumerable.Range(0, 6).Select(i => $"Request {i}: {new string((char)('a' + i), i)}").ToArray();
        var expected = prompts.Select(p => Solo(model, p, 10)).ToArray();
        await using var server = await Start(model, new ServerOptions
        {
            ModelId = "micro", Generation = new BatchedGeneratorOptions { MaxBatch = 4 },
        });
        using var http = Client(server);
        var answers = await Task.WhenAll(prompts.Select(p => Post(http, "/v1/completions",
            JsonSerializer.Serialize(new { prompt = p, max_tokens = 10, temperature = 0 })))).WaitAsync(Patience);
        for (var i = 0; i < prompts.Length; i++)
            Assert.Equal(expected[i], answers[i].Body.GetProperty("choices")[0].GetProperty("text").GetString());
        Assert.Contains("retnet_step_batch_size_count", await http.GetStringAsync("/metrics"));
    }

    /// <summary>
    /// The acceptance case: 48 mixed requests (prompts of different lengths, different lengths to generate,
    /// greedy and seeded sampling) sent 16 at a time to a server that batches up to 16 sequences, for both
    /// architectures: each returns exactly what it returns alone. The negative control: the seeded requests' solo
    /// outputs under another seed are not all the same, so equal outputs are not an accident of the model.
    /// </summary>
    [Theory]
    [InlineData("retnet")]
    [InlineData("transformer")]
    public async Task Forty_eight_mixed_requests_at_concurrency_16_each_return_their_solo_output(string architecture)
    {
        using var model = architecture == "retnet"
            ? ByteModel()
            : LanguageModel.Create(device,
                new TransformerConfig { EmbedDim = 32, Heads = 2, FfnEmbedDim = 40, Layers = 2, VocabSize = 256 }, seed: 4);
        var requests = Enumerable.Range(0, 48).Select(i => (
            Prompt: $"#{i} " + new string((char)('a' + i % 26), i % 11),
            MaxTokens: 3 + i % 9,
            Sampling: i % 2 == 0
                ? SamplingOptions.Greedy
                : new SamplingOptions { Temperature = 0.9, TopK = 20, Seed = 1000 + i })).ToArray();
        string SoloText(int i, int seedShift = 0)
        {
            var (prompt, maxTokens, sampling) = requests[i];
            var decoder = new ModelTokenDecoder(model);
            try
            {
                var options = sampling with { MaxTokens = maxTokens, Seed = sampling.Seed + seedShift };
                return string.Concat(TextGenerator.Generate(decoder, ByteTokenizer.Instance, prompt, options));
            }
            finally
            {
                decoder.Dispose();
            }
        }
        var expected = Enumerable.Range(0, requests.Length).Select(i => SoloText(i)).ToArray();
        var otherSeed = Enumerable.Range(0, requests.Length).Where(i => i % 2 == 1).Select(i => SoloText(i, 1)).ToArray();
        Assert.NotEqual(Enumerable.Range(0, requests.Length).Where(i => i % 2 == 1).Select(i => expected[i]), otherSeed);

        await using var server = await Start(model, new ServerOptions
        {
            ModelId = "micro", Generation = new BatchedGeneratorOptions { MaxBatch = 16, MaxQueue = 64 },
        });
        using var http = Client(server);
        using var gate = new SemaphoreSlim(16);
        async Task<string?> Send(int i)
        {
            await gate.WaitAsync();
            try
            {
                var (prompt, maxTokens, sampling) = requests[i];
                var body = sampling.IsGreedy
                    ? JsonSerializer.Serialize(new { prompt, max_tokens = maxTokens, temperature = 0 })
                    : JsonSerializer.Serialize(new
                    {
                        prompt, max_tokens = maxTokens, temperature = sampling.Temperature, top_k = sampling.TopK,
                        seed = sampling.Seed,
                    });
                var (status, answer) = await Post(http, "/v1/completions", body);
                Assert.Equal(HttpStatusCode.OK, status);
                return answer.GetProperty("choices")[0].GetProperty("text").GetString();
            }
            finally
            {
                gate.Release();
            }
        }
        var answers = await Task.WhenAll(Enumerable.Range(0, requests.Length).Select(Send)).WaitAsync(Patience);
        for (var i = 0; i < requests.Length; i++)
            Assert.True(expected[i] == answers[i], $"request {i} ({architecture}): '{answers[i]}', alone '{expected[i]}'");
    }

    [Fact]
    public async Task The_OpenAI_SDK_gets_chat_completions_streamed_and_not()
    {
        using var model = ByteModel();
        var expected = Solo(model, PlainChatFormat.Render([("system", "Be brief."), ("user", "Say hello.")]), 10,
            PlainChatFormat.UserTurn);
        await using var server = await Start(model);
        var client = new ChatClient("micro", new ApiKeyCredential("any key"),
            new OpenAIClientOptions { Endpoint = new Uri(server.Address, "v1") });
        ChatMessage[] messages = [new SystemChatMessage("Be brief."), new UserChatMessage("Say hello.")];
        var options = new ChatCompletionOptions { Temperature = 0, MaxOutputTokenCount = 10 };

        using var timeout = new CancellationTokenSource(Patience);
        ChatCompletion completion = await client.CompleteChatAsync(messages, options, timeout.Token);
        Assert.Equal(expected, completion.Content.Count == 0 ? "" : completion.Content[0].Text);
        Assert.Equal("micro", completion.Model);
        Assert.True(completion.Usage.InputTokenCount > 0);

        var streamed = new StringBuilder();
        ChatTokenUsage? usage = null;
        ChatFinishReason? finish = null;
        await foreach (var update in client.CompleteChatStreamingAsync(messages, options, timeout.Token))
        {
            foreach (var part in update.ContentUpdate)
                streamed.Append(part.Text);
            usage ??= update.Usage;
            finish ??= update.FinishReason;
        }
        Assert.Equal(expected, streamed.ToString());
        Assert.Equal(completion.FinishReason, finish);
        Assert.Equal(completion.Usage.OutputTokenCount, usage?.OutputTokenCount);
    }
}

/// <summary>A GET whose body is JSON.</summary>
internal static class HttpJson
{
    public static async Task<JsonElement> GetFromJsonDocument(this HttpClient http, string path) =>
        JsonDocument.Parse(await http.GetStringAsync(path)).RootElement.Clone();
}
