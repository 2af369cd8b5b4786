using System.Text;
using RetNet.Ilgpu.Tokenizers;

namespace RetNet.Ilgpu.Tests.Tokenizers;

public sealed class TokenizerStreamingTests
{
    private const string Sample = "aé日😀b👨‍👩‍👧𐍈z";

    /// <summary>Every piece is whole text: no lone surrogates, no replacement characters.</summary>
    private static void AssertWhole(string piece)
    {
        Assert.DoesNotContain('\uFFFD', piece);
        for (var i = 0; i < piece.Length; i++)
        {
            if (char.IsHighSurrogate(piece[i]))
            {
                Assert.True(i + 1 < piece.Length && char.IsLowSurrogate(piece[i + 1]), $"Lone high surrogate in '{piece}'.");
                i++;
            }
            else
                Assert.False(char.IsLowSurrogate(piece[i]), $"Lone low surrogate in '{piece}'.");
        }
    }

    [Fact]
    public void Byte_tokens_stream_whole_characters_only()
    {
        var decoder = new StreamingTextDecoder(ByteTokenizer.Instance);
        var pieces = ByteTokenizer.Instance.Encode(Sample).Select(decoder.Append).ToList();
        pieces.Add(decoder.Flush());

        Assert.All(pieces, AssertWhole);
        Assert.Equal(Sample, string.Concat(pieces));
        // '😀' is four bytes: three tokens that emit nothing, then the whole character.
        var emoji = Encoding.UTF8.GetByteCount("aé日");
        Assert.Equal(["", "", "", "😀"], pieces.Skip(emoji).Take(4));
    }

    [Fact]
    public void Any_split_into_multi_byte_tokens_streams_whole_characters()
    {
        // A tokenizer whose tokens are arbitrary byte runs: models byte-level BPE splitting characters anywhere.
        var bytes = Encoding.UTF8.GetBytes(Sample);
        var random = new Random(3);
        for (var trial = 0; trial < 300; trial++)
        {
            var runs = new List<byte[]>();
            for (var start = 0; start < bytes.Length;)
            {
                var length = Math.Min(random.Next(1, 6), bytes.Length - start);
                runs.Add(bytes[start..(start + length)]);
                start += length;
            }
            var tokenizer = new RunTokenizer(runs);
            var decoder = new StreamingTextDecoder(tokenizer);
            var pieces = Enumerable.Range(0, runs.Count).Select(decoder.Append).ToList();
            pieces.Add(decoder.Flush());

            Assert.All(pieces, AssertWhole);
            Assert.Equal(Sample, string.Concat(pieces));
        }
    }

    [Fact]
    public void Invalid_bytes_become_replacement_characters_as_soon_as_they_are_provably_invalid()
    {
        var decoder = new StreamingTextDecoder(ByteTokenizer.Instance);
        Assert.Equal("", decoder.Append(0xE6));
        Assert.Equal("", decoder.Append(0x97));
        // 'A' cannot continue E6 97: the two bytes are invalid now, not at the end.
        Assert.Equal("\uFFFDA", decoder.Append(0x41));
        Assert.Equal("\uFFFD", decoder.Append(0xFF));
        Assert.Equal("", decoder.Append(0xF0));
        Assert.Equal("\uFFFD", decoder.Flush());
        Assert.Equal("x", decoder.Append(0x78));
        Assert.Equal("", decoder.Flush());
    }

    [Fact]
    public void Streaming_equals_whole_decoding()
    {
        byte[] bytes = [0x68, 0xC3, 0xA9, 0x80, 0xF0, 0x9F, 0x98, 0x80, 0xED, 0xA0, 0x80, 0xE2, 0x82];
        var ids = bytes.Select(b => (int)b).ToArray();
        var decoder = new StreamingTextDecoder(ByteTokenizer.Instance);
        var streamed = string.Concat(ids.Select(decoder.Append)) + decoder.Flush();
        Assert.Equal(ByteTokenizer.Instance.Decode(ids), streamed);
    }

    [Fact]
    public void Ids_outside_the_vocabulary_are_rejected()
    {
        var error = Assert.Throws<ArgumentOutOfRangeException>(() =>
            new StreamingTextDecoder(ByteTokenizer.Instance).Append(300));
        Assert.Equal("id", error.ParamName);
        Assert.Contains("[0, 256)", error.Message);
    }

    private sealed class RunTokenizer(List<byte[]> runs) : ITextTokenizer
    {
        public string Name => "runs";

        public int VocabularySize => runs.Count;

        public int? EndOfText => null;

        public IReadOnlyList<int> Encode(string text) => throw new NotSupportedException();

        public string Decode(IReadOnlyList<int> ids) => throw new NotSupportedException();

        public ReadOnlyMemory<byte> TokenBytes(int id) => runs[id];
    }
}
