using System.Buffers;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using RetNet.Ilgpu.Generation;
using RetNet.Ilgpu.Model;
using RetNet.Ilgpu.Tokenizers;

namespace RetNet.Ilgpu.Serving;

/// <summary>How <see cref="RetNetServer"/> listens and what it allows, validated when set.</summary>
public sealed record ServerOptions
{
    private readonly int port;
    private readonly long maxBodyBytes = 1 << 20;
    private readonly int defaultMaxTokens = 256;

    /// <summary>The address to listen on (default 127.0.0.1, loopback only).</summary>
    public string Host { get; init; } = "127.0.0.1";

    /// <summary>The port, 0 (default) for a free one the server picks (<see cref="RetNetServer.Address"/>).</summary>
    public int Port
    {
        get => port;
        init => port = value is >= 0 and <= 65535 ? value
            : throw new ArgumentOutOfRangeException(nameof(Port), value, $"Port must be in [0, 65535]; got {value}.");
    }

    /// <summary>The model's name in /v1/models and responses; requests naming another model get 404.</summary>
    public string ModelId { get; init; } = "retnet";

    /// <summary>The largest request body in bytes (default 1 MiB); larger ones are answered 413.</summary>
    public long MaxBodyBytes
    {
        get => maxBodyBytes;
        init => maxBodyBytes = value >= 1 ? value
            : throw new ArgumentOutOfRangeException(nameof(MaxBodyBytes), value, $"MaxBodyBytes must be ≥ 1; got {value}.");
    }

    /// <summary>Chat requests' max tokens when they name none (default 256; completions default to OpenAI's 16).</summary>
    public int DefaultMaxTokens
    {
        get => defaultMaxTokens;
        init => defaultMaxTokens = value >= 1 ? value
            : throw new ArgumentOutOfRangeException(nameof(DefaultMaxTokens), value,
                $"DefaultMaxTokens must be ≥ 1; got {value}.");
    }

    /// <summary>How chat requests become prompts (default <see cref="PlainChatFormat"/>; a model folder's chat
    /// template: <see cref="ChatFormats.FromModelFolder"/>).</summary>
    public IChatFormat? ChatFormat { get; init; }

    /// <summary>The generator's batch, queue and context limits.</summary>
    public BatchedGeneratorOptions Generation { get; init; } = new();

    /// <summary>How long a shutdown lets requests in flight finish before cancelling them (default 5 s).</summary>
    public TimeSpan ShutdownGrace { get; init; } = TimeSpan.FromSeconds(5);
}

/// <summary>
/// <c>retnet serve</c>: an OpenAI-compatible HTTP server (ASP.NET Core minimal APIs on Kestrel) over one model and
/// one <see cref="BatchedGenerator"/>. Endpoints: <c>GET /health</c>, <c>GET /v1/models</c>, <c>GET /metrics</c>
/// (Prometheus), <c>POST /v1/completions</c>, <c>POST /v1/chat/completions</c> (streaming as server-sent events ending
/// with <c>data: [DONE]</c>). Errors are OpenAI's JSON error bodies: 400 for malformed or out-of-range input and prompts
/// past the context, 404 for another model, 413 for a body over <see cref="ServerOptions.MaxBodyBytes"/>, 429 (with
/// Retry-After) when the generator's queue is full. A client that disconnects cancels its sequence. Start it with
/// <see cref="StartAsync"/>; stopping finishes or cancels what is in flight.
/// </summary>
public sealed class RetNetServer : IAsyncDisposable
{
    private static readonly JsonSerializerOptions Compact = new() { WriteIndented = false };

    private static readonly HashSet<string> Endpoints =
        ["/health", "/v1/models", "/metrics", "/v1/completions", "/v1/chat/completions"];

    private readonly WebApplication app;
    private readonly BatchedGenerator generator;
    private readonly TextCompletions completions;
    private readonly ServerOptions options;
    private readonly SamplingOptions defaults;
    private bool disposed;

    private RetNetServer(WebApplication app, BatchedGenerator generator, ITextTokenizer tokenizer, ServerOptions options)
    {
        this.app = app;
        this.generator = generator;
        this.options = options;
        completions = new TextCompletions(generator, tokenizer);
        defaults = new SamplingOptions
        {
            MaxTokens = options.DefaultMaxTokens,
            StopTokens = tokenizer.EndOfText is { } end ? new HashSet<int> { end } : new HashSet<int>(),
        };
        generator.Stepped += Metrics.Step;
    }

    /// <summary>The address it listens on, e.g. http://127.0.0.1:5123 (the chosen port when asked for 0).</summary>
    public Uri Address { get; private set; } = null!;

    /// <summary>The counters behind /metrics.</summary>
    public ServerMetrics Metrics { get; } = new();

    /// <summary>The generator requests run on.</summary>
    public BatchedGenerator Generator => generator;

    /// <summary>Completes when the server has stopped (Ctrl+C, SIGTERM, or <see cref="StopAsync"/>).</summary>
    public Task WaitForShutdownAsync(CancellationToken cancellationToken = default) =>
        app.WaitForShutdownAsync(cancellationToken);

