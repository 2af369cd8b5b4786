using System.Buffers;
using System.IO.Pipelines;
using System.Text.Json;

namespace RetNet.Ilgpu.Serving;

/// <summary>
/// Writes the server-sent events of one streamed completion straight into the response's pipe: each event is
/// <c>data: {chunk}</c> and a blank line, the chunk written field by field with one reused <see cref="Utf8JsonWriter"/>
/// (the request's id, object name and model encoded once). A stream sends an event per piece of text, so this is the
/// server's per-token work: no JSON tree and no string per event.
/// </summary>
internal sealed class StreamChunkWriter : IDisposable
{
    private static readonly JsonWriterOptions Options = new() { SkipValidation = true };

    private readonly JsonEncodedText id;
    private readonly JsonEncodedText objectName;
    private readonly JsonEncodedText model;
    private readonly long created;
    private readonly bool chat;
    private readonly Utf8JsonWriter json;

    public StreamChunkWriter(string id, string objectName, string model, long created, bool chat)
    {
        this.id = JsonEncodedText.Encode(id);
        this.objectName = JsonEncodedText.Encode(objectName);
        this.model = JsonEncodedText.Encode(model);
        this.created = created;
        this.chat = chat;
        json = new Utf8JsonWriter(Stream.Null, Options);
    }

    /// <summary>
    /// One event: a choice with <paramref name="text"/> (chat: a delta whose role is "assistant" in the first event)
    /// and <paramref name="finishReason"/>, or no choice at all when <paramref name="text"/> is null (the usage-only
    /// event); with the usage when <paramref name="usage"/> is given.
    /// </summary>
    public void Write(PipeWriter body, string? text, bool first, string? finishReason,
        (int Prompt, int Completion)? usage)
    {
        body.Write("data: "u8);
        json.Reset(body);
        json.WriteStartObject();
        json.WriteString("id"u8, id);
        json.WriteString("object"u8, objectName);
        json.WriteNumber("created"u8, created);
        json.WriteString("model"u8, model);
        json.WriteStartArray("choices"u8);
        if (text is not null)
        {
            json.WriteStartObject();
            json.WriteNumber("index"u8, 0);
            if (chat)
            {
                json.WriteStartObject("delta"u8);
                if (first)
                    json.WriteString("role"u8, "assistant"u8);
                if (text.Length > 0 || finishReason is null)
                    json.WriteString("content"u8, text);
                json.WriteEndObject();
            }
            else
            {
                json.WriteString("text"u8, text);
                json.WriteNull("logprobs"u8);
            }
            if (finishReason is null)
                json.WriteNull("finish_reason"u8);
            else
                json.WriteString("finish_reason"u8, finishReason);
            json.WriteEndObject();
        }
        json.WriteEndArray();
        if (usage is var (prompt, completion))
        {
            json.WriteStartObject("usage"u8);
            json.WriteNumber("prompt_tokens"u8, prompt);
            json.WriteNumber("completion_tokens"u8, completion);
            json.WriteNumber("total_tokens"u8, prompt + completion);
            json.WriteEndObject();
        }
        json.WriteEndObject();
        json.Flush();
        body.Write("\n\n"u8);
    }

    public void Dispose() => json.Dispose();
}
