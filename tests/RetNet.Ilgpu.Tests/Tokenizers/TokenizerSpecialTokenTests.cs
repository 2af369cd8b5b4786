using RetNet.Ilgpu.Generation;
using RetNet.Ilgpu.Generation.ChatTemplates;
using RetNet.Ilgpu.Tokenizers;

namespace RetNet.Ilgpu.Tests.Tokenizers;

/// <summary>
/// A rendered chat prompt is encoded as transformers encodes it (add_special_tokens=False, special tokens matched as
/// whole strings): "&lt;s&gt;" and "&lt;/s&gt;" written by the template become their ids, not the pieces of their
/// characters, and no second beginning-of-text is added; added tokens from tokenizer_config.json's
/// added_tokens_decoder are matched too; the plain encoding of the same text is the negative control.
/// </summary>
public sealed class TokenizerSpecialTokenTests : IDisposable
{
    private static readonly string ModelFile =
        Path.Combine(AppContext.BaseDirectory, "Fixtures", "SentencePiece", SentencePieceTokenizer.FileName);

    private readonly string folder = Directory.CreateTempSubdirectory("retnet-special-").FullName;

    public void Dispose() => Directory.Delete(folder, recursive: true);

    private SentencePieceTokenizer Folder(string tokenizerConfig)
    {
        File.Copy(ModelFile, Path.Combine(folder, SentencePieceTokenizer.FileName), overwrite: true);
        File.WriteAllText(Path.Combine(folder, "tokenizer_config.json"), tokenizerConfig);
        return SentencePieceTokenizer.FromModelFolder(folder);
    }

    [Fact]
    public void Special_token_texts_become_their_ids_and_no_second_bos_is_added()
    {
        var tokenizer = SentencePieceTokenizer.Load(ModelFile);
        var (bos, eos) = (tokenizer.BeginningOfText!.Value, tokenizer.EndOfText!.Value);
        Assert.Equal(bos, tokenizer.SpecialTokens["<s>"]);
        Assert.Equal(eos, tokenizer.SpecialTokens["</s>"]);

        var ids = tokenizer.EncodeRendered("<s>[INST] Hello [/INST] Hi </s><s>[INST] Again [/INST]");
        Assert.Equal(bos, ids[0]);
        Assert.Equal(2, ids.Count(id => id == bos));
        Assert.Single(ids, id => id == eos);
        Assert.Equal(
            [bos, .. tokenizer.EncodeWithoutSpecialTokens("[INST] Hello [/INST] Hi "), eos, bos,
                .. tokenizer.EncodeWithoutSpecialTokens("[INST] Again [/INST]")],
            ids);
        // Each segment gets sentencepiece's dummy prefix, as transformers' legacy Llama tokenizers give it.
        Assert.Equal("[INST] Hello [/INST] Hi  [INST] Again [/INST]", tokenizer.Decode(ids));

        // Negative control: the ordinary encoding adds a bos of its own and spells "<s>" out in pieces.
        var plain = tokenizer.Encode("<s>[INST] Hello [/INST] Hi </s><s>[INST] Again [/INST]");
        Assert.NotEqual(ids, plain);
        Assert.Single(plain, id => id == bos);
        Assert.DoesNotContain(eos, plain);
        Assert.True(plain.Count > ids.Count + 4);
    }

    [Fact]
    public void Added_tokens_of_the_config_are_matched_longest_first()
    {
        var tokenizer = Folder("""
            {"bos_token": "<s>", "eos_token": {"content": "</s>", "special": true},
             "added_tokens_decoder": {"400": {"content": "<|im_end|>", "special": true},
                                      "401": {"content": "<|im", "special": true},
                                      "9999": {"content": "<|outside|>", "special": true}}}
            """);
        Assert.Equal(400, tokenizer.SpecialTokens["<|im_end|>"]);
        Assert.False(tokenizer.SpecialTokens.ContainsKey("<|outside|>"));
        var ids = tokenizer.EncodeRendered("a<|im_end|>b<|im");
        Assert.Equal([.. tokenizer.EncodeWithoutSpecialTokens("a"), 400, .. tokenizer.EncodeWithoutSpecialTokens("b"), 401],
            ids);
    }

    [Fact]
    public void Tokenizers_without_special_tokens_encode_the_text_as_it_is()
    {
        Assert.Equal(ByteTokenizer.Instance.Encode("<s>hi"), ByteTokenizer.Instance.EncodeRendered("<s>hi"));
        var gpt2 = Gpt2Tokenizer.Instance;
        Assert.Equal(gpt2.EndOfText, gpt2.SpecialTokens["<|endoftext|>"]);
        Assert.Equal(gpt2.EndOfText, gpt2.EncodeRendered("hi<|endoftext|>")[^1]);
    }

    [Fact]
    public void A_model_folder_with_a_template_gets_the_template_format_and_its_stop_tokens()
    {
        var tokenizer = Folder("""
            {"bos_token": "<s>", "eos_token": "</s>",
             "chat_template": "{{ bos_token }}{% for m in messages %}[{{ m.role }}] {{ m.content }}{{ eos_token }}{% endfor %}"}
            """);
        File.WriteAllText(Path.Combine(folder, "generation_config.json"), """{"eos_token_id": [2, 7]}""");
        var format = Assert.IsType<TemplateChatFormat>(ChatFormats.FromModelFolder(folder, tokenizer));
        Assert.Equal(new HashSet<int> { tokenizer.EndOfText!.Value, 7 }, format.StopTokens.ToHashSet());
        var prompt = format.Format([("user", "Hi")]);
        Assert.Equal("<s>[user] Hi</s>", prompt.Text);
        Assert.Equal([tokenizer.BeginningOfText!.Value, .. tokenizer.EncodeWithoutSpecialTokens("[user] Hi"),
            tokenizer.EndOfText!.Value], prompt.Ids);

        // chat_template.jinja wins over the config's entry, as in transformers.
        File.WriteAllText(Path.Combine(folder, ChatTemplate.TemplateFileName), "{{ messages[0].content }}!\n");
        Assert.Equal("Hi!", ChatFormats.FromModelFolder(folder, tokenizer).Format([("user", "Hi")]).Text);

        File.Delete(Path.Combine(folder, ChatTemplate.TemplateFileName));
        File.WriteAllText(Path.Combine(folder, "tokenizer_config.json"),
            """{"chat_template": [{"name": "tool_use", "template": "T"}, {"name": "default", "template": "D"}]}""");
        Assert.Equal("D", ChatFormats.FromModelFolder(folder, tokenizer).Format([("user", "Hi")]).Text);

        File.WriteAllText(Path.Combine(folder, "tokenizer_config.json"), """{"bos_token": "<s>"}""");
        Assert.Same(PlainChatFormat.Instance, ChatFormats.FromModelFolder(folder, tokenizer));
    }
}
