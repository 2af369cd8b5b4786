using System.Text;
using RetNet.Ilgpu.Tokenizers;

namespace RetNet.Ilgpu.Tests.Tokenizers;

public sealed class TokenizerByteTests
{
    public static TheoryData<string> Texts =>
    [
        "",
        "Hello, world!",
        "naïve café — “quotes”",
        "日本語のテキスト 中文 한국어",
        "emoji 😀👍🏽 family 👨‍👩‍👧 flag 🇫🇷",
        "mixed\ttabs\nnewlines\r\n\0nul",
        "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 beyond the BMP 𐍈",
    ];

    [Theory, MemberData(nameof(Texts))]
    public void Any_text_round_trips_through_utf8_bytes(string text)
    {
        var tokenizer = ByteTokenizer.Instance;
        var ids = tokenizer.Encode(text);
        Assert.Equal(Encoding.UTF8.GetBytes(text).Select(b => (int)b), ids);
        Assert.Equal(text, tokenizer.Decode(ids));
    }

    [Fact]
    public void Random_strings_round_trip()
    {
        var random = new Random(5);
        for (var trial = 0; trial < 200; trial++)
        {
            var builder = new StringBuilder();
            var length = random.Next(0, 30);
            for (var i = 0; i < length; i++)
            {
                var codePoint = random.Next(4) switch
                {
                    0 => random.Next(0x20, 0x7F),
                    1 => random.Next(0x80, 0x800),
                    2 => random.Next(0x4E00, 0x9FFF),
                    _ => random.Next(0x1F300, 0x1FAFF),
                };
                builder.Append(char.ConvertFromUtf32(codePoint));
            }
            var text = builder.ToString();
            Assert.Equal(text, ByteTokenizer.Instance.Decode(ByteTokenizer.Instance.Encode(text)));
        }
    }

    [Fact]
    public void Invalid_utf8_decodes_to_replacement_characters()
    {
        // A lone continuation byte, then a truncated 3-byte sequence at the end.
        Assert.Equal("a\uFFFDb\uFFFD", ByteTokenizer.Instance.Decode([0x61, 0x80, 0x62, 0xE2, 0x82]));
    }

    [Fact]
    public void Ids_outside_the_vocabulary_are_rejected()
    {
        var error = Assert.Throws<ArgumentException>(() => ByteTokenizer.Instance.Decode([65, 256]));
        Assert.Equal("ids", error.ParamName);
        Assert.Contains("id 256 at position 1", error.Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => ByteTokenizer.Instance.TokenBytes(-1));
    }

    [Fact]
    public void The_factory_knows_byte_and_gpt2_and_names_them_on_a_bad_name()
    {
        Assert.Same(ByteTokenizer.Instance, TextTokenizers.Create("byte"));
        Assert.Same(ByteTokenizer.Instance, TextTokenizers.Create("BYTE"));
        Assert.Equal(256, TextTokenizers.Create("byte").VocabularySize);
        Assert.Null(ByteTokenizer.Instance.EndOfText);
        var error = Assert.Throws<ArgumentException>(() => TextTokenizers.Create("wordpiece"));
        Assert.Equal("name", error.ParamName);
        Assert.Contains("'wordpiece'", error.Message);
        Assert.Contains("byte, gpt2", error.Message);
    }

    [Fact]
    public void The_tokenizer_for_a_vocabulary_is_chosen_by_size_or_name_and_a_mismatch_is_refused()
    {
        Assert.Same(ByteTokenizer.Instance, TextTokenizers.ForVocabulary(TokenizerKind.Auto, 256));
        Assert.Equal("gpt2", TextTokenizers.ForVocabulary(TextTokenizers.ParseKind("AUTO"), 50257)!.Name);
        Assert.Null(TextTokenizers.ForVocabulary(TokenizerKind.Auto, 40));
        Assert.Same(ByteTokenizer.Instance, TextTokenizers.ForVocabulary(TokenizerKind.Byte, 256));
        var error = Assert.Throws<ArgumentException>(() => TextTokenizers.ForVocabulary(TokenizerKind.Byte, 50257));
        Assert.Contains("has 256 ids but the model's vocabulary has 50257", error.Message);
    }
}
