using System.Text.Json;
using RetNet.Ilgpu.Generation;
using RetNet.Ilgpu.Generation.ChatTemplates;

namespace RetNet.Ilgpu.Serving;

/// <summary>A request the server refuses, with the HTTP status and OpenAI's error fields it is answered with.</summary>
/// <param name="status">The HTTP status.</param>
/// <param name="message">What is wrong, for the user.</param>
/// <param name="param">The request field at fault, or null.</param>
/// <param name="code">OpenAI's error code, or null.</param>
public sealed class RequestException(int status, string message, string? param = null, string? code = null)
    : Exception(message)
{
    /// <summary>The HTTP status.</summary>
    public int Status { get; } = status;

    /// <summary>The request field at fault, or null.</summary>
    public string? Param { get; } = param;

    /// <summary>OpenAI's error code, or null.</summary>
    public string? Code { get; } = code;

    /// <summary>OpenAI's error type for the status.</summary>
    public string Type => Status switch
    {
        404 => "not_found_error",
        413 => "invalid_request_error",
        429 => "rate_limit_error",
        >= 500 => "server_error",
        _ => "invalid_request_error",
    };
}

/// <summary>A parsed completion or chat request: the prompt text, how to sample, when to stop, how to answer.</summary>
/// <param name="Prompt">The text to continue (for chat: the rendered conversation).</param>
/// <param name="Sampling">The sampling options, validated.</param>
/// <param name="Stop">Stop sequences.</param>
/// <param name="Stream">Answer as server-sent events.</param>
/// <param name="IncludeUsage">Streaming: send the usage in a chunk of its own after the last choice
/// (stream_options.include_usage) rather than in the last choice's chunk.</param>
/// <param name="ContinuousUsage">Streaming: every chunk carries the usage so far (stream_options.continuous_usage_stats,
/// vLLM's extension), so a client can tell how many tokens each chunk holds.</param>
/// <param name="Chat">For chat: the prompt the chat format made (its ids, stop sequences and stop tokens).</param>
public sealed record OpenAiRequest(string Prompt, SamplingOptions Sampling, IReadOnlyList<string> Stop, bool Stream,
    bool IncludeUsage, bool ContinuousUsage, ChatPrompt? Chat = null);

/// <summary>Reads OpenAI's request bodies into <see cref="OpenAiRequest"/>s, once, at the edge: every field checked for
/// its type and range, each refusal a <see cref="RequestException"/> naming the field.</summary>
public static class OpenAiRequests
{
    /// <summary>The most stop sequences a request may give (OpenAI's limit).</summary>
    public const int MaxStopSequences = 4;

    /// <summary>A <c>/v1/completions</c> body (prompt, max_tokens default 16, and the fields of both endpoints).</summary>
    public static OpenAiRequest Completion(JsonElement body, string modelId, SamplingOptions defaults)
    {
        RequireObject(body);
        CheckModel(body, modelId);
        var prompt = body.TryGetProperty("prompt", out var p)
            ? p.ValueKind switch
            {
                JsonValueKind.String => p.GetString()!,
                JsonValueKind.Array when p.GetArrayLength() == 1 && p[0].ValueKind == JsonValueKind.String =>
                    p[0].GetString()!,
                _ => throw new RequestException(400, "'prompt' must be a string (or an array of one string).",
                    "prompt"),
            }
            : throw Missing("prompt");
        var maxTokens = Int(body, "max_tokens") ?? 16;
        return Common(body, prompt, defaults, maxTokens);
    }

