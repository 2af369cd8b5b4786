using System.Text;
using RetNet.Ilgpu.Generation;
using RetNet.Ilgpu.Tokenizers;

namespace RetNet.Ilgpu.Tests.Generation;

public sealed class GenerationTextTests
{
    /// <summary>A byte-level "model" that greedily spells out <paramref name="text"/> after its first byte, then loops.</summary>
    private static GenerationBigramDecoder Spelling(string text)
    {
        var bytes = Encoding.UTF8.GetBytes(text);
        var table = new float[256][];
        for (var t = 0; t < 256; t++)
            table[t] = new float[256];
        for (var i = 0; i + 1 < bytes.Length; i++)
            table[bytes[i]][bytes[i + 1]] = 1;
        return new GenerationBigramDecoder(table);
    }

    [Fact]
    public void Text_streams_in_whole_characters_and_continues_the_prompt()
    {
        // Distinct bytes so that the bigram chain is unambiguous: "→" is E2 86 92, "😀" is F0 9F 98 80.
        const string text = "a→😀z";
        var pieces = TextGenerator.Generate(Spelling(text), ByteTokenizer.Instance, "a",
            new SamplingOptions { Temperature = 0, MaxTokens = 8 }).ToList();
        Assert.Equal(["→", "😀", "z"], pieces);
    }

    [Fact]
    public void A_token_limit_inside_a_character_flushes_a_replacement_character()
    {
        var pieces = TextGenerator.Generate(Spelling("a😀"), ByteTokenizer.Instance, "a",
            new SamplingOptions { Temperature = 0, MaxTokens = 2 }).ToList();
        Assert.Equal(["\uFFFD"], pieces);
    }

    [Fact]
    public void An_empty_prompt_starts_a_sentencepiece_text_at_its_beginning_without_the_dummy_prefix_space()
    {
        var tokenizer = SentencePieceTokenizer.Load(
            Path.Combine(AppContext.BaseDirectory, "Fixtures", "SentencePiece", SentencePieceTokenizer.FileName));
        var text = tokenizer.Encode("Café the");        // <s> ▁ C a f é ▁the, every id distinct
        Assert.Equal(text.Count, text.Distinct().Count());
        var table = new float[tokenizer.VocabularySize][];
        for (var t = 0; t < table.Length; t++)
            table[t] = new float[tokenizer.VocabularySize];
        for (var i = 0; i + 1 < text.Count; i++)
            table[text[i]][text[i + 1]] = 1;
        table[text[^1]][tokenizer.EndOfText!.Value] = 1;

        var options = new SamplingOptions
        {
            Temperature = 0, MaxTokens = 20, StopTokens = new HashSet<int> { tokenizer.EndOfText.Value },
        };
        var fromStart = TextGenerator.Generate(new GenerationBigramDecoder(table), tokenizer, "", options);
        Assert.Equal("Café the", string.Concat(fromStart));
        // After a prompt the continuation keeps its leading space.
        var continued = TextGenerator.Generate(new GenerationBigramDecoder(table), tokenizer, "Café", options);
        Assert.Equal(" the", string.Concat(continued));
    }

    [Fact]
    public void Mismatched_vocabularies_and_an_empty_prompt_without_end_of_text_are_rejected()
    {
        var small = GenerationBigramDecoder.Successor(10);
        var error = Assert.Throws<ArgumentException>(() =>
            TextGenerator.Generate(small, ByteTokenizer.Instance, "hi", new SamplingOptions()));
        Assert.Equal("tokenizer", error.ParamName);
        Assert.Contains("256", error.Message);
        Assert.Contains("10", error.Message);

        var empty = Assert.Throws<ArgumentException>(() =>
            TextGenerator.Generate(Spelling("ab"), ByteTokenizer.Instance, "", new SamplingOptions()));
        Assert.Equal("prompt", empty.ParamName);
    }
}
