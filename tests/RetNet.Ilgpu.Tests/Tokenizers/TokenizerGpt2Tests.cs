using RetNet.Ilgpu.Tokenizers;

namespace RetNet.Ilgpu.Tests.Tokenizers;

public sealed class TokenizerGpt2Tests
{
    private static readonly Gpt2Tokenizer Tokenizer = Gpt2Tokenizer.Instance;

    [Fact]
    public void Known_texts_give_gpt2_ids()
    {
        Assert.Equal([15496, 995], Tokenizer.Encode("Hello world"));
        Assert.Equal([464, 2068, 7586, 21831], Tokenizer.Encode("The quick brown fox"));
        Assert.Equal(50257, Tokenizer.VocabularySize);
        Assert.Equal(50256, Tokenizer.EndOfText);
        Assert.Same(Tokenizer, TextTokenizers.Create("gpt2"));
    }

    [Theory]
    [InlineData("Hello world")]
    [InlineData("  leading spaces, trailing\n\n")]
    [InlineData("naïve café — “quotes” and 12345 numbers")]
    [InlineData("日本語のテキスト 中文 한국어")]
    [InlineData("emoji 😀👍🏽 family 👨‍👩‍👧 flag 🇫🇷 𐍈")]
    [InlineData("end<|endoftext|>")]
    public void Text_round_trips(string text)
    {
        var ids = Tokenizer.Encode(text);
        Assert.All(ids, id => Assert.InRange(id, 0, Tokenizer.VocabularySize - 1));
        Assert.Equal(text, Tokenizer.Decode(ids));
    }

    [Fact]
    public void The_special_token_in_text_encodes_to_its_id()
    {
        Assert.Equal(50256, Tokenizer.Encode("<|endoftext|>").Single());
        Assert.Equal("<|endoftext|>", Tokenizer.Decode([50256]));
    }

    [Fact]
    public void Every_id_decodes_through_its_bytes_as_the_library_decodes_it()
    {
        var library = Microsoft.ML.Tokenizers.TiktokenTokenizer.CreateForModel("gpt2");
        for (var id = 0; id < Tokenizer.VocabularySize; id += 7)
        {
            int[] pair = [id, (id * 31 + 5) % Tokenizer.VocabularySize];
            Assert.Equal(library.Decode(pair), Tokenizer.Decode(pair));
        }
    }

    [Fact]
    public void Streaming_gpt2_tokens_never_emits_part_of_a_character()
    {
        const string text = "Unicode: 😀👍🏽 日本語 𐍈 é — and a 🇫🇷 flag";
        var ids = Tokenizer.Encode(text);
        var decoder = new StreamingTextDecoder(Tokenizer);
        var pieces = ids.Select(decoder.Append).ToList();
        pieces.Add(decoder.Flush());

        Assert.Equal(text, string.Concat(pieces));
        Assert.All(pieces, piece =>
        {
            Assert.DoesNotContain('\uFFFD', piece);
            Assert.False(piece.Length > 0 && char.IsLowSurrogate(piece[0]), $"Piece starts mid-pair: '{piece}'.");
            Assert.False(piece.Length > 0 && char.IsHighSurrogate(piece[^1]), $"Piece ends mid-pair: '{piece}'.");
        });
        // Some GPT-2 token here ends inside a character, so the decoder had to hold bytes back.
        Assert.Contains("", pieces.Take(ids.Count));
    }

    [Fact]
    public void Ids_outside_the_vocabulary_are_rejected()
    {
        Assert.Equal("ids", Assert.Throws<ArgumentException>(() => Tokenizer.Decode([50257])).ParamName);
        Assert.Throws<ArgumentOutOfRangeException>(() => Tokenizer.TokenBytes(-1));
    }
}