    /// <summary>
    /// Starts serving <paramref name="model"/> with <paramref name="tokenizer"/>, listening once this returns. The
    /// model is then used only by the server's generator (disposed with the server when <paramref name="ownsModel"/>).
    /// With <paramref name="handleSignals"/> Ctrl+C and SIGTERM stop it (the command line); tests leave them alone.
    /// </summary>
    public static async Task<RetNetServer> StartAsync(ILanguageModel model, ITextTokenizer tokenizer,
        ServerOptions? options = null, bool ownsModel = false, bool handleSignals = false,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(tokenizer);
        options ??= new ServerOptions();
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.Services.Configure<HostOptions>(h => h.ShutdownTimeout = options.ShutdownGrace + TimeSpan.FromSeconds(5));
        if (!handleSignals)
            builder.Services.AddSingleton<IHostLifetime, ProcessLifetime>();
        builder.WebHost.UseKestrel(k =>
        {
            k.Limits.MaxRequestBodySize = options.MaxBodyBytes;
            k.AddServerHeader = false;
        });
        builder.WebHost.UseUrls($"http://{options.Host}:{options.Port}");
        var app = builder.Build();
        var generator = new BatchedGenerator(model, options.Generation, ownsModel);
        RetNetServer server;
        try
        {
            server = new RetNetServer(app, generator, tokenizer, options);
        }
        catch
        {
            await generator.DisposeAsync().ConfigureAwait(false);
            throw;
        }
        server.Map();
        var lifetime = app.Services.GetRequiredService<IHostApplicationLifetime>();
        lifetime.ApplicationStopping.Register(server.DrainGenerator);
        try
        {
            await app.StartAsync(cancellationToken).ConfigureAwait(false);
        }
        catch
        {
            await server.DisposeAsync().ConfigureAwait(false);
            throw;
        }
        var address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses
            .First();
        server.Address = new Uri(address);
        return server;
    }

    /// <summary>Stops accepting requests, lets those in flight finish for <see cref="ServerOptions.ShutdownGrace"/>,
    /// cancels the rest and stops listening.</summary>
    public Task StopAsync(CancellationToken cancellationToken = default) => app.StopAsync(cancellationToken);

    private void DrainGenerator()
    {
        using var grace = new CancellationTokenSource(options.ShutdownGrace);
        generator.StopAsync(grace.Token).GetAwaiter().GetResult();
    }

    private void Map()
    {
        app.Use(async (context, next) =>
        {
            await next(context).ConfigureAwait(false);
            // Only the server's own paths become labels: a client inventing paths cannot grow the metrics.
            var path = context.Request.Path.Value ?? "";
            Metrics.Request(Endpoints.Contains(path) ? path : "other", context.Response.StatusCode);
        });
        app.MapGet("/health", () => Results.Json(new { status = "ok" }));
        app.MapGet("/v1/models", () => Results.Json(new
        {
            @object = "list",
            data = new[] { new { id = options.ModelId, @object = "model", created = 0, owned_by = "retnet-ilgpu" } },
        }));
        app.MapGet("/metrics", () => Results.Text(Metrics.Render(generator), "text/plain; version=0.0.4"));
        app.MapPost("/v1/completions", context => Handle(context, chat: false));
        app.MapPost("/v1/chat/completions", context => Handle(context, chat: true));
    }

