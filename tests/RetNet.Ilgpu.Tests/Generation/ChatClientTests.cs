using Microsoft.Extensions.AI;
using RetNet.Ilgpu.Generation;
using RetNet.Ilgpu.Model;
using RetNet.Ilgpu.Tests.Model;
using RetNet.Ilgpu.Tests.Support;
using RetNet.Ilgpu.Tokenizers;

namespace RetNet.Ilgpu.Tests.Generation;

/// <summary>
/// <see cref="RetNetChatClient"/>: the reply is the text <see cref="TextGenerator"/> generates for the rendered
/// conversation, streaming gives the same text in pieces, options and usage are mapped.
/// </summary>
[Collection(DeviceCollection.Name)]
public sealed class ChatClientTests(DeviceFixture fixture)
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(60);

    private static readonly ChatMessage[] Conversation =
        [new(ChatRole.System, "Be brief."), new(ChatRole.User, "Say hello.")];

    private readonly RetNetDevice device = fixture.Device;

    private LanguageModel ByteModel() =>
        LanguageModel.Create(device, ModelTestSupport.Micro() with { VocabSize = 256 }, seed: 4);

    private static string Solo(ILanguageModel model, string prompt, int maxTokens)
    {
        var decoder = new ModelTokenDecoder(model);
        try
        {
            return string.Concat(TextGenerator.Generate(decoder, ByteTokenizer.Instance, prompt,
                SamplingOptions.Greedy with { MaxTokens = maxTokens }));
        }
        finally
        {
            decoder.Dispose();
        }
    }

    [Fact]
    public async Task The_reply_is_the_generated_text_of_the_rendered_conversation_streamed_or_not()
    {
        using var model = ByteModel();
        var prompt = PlainChatFormat.Render(Conversation.Select(m => (m.Role.Value, m.Text)));
        Assert.Equal("System: Be brief.\nUser: Say hello.\nAssistant:", prompt);
        var solo = Solo(model, prompt, 24);
        var stop = solo.IndexOf(PlainChatFormat.UserTurn, StringComparison.Ordinal);
        var expected = stop >= 0 ? solo[..stop] : solo;

        await using var generator = new BatchedGenerator(model);
        using IChatClient client = new RetNetChatClient(new TextCompletions(generator, ByteTokenizer.Instance), "micro");
        var options = new ChatOptions { Temperature = 0, MaxOutputTokens = 24 };
        var response = await client.GetResponseAsync(Conversation, options).WaitAsync(Patience);
        Assert.Equal(expected, response.Text);
        Assert.Equal("micro", response.ModelId);
        Assert.Equal(prompt.Length, response.Usage!.InputTokenCount);
        Assert.Equal(stop >= 0 ? ChatFinishReason.Stop : ChatFinishReason.Length, response.FinishReason);

        var updates = new List<ChatResponseUpdate>();
        using var timeout = new CancellationTokenSource(Patience);
        await foreach (var update in client.GetStreamingResponseAsync(Conversation, options, timeout.Token))
            updates.Add(update);
        Assert.Equal(response.Text, string.Concat(updates.Select(u => u.Text)));
        var usage = updates.SelectMany(u => u.Contents).OfType<UsageContent>().Single().Details;
        Assert.Equal(response.Usage.OutputTokenCount, usage.OutputTokenCount);
        Assert.Equal(response.FinishReason, updates[^1].FinishReason);
    }

    [Fact]
    public async Task A_stop_sequence_ends_the_reply_before_it_options_out_of_range_are_refused_cancelling_throws()
    {
        using var model = ByteModel();
        var prompt = PlainChatFormat.Render(Conversation.Select(m => (m.Role.Value, m.Text)));
        var solo = Solo(model, prompt, 24);
        await using var generator = new BatchedGenerator(model);
        using IChatClient client = new RetNetChatClient(new TextCompletions(generator, ByteTokenizer.Instance), "micro");
        // A stop sequence from the middle of the greedy text (before any "\nUser:"), two characters long so that it
        // is held back across tokens.
        var user = solo.IndexOf(PlainChatFormat.UserTurn, StringComparison.Ordinal);
        var end = user >= 0 ? user : solo.Length;
        Assert.True(end >= 6, $"the greedy reply '{solo}' is too short to cut");
        var cut = solo.Substring(end / 2, 2);
        var first = solo.IndexOf(cut, StringComparison.Ordinal);
        var response = await client.GetResponseAsync(Conversation,
            new ChatOptions { Temperature = 0, MaxOutputTokens = 24, StopSequences = [cut] }).WaitAsync(Patience);
        Assert.Equal(solo[..first], response.Text);
        Assert.Equal(ChatFinishReason.Stop, response.FinishReason);

        Assert.Equal("Temperature", (await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() =>
            client.GetResponseAsync(Conversation, new ChatOptions { Temperature = -1 }))).ParamName);
        Assert.Equal("TopP", (await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() =>
            client.GetResponseAsync(Conversation, new ChatOptions { TopP = 0 }))).ParamName);
        Assert.Equal("MaxTokens", (await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() =>
            client.GetResponseAsync(Conversation, new ChatOptions { MaxOutputTokens = -1 }))).ParamName);

        // A cancelled reply ends with the cancellation, as .NET's calls do, and frees its slot.
        using var cancelled = new CancellationTokenSource();
        await cancelled.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() =>
            client.GetResponseAsync(Conversation, options: null, cancelled.Token).WaitAsync(Patience));
        Assert.Equal(0, generator.ActiveSequences);
    }
}