    /// <summary>A <c>/v1/chat/completions</c> body (messages, max_completion_tokens or max_tokens, temperature, top_p,
    /// top_k, seed, stop, stream, stream_options.include_usage), the conversation rendered by
    /// <paramref name="format"/> (default <see cref="PlainChatFormat"/>); a chat template that refuses the
    /// conversation is a 400 naming the template's message.</summary>
    public static OpenAiRequest Chat(JsonElement body, string modelId, SamplingOptions defaults,
        IChatFormat? format = null)
    {
        RequireObject(body);
        CheckModel(body, modelId);
        if (!body.TryGetProperty("messages", out var messages))
            throw Missing("messages");
        if (messages.ValueKind != JsonValueKind.Array || messages.GetArrayLength() == 0)
            throw new RequestException(400, "'messages' must be a non-empty array of messages.", "messages");
        var turns = new List<(string Role, string Text)>();
        var index = 0;
        foreach (var message in messages.EnumerateArray())
        {
            var at = $"messages[{index++}]";
            if (message.ValueKind != JsonValueKind.Object)
                throw new RequestException(400, $"'{at}' must be an object with a role and a content.", at);
            var role = message.TryGetProperty("role", out var r) && r.ValueKind == JsonValueKind.String
                ? r.GetString()!
                : throw new RequestException(400, $"'{at}.role' must be a string.", $"{at}.role");
            if (role is not ("system" or "developer" or "user" or "assistant" or "tool"))
                throw new RequestException(400,
                    $"'{at}.role' is '{role}'; expected system, developer, user, assistant or tool.", $"{at}.role");
            turns.Add((role == "developer" ? "system" : role, Content(message, at)));
        }
        var maxTokens = Int(body, "max_completion_tokens") ?? Int(body, "max_tokens") ?? defaults.MaxTokens;
        ChatPrompt prompt;
        try
        {
            prompt = (format ?? PlainChatFormat.Instance).Format(turns);
        }
        catch (ChatTemplateException e)
        {
            throw new RequestException(400, e is ChatTemplateRaisedException
                ? $"The model's chat template refused the conversation: {e.Detail}"
                : $"The model's chat template failed on the conversation: {e.Message}", "messages");
        }
        return Common(body, prompt.Text, defaults, maxTokens) with { Chat = prompt };
    }

    private static string Content(JsonElement message, string at)
    {
        if (!message.TryGetProperty("content", out var content) || content.ValueKind == JsonValueKind.Null)
            return "";
        if (content.ValueKind == JsonValueKind.String)
            return content.GetString()!;
        if (content.ValueKind == JsonValueKind.Array)
            return string.Concat(content.EnumerateArray().Select(part =>
                part.ValueKind == JsonValueKind.Object && part.TryGetProperty("type", out var type) &&
                type.ValueKind == JsonValueKind.String && type.GetString() == "text" &&
                part.TryGetProperty("text", out var text) && text.ValueKind == JsonValueKind.String
                    ? text.GetString()!
                    : throw new RequestException(400, $"'{at}.content' parts must be text parts.", $"{at}.content")));
        throw new RequestException(400, $"'{at}.content' must be a string or an array of text parts.", $"{at}.content");
    }

