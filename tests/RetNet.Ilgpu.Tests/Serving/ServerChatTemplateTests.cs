using System.Net;
using System.Text;
using System.Text.Json;
using Microsoft.Extensions.AI;
using RetNet.Ilgpu.Generation;
using RetNet.Ilgpu.Model;
using RetNet.Ilgpu.Serving;
using RetNet.Ilgpu.Tests.Model;
using RetNet.Ilgpu.Tests.Support;
using RetNet.Ilgpu.Tokenizers;

namespace RetNet.Ilgpu.Tests.Serving;

/// <summary>
/// A model folder with a chat template (a micro model with the SentencePiece fixture tokenizer and Llama-2's chat
/// template) served in process: /v1/chat/completions answers with exactly what the model generates greedily from the
/// template's prompt encoded with its special tokens (and not from the plain format's), the IChatClient does the
/// same, and a conversation the template refuses is a 400 naming the template's message while the server keeps
/// serving.
/// </summary>
[Collection(DeviceCollection.Name)]
public sealed class ServerChatTemplateTests(DeviceFixture fixture) : IDisposable
{
    private const string Llama2Template =
        "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}{% for message in loop_messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}{% else %}{% set content = message['content'] %}{% endif %}{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}";

    private readonly string folder = Directory.CreateTempSubdirectory("retnet-chat-template-").FullName;

    public void Dispose() => Directory.Delete(folder, recursive: true);

    private (LanguageModel Model, SentencePieceTokenizer Tokenizer) ModelFolder()
    {
        using (var created = LanguageModel.Create(fixture.Device, ModelTestSupport.Micro() with { VocabSize = 500 }, 9))
            created.Save(folder);
        File.Copy(Path.Combine(AppContext.BaseDirectory, "Fixtures", "SentencePiece", SentencePieceTokenizer.FileName),
            Path.Combine(folder, SentencePieceTokenizer.FileName));
        File.WriteAllText(Path.Combine(folder, "tokenizer_config.json"), JsonSerializer.Serialize(new Dictionary<string, object>
        {
            ["bos_token"] = "<s>",
            ["eos_token"] = new Dictionary<string, object> { ["content"] = "</s>", ["special"] = true },
            ["chat_template"] = Llama2Template,
        }));
        return (LanguageModel.Load(fixture.Device, folder), SentencePieceTokenizer.FromModelFolder(folder));
    }

    /// <summary>What the model generates greedily from <paramref name="ids"/>, as the server streams it.</summary>
    private static string Greedy(ILanguageModel model, ITextTokenizer tokenizer, IReadOnlyList<int> ids, int maxTokens,
        IReadOnlySet<int> stops)
    {
        using var decoder = new ModelTokenDecoder(model);
        var tokens = Generator.Generate(decoder, ids, SamplingOptions.Greedy with { MaxTokens = maxTokens, StopTokens = stops })
            .Select(t => t.TokenId).Where(id => !stops.Contains(id)).ToList();
        var text = new StreamingTextDecoder(tokenizer, startOfText: false);
        return string.Concat(tokens.Select(text.Append)) + text.Flush();
    }

    private static async Task<(HttpStatusCode Status, JsonElement Body)> Post(HttpClient http, string path, string json)
    {
        using var response = await http.PostAsync(path, new StringContent(json, Encoding.UTF8, "application/json"));
        return (response.StatusCode, JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.Clone());
    }

    [Fact]
    public async Task Chat_answers_from_the_templates_prompt_and_a_refused_conversation_is_a_400()
    {
        var (model, tokenizer) = ModelFolder();
        using var _ = model;
        var format = Assert.IsType<TemplateChatFormat>(ChatFormats.FromModelFolder(folder, tokenizer));
        (string, string)[] conversation = [("system", "Be brief."), ("user", "Say hello.")];
        var prompt = format.Format(conversation);
        Assert.Equal("<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nSay hello. [/INST]", prompt.Text);
        Assert.Equal(tokenizer.BeginningOfText, prompt.Ids![0]);
        Assert.Single(prompt.Ids, id => id == tokenizer.BeginningOfText);
        var expected = Greedy(model, tokenizer, prompt.Ids, 12, format.StopTokens);
        var plain = Greedy(model, tokenizer, tokenizer.Encode(PlainChatFormat.Render(conversation)), 12,
            format.StopTokens);

        await using var server = await RetNetServer.StartAsync(model, tokenizer,
            new ServerOptions { ModelId = "micro", ChatFormat = format });
        using var http = new HttpClient { BaseAddress = server.Address, Timeout = TimeSpan.FromSeconds(60) };
        const string messages = """[{"role":"system","content":"Be brief."},{"role":"user","content":"Say hello."}]""";
        var (status, body) = await Post(http, "/v1/chat/completions",
            $$"""{"messages":{{messages}},"max_completion_tokens":12,"temperature":0}""");
        Assert.Equal(HttpStatusCode.OK, status);
        var content = body.GetProperty("choices")[0].GetProperty("message").GetProperty("content").GetString();
        Assert.Equal(expected, content);
        Assert.Equal(prompt.Ids.Count, body.GetProperty("usage").GetProperty("prompt_tokens").GetInt32());
        // Negative control: the plain format's prompt is another prompt, of another length.
        Assert.NotEqual(tokenizer.Encode(PlainChatFormat.Render(conversation)).Count,
            body.GetProperty("usage").GetProperty("prompt_tokens").GetInt32());
        Assert.True(expected != plain || expected.Length == 0, "the control should differ from the template's reply");

        (status, body) = await Post(http, "/v1/chat/completions",
            """{"messages":[{"role":"user","content":"One"},{"role":"user","content":"Two"}],"max_tokens":4}""");
        Assert.Equal(HttpStatusCode.BadRequest, status);
        var error = body.GetProperty("error");
        Assert.Equal("invalid_request_error", error.GetProperty("type").GetString());
        Assert.Equal("messages", error.GetProperty("param").GetString());
        Assert.Contains("Conversation roles must alternate user/assistant/user/assistant/...",
            error.GetProperty("message").GetString());

        (status, body) = await Post(http, "/v1/chat/completions",
            $$"""{"messages":{{messages}},"max_completion_tokens":12,"temperature":0}""");
        Assert.Equal(HttpStatusCode.OK, status);
        Assert.Equal(expected, body.GetProperty("choices")[0].GetProperty("message").GetProperty("content").GetString());

        using var client = new RetNetChatClient(new TextCompletions(server.Generator, tokenizer), "micro", format);
        var response = await client.GetResponseAsync(
            [new ChatMessage(ChatRole.System, "Be brief."), new ChatMessage(ChatRole.User, "Say hello.")],
            new ChatOptions { MaxOutputTokens = 12, Temperature = 0 });
        Assert.Equal(expected, response.Text);
        await Assert.ThrowsAsync<RetNet.Ilgpu.Generation.ChatTemplates.ChatTemplateRaisedException>(() =>
            client.GetResponseAsync([new ChatMessage(ChatRole.Assistant, "First")]));
    }
}