    private async Task Handle(HttpContext context, bool chat)
    {
        TextCompletion completion;
        OpenAiRequest request;
        try
        {
            JsonDocument body;
            try
            {
                body = await JsonDocument.ParseAsync(context.Request.Body, default, context.RequestAborted)
                    .ConfigureAwait(false);
            }
            catch (JsonException e)
            {
                throw new RequestException(400, $"The request body is not valid JSON: {e.Message}");
            }
            catch (BadHttpRequestException e) when (e.StatusCode == StatusCodes.Status413PayloadTooLarge)
            {
                throw new RequestException(413,
                    $"The request body is larger than the server's limit of {options.MaxBodyBytes} bytes.");
            }
            using (body)
                request = chat
                    ? OpenAiRequests.Chat(body.RootElement, options.ModelId, defaults, options.ChatFormat)
                    : OpenAiRequests.Completion(body.RootElement, options.ModelId, defaults);
            try
            {
                completion = request.Chat is { } chatPrompt
                    ? completions.Start(chatPrompt, request.Sampling, request.Stop, context.RequestAborted)
                    : completions.Start(request.Prompt, request.Sampling, request.Stop, context.RequestAborted);
            }
            catch (GenerationQueueFullException e)
            {
                context.Response.Headers.RetryAfter = "1";
                throw new RequestException(429, e.Message, null, "rate_limit_exceeded");
            }
            catch (ObjectDisposedException)
            {
                throw new RequestException(503, "The server is shutting down.");
            }
            catch (ArgumentException e)
            {
                throw new RequestException(400, e.Message.Split(" (Parameter")[0],
                    chat ? "messages" : "prompt", "context_length_exceeded");
            }
        }
        catch (RequestException e)
        {
            await Error(context, e).ConfigureAwait(false);
            return;
        }

        var id = (chat ? "chatcmpl-" : "cmpl-") + Guid.NewGuid().ToString("N");
        var created = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
        if (!request.Stream)
        {
            TextCompletionResult result;
            try
            {
                result = await completion.CompleteAsync().ConfigureAwait(false);
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                await Error(context, new RequestException(500, $"Generation failed: {e.Message}")).ConfigureAwait(false);
                return;
            }
            if (context.RequestAborted.IsCancellationRequested)
                return;
            Metrics.Tokens(result.PromptTokens, result.CompletionTokens);
            var choice = chat
                ? new JsonObject
                {
                    ["index"] = 0,
                    ["message"] = new JsonObject { ["role"] = "assistant", ["content"] = result.Text },
                    ["finish_reason"] = Reason(result.Reason),
                }
                : new JsonObject
                {
                    ["index"] = 0, ["text"] = result.Text, ["logprobs"] = null, ["finish_reason"] = Reason(result.Reason),
                };
            var response = Envelope(id, chat ? "chat.completion" : "text_completion", created);
            response["choices"] = new JsonArray(choice);
            response["usage"] = Usage(result);
            await Write(context, 200, response).ConfigureAwait(false);
            return;
        }

        context.Response.StatusCode = 200;
        context.Response.ContentType = "text/event-stream";
        context.Response.Headers.CacheControl = "no-cache";
        var objectName = chat ? "chat.completion.chunk" : "text_completion";
        using var events = new StreamChunkWriter(id, objectName, options.ModelId, created, chat);
        var pipe = context.Response.BodyWriter;
        var aborted = context.RequestAborted;
        try
        {
            var first = true;
            await foreach (var piece in completion.ReadTextAsync().ConfigureAwait(false))
            {
                events.Write(pipe, piece, first, null,
                    request.ContinuousUsage ? (completion.PromptTokens, completion.TokensRead) : null);
                first = false;
                await pipe.FlushAsync(aborted).ConfigureAwait(false);
            }
            var result = await completion.Completion.ConfigureAwait(false);
            Metrics.Tokens(result.PromptTokens, result.CompletionTokens);
            var usage = (result.PromptTokens, result.CompletionTokens);
            events.Write(pipe, "", false, Reason(result.Reason),
                !request.IncludeUsage || request.ContinuousUsage ? usage : null);
            if (request.IncludeUsage)
                events.Write(pipe, null, false, null, usage);
            pipe.Write("data: [DONE]\n\n"u8);
            await pipe.FlushAsync(aborted).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (context.RequestAborted.IsCancellationRequested)
        {
            // The client went away: its sequence was cancelled with the request.
        }
    }

    private JsonObject Envelope(string id, string objectName, long created) => new()
    {
        ["id"] = id, ["object"] = objectName, ["created"] = created, ["model"] = options.ModelId,
    };

    private static JsonObject Usage(TextCompletionResult result) => Usage(result.PromptTokens, result.CompletionTokens);

    private static JsonObject Usage(int promptTokens, int completionTokens) => new()
    {
        ["prompt_tokens"] = promptTokens,
        ["completion_tokens"] = completionTokens,
        ["total_tokens"] = promptTokens + completionTokens,
    };

    /// <summary>OpenAI's finish reason: "stop", "length", or "cancelled" for a request the server cancelled.</summary>
    private static string Reason(FinishReason reason) => reason switch
    {
        FinishReason.StopToken or FinishReason.StopSequence => "stop",
        FinishReason.MaxTokens => "length",
        _ => "cancelled",
    };

    private static Task Error(HttpContext context, RequestException e) => Write(context, e.Status, new JsonObject
    {
        ["error"] = new JsonObject
        {
            ["message"] = e.Message, ["type"] = e.Type, ["param"] = e.Param, ["code"] = e.Code,
        },
    });

    private static async Task Write(HttpContext context, int status, JsonObject body)
    {
        context.Response.StatusCode = status;
        context.Response.ContentType = "application/json";
        await context.Response.WriteAsync(body.ToJsonString(Compact), context.RequestAborted).ConfigureAwait(false);
    }

    /// <summary>Stops (if running) and frees the server, its generator, and the model when it owns it.</summary>
    public async ValueTask DisposeAsync()
    {
        if (disposed)
            return;
        disposed = true;
        try
        {
            await app.StopAsync().ConfigureAwait(false);
        }
        finally
        {
            await app.DisposeAsync().ConfigureAwait(false);
            await generator.DisposeAsync().ConfigureAwait(false);
        }
    }

    /// <summary>A host lifetime that leaves the process's signals alone (a server inside another program or a test).</summary>
    private sealed class ProcessLifetime : IHostLifetime
    {
        public Task WaitForStartAsync(CancellationToken cancellationToken) => Task.CompletedTask;

        public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
    }
}