    /// <summary>The fields both endpoints share: stop, stream, stream_options (include_usage, continuous_usage_stats),
    /// ignore_eos (vLLM's extension: generate max_tokens whatever the model samples, for benchmarks), temperature,
    /// top_p, top_k, seed.</summary>
    private static OpenAiRequest Common(JsonElement body, string prompt, SamplingOptions defaults, int maxTokens)
    {
        var stop = body.TryGetProperty("stop", out var s)
            ? s.ValueKind switch
            {
                JsonValueKind.Null => [],
                JsonValueKind.String => [s.GetString()!],
                JsonValueKind.Array when s.EnumerateArray().All(e => e.ValueKind == JsonValueKind.String) =>
                    s.EnumerateArray().Select(e => e.GetString()!).ToArray(),
                _ => throw new RequestException(400, "'stop' must be a string or an array of strings.", "stop"),
            }
            : Array.Empty<string>();
        if (stop.Length > MaxStopSequences || stop.Any(string.IsNullOrEmpty))
            throw new RequestException(400,
                $"'stop' must hold at most {MaxStopSequences} non-empty strings.", "stop");
        var stream = body.TryGetProperty("stream", out var st) && st.ValueKind switch
        {
            JsonValueKind.True => true,
            JsonValueKind.False or JsonValueKind.Null => false,
            _ => throw new RequestException(400, "'stream' must be a boolean.", "stream"),
        };
        var includeUsage = false;
        var continuousUsage = false;
        if (body.TryGetProperty("stream_options", out var options) && options.ValueKind != JsonValueKind.Null)
        {
            if (options.ValueKind != JsonValueKind.Object)
                throw new RequestException(400, "'stream_options' must be an object.", "stream_options");
            includeUsage = Bool(options, "include_usage", "stream_options.include_usage") ?? false;
            continuousUsage = Bool(options, "continuous_usage_stats", "stream_options.continuous_usage_stats") ?? false;
        }
        var ignoreEos = Bool(body, "ignore_eos", "ignore_eos") ?? false;
        SamplingOptions sampling;
        try
        {
            sampling = defaults with { MaxTokens = maxTokens };
            if (ignoreEos)
                sampling = sampling with { StopTokens = new HashSet<int>() };
            if (Number(body, "temperature") is { } temperature)
                sampling = sampling with { Temperature = temperature };
            if (Number(body, "top_p") is { } topP)
                sampling = sampling with { TopP = topP };
            if (Int(body, "top_k") is { } topK)
                sampling = sampling with { TopK = topK };
            if (Int(body, "seed") is { } seed)
                sampling = sampling with { Seed = seed };
        }
        catch (ArgumentException e)
        {
            var param = e.ParamName switch
            {
                nameof(SamplingOptions.MaxTokens) => body.TryGetProperty("max_completion_tokens", out _)
                    ? "max_completion_tokens"
                    : "max_tokens",
                nameof(SamplingOptions.Temperature) => "temperature",
                nameof(SamplingOptions.TopP) => "top_p",
                nameof(SamplingOptions.TopK) => "top_k",
                _ => null,
            };
            throw new RequestException(400, e.Message.Split(" (Parameter")[0].Split('\n')[0], param);
        }
        return new OpenAiRequest(prompt, sampling, stop, stream, includeUsage, continuousUsage);
    }

    private static void RequireObject(JsonElement body)
    {
        if (body.ValueKind != JsonValueKind.Object)
            throw new RequestException(400, "The request body must be a JSON object.");
    }

    private static void CheckModel(JsonElement body, string modelId)
    {
        if (!body.TryGetProperty("model", out var model) || model.ValueKind == JsonValueKind.Null)
            return;
        if (model.ValueKind != JsonValueKind.String)
            throw new RequestException(400, "'model' must be a string.", "model");
        if (model.GetString() != modelId)
            throw new RequestException(404, $"The model '{model.GetString()}' does not exist; this server serves " +
                                            $"'{modelId}'.", "model", "model_not_found");
    }

    private static int? Int(JsonElement body, string name)
    {
        if (!body.TryGetProperty(name, out var value) || value.ValueKind == JsonValueKind.Null)
            return null;
        return value.ValueKind == JsonValueKind.Number && value.TryGetInt32(out var i)
            ? i
            : throw new RequestException(400, $"'{name}' must be an integer.", name);
    }

    private static bool? Bool(JsonElement body, string name, string param)
    {
        if (!body.TryGetProperty(name, out var value) || value.ValueKind == JsonValueKind.Null)
            return null;
        return value.ValueKind switch
        {
            JsonValueKind.True => true,
            JsonValueKind.False => false,
            _ => throw new RequestException(400, $"'{param}' must be a boolean.", param),
        };
    }

    private static double? Number(JsonElement body, string name)
    {
        if (!body.TryGetProperty(name, out var value) || value.ValueKind == JsonValueKind.Null)
            return null;
        return value.ValueKind == JsonValueKind.Number
            ? value.GetDouble()
            : throw new RequestException(400, $"'{name}' must be a number.", name);
    }

    private static RequestException Missing(string name) =>
        new(400, $"The request has no '{name}'; it is required.", name);
}
