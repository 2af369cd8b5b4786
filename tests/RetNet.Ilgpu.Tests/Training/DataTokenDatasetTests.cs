using System.Buffers.Binary;
using System.Text;
using RetNet.Ilgpu.Tokenizers;
using RetNet.Ilgpu.Training.Data;

namespace RetNet.Ilgpu.Tests.Training;

public sealed class DataTokenDatasetTests : IDisposable
{
    private readonly string folder = Directory.CreateTempSubdirectory("retnet-data-").FullName;

    public void Dispose() => Directory.Delete(folder, recursive: true);

    private string PathOf(string name) => Path.Combine(folder, name);

    private static int[] ReadAll(TokenDataset data)
    {
        var ids = new int[data.Count];
        data.CopyTo(0, ids);
        return ids;
    }

    /// <summary>A token file with a hand-made header, so each field can be wrong on its own.</summary>
    private string RawBin(string name, int magic, int version, int count, int tokenBytes, ushort fill = 7)
    {
        var bytes = new byte[TokenDataset.BinHeaderBytes + tokenBytes];
        BinaryPrimitives.WriteInt32LittleEndian(bytes, magic);
        BinaryPrimitives.WriteInt32LittleEndian(bytes.AsSpan(4), version);
        BinaryPrimitives.WriteInt32LittleEndian(bytes.AsSpan(8), count);
        for (var i = 0; i + 1 < tokenBytes; i += 2)
            BinaryPrimitives.WriteUInt16LittleEndian(bytes.AsSpan(TokenDataset.BinHeaderBytes + i), fill);
        var path = PathOf(name);
        File.WriteAllBytes(path, bytes);
        return path;
    }

    [Fact]
    public void A_written_token_file_opens_to_the_same_ids_with_the_llmc_layout()
    {
        var ids = Enumerable.Range(0, 200_000).Select(i => (i * 7919) % 65536).ToArray();
        var path = PathOf("train.bin");
        TokenDataset.WriteTokenFile(path, ids);

        var bytes = File.ReadAllBytes(path);
        Assert.Equal(1024 + 2 * ids.Length, bytes.Length);
        Assert.Equal(20240520, BinaryPrimitives.ReadInt32LittleEndian(bytes));
        Assert.Equal(1, BinaryPrimitives.ReadInt32LittleEndian(bytes.AsSpan(4)));
        Assert.Equal(ids.Length, BinaryPrimitives.ReadInt32LittleEndian(bytes.AsSpan(8)));
        Assert.Equal(ids[1], BinaryPrimitives.ReadUInt16LittleEndian(bytes.AsSpan(1026)));
        Assert.Single(Directory.GetFiles(folder));

        using var data = TokenDataset.Open([path], null, 65536);
        Assert.Equal(ids.Length, data.Count);
        Assert.Equal(ids, ReadAll(data));
        Assert.Equal(ids[123_456], data[123_456]);
        var window = new int[1000];
        data.CopyTo(70_000, window);
        Assert.Equal(ids.AsSpan(70_000, 1000).ToArray(), window);
        Assert.False(data.IsText);
        Assert.Equal(0, data.TextBytes);
    }

    [Fact]
    public void Several_files_concatenate_in_order_and_copies_cross_file_boundaries()
    {
        var a = PathOf("a.bin");
        var b = PathOf("b.BIN");
        TokenDataset.WriteTokenFile(a, [1, 2, 3]);
        TokenDataset.WriteTokenFile(b, [4, 5]);

        using var data = TokenDataset.Open([a, b, a], null, 10);

        Assert.Equal([1, 2, 3, 4, 5, 1, 2, 3], ReadAll(data));
        var middle = new int[4];
        data.CopyTo(2, middle);
        Assert.Equal([3, 4, 5, 1], middle);
        Assert.Equal(4, data[3]);
        Assert.Throws<ArgumentOutOfRangeException>(() => data[8]);
        Assert.Throws<ArgumentOutOfRangeException>(() => data[-1]);
        Assert.Throws<ArgumentOutOfRangeException>(() => data.CopyTo(5, new int[4]));
    }

    [Fact]
    public void A_command_line_list_splits_at_commas()
    {
        Assert.Equal(["a.bin", "dir/b c.txt"], TokenDataset.ParsePathList(" a.bin, dir/b c.txt ,"));
        Assert.Equal("list", Assert.Throws<ArgumentException>(() => TokenDataset.ParsePathList(" , ")).ParamName);
    }

    public static TheoryData<string, int, int, int, int, string> BadTokenFiles => new()
    {
        { "short.bin", 20240520, 1, 0, -1000, "shorter than the 1024-byte llm.c header" },
        { "magic.bin", 12345, 1, 4, 8, "magic 12345 in its header; expected 20240520" },
        { "version.bin", 20240520, 2, 4, 8, "version 2; only version 1" },
        { "truncated.bin", 20240520, 1, 5, 8, "is 1032 bytes, but its header's token count 5 needs 1024 + 2·5 = 1034 bytes" },
        { "long.bin", 20240520, 1, 3, 8, "is 1032 bytes, but its header's token count 3 needs 1024 + 2·3 = 1030 bytes" },
        { "negative.bin", 20240520, 1, -1, 8, "token count -1" },
        { "empty.bin", 20240520, 1, 0, 0, "holds no tokens" },
    };

    [Theory, MemberData(nameof(BadTokenFiles))]
    public void Malformed_token_files_are_rejected_naming_the_file_and_the_mismatch(
        string name, int magic, int version, int count, int tokenBytes, string expected)
    {
        var path = tokenBytes < 0 ? PathOf(name) : RawBin(name, magic, version, count, tokenBytes);
        if (tokenBytes < 0)
            File.WriteAllBytes(path, new byte[TokenDataset.BinHeaderBytes + tokenBytes]);

        var error = Assert.Throws<InvalidDataException>(() => TokenDataset.Open([path], null, 65536));

        Assert.Contains(path, error.Message);
        Assert.Contains(expected, error.Message);
    }

    [Fact]
    public void A_token_id_at_or_above_the_vocabulary_is_reported_with_its_position_on_open()
    {
        var ids = new int[300_000];
        ids[250_001] = 100;
        var path = PathOf("ids.bin");
        TokenDataset.WriteTokenFile(path, ids);

        var error = Assert.Throws<InvalidDataException>(() => TokenDataset.Open([path], null, 100));
        Assert.Contains(path, error.Message);
        Assert.Contains("token id 100 at position 250001", error.Message);
        Assert.Contains("[0, 100)", error.Message);

        // The same file is accepted by a vocabulary one larger: the check is exactly id < V.
        using var data = TokenDataset.Open([path], null, 101);
        Assert.Equal(100, data[250_001]);
    }

    [Fact]
    public void Writing_rejects_ids_a_uint16_cannot_hold()
    {
        var error = Assert.Throws<ArgumentException>(() => TokenDataset.WriteTokenFile(PathOf("x.bin"), [1, 65536]));
        Assert.Contains("65536 at position 1", error.Message);
        Assert.Throws<ArgumentException>(() => TokenDataset.WriteTokenFile(PathOf("x.bin"), [-1]));
        Assert.Empty(Directory.GetFiles(folder));
    }

    [Fact]
    public void Text_with_the_byte_tokenizer_is_its_utf8_bytes_with_no_separator()
    {
        var a = PathOf("a.txt");
        var b = PathOf("b.md");
        File.WriteAllText(a, "héllo\n", new UTF8Encoding(encoderShouldEmitUTF8Identifier: true));
        File.WriteAllText(b, "wörld");

        using var data = TokenDataset.Open([a, b], ByteTokenizer.Instance, 256);

        var expected = Encoding.UTF8.GetBytes("héllo\nwörld").Select(x => (int)x).ToArray();
        Assert.Equal(expected, ReadAll(data));
        Assert.True(data.IsText);
        Assert.Equal(expected.Length, data.TextBytes);
    }

    [Fact]
    public void Text_with_gpt2_puts_end_of_text_between_files_only()
    {
        var gpt2 = Gpt2Tokenizer.Instance;
        var a = PathOf("a.txt");
        var b = PathOf("b.txt");
        File.WriteAllText(a, "The quick brown fox.");
        File.WriteAllText(b, "Jumps over the lazy dog.");

        using var data = TokenDataset.Open([a, b], gpt2, 50304);

        int[] expected = [.. gpt2.Encode("The quick brown fox."), 50256, .. gpt2.Encode("Jumps over the lazy dog.")];
        Assert.Equal(expected, ReadAll(data));
        Assert.Equal(1, ReadAll(data).Count(id => id == 50256));
        Assert.Equal(Encoding.UTF8.GetByteCount("The quick brown fox.Jumps over the lazy dog."), data.TextBytes);
    }

    [Fact]
    public void Text_and_token_files_mix_without_a_separator_next_to_the_token_file()
    {
        var gpt2 = Gpt2Tokenizer.Instance;
        var text = PathOf("a.txt");
        var bin = PathOf("b.bin");
        File.WriteAllText(text, "Hello");
        TokenDataset.WriteTokenFile(bin, [50256, 11, 12]);

        using var data = TokenDataset.Open([text, bin, text], gpt2, 50257);

        Assert.Equal([.. gpt2.Encode("Hello"), 50256, 11, 12, .. gpt2.Encode("Hello")], ReadAll(data));
        Assert.False(data.IsText);
        Assert.Equal(10, data.TextBytes);
    }

    [Fact]
    public void Chunked_tokenization_equals_whole_file_tokenization_for_gpt2()
    {
        var gpt2 = Gpt2Tokenizer.Instance;
        var builder = new StringBuilder();
        var random = new Random(11);
        string[] words = ["alpha", "beta,", "gamma.", "  delta", "é", "日本", "42", "\t", "it's", "x"];
        for (var line = 0; line < 400; line++)
        {
            for (var w = random.Next(0, 12); w > 0; w--)
                builder.Append(words[random.Next(words.Length)]).Append(' ');
            builder.Append(random.Next(4) == 0 ? "\n\n" : random.Next(3) == 0 ? "\r\n" : "\n");
        }
        var text = builder.ToString();
        var path = PathOf("long.txt");
        File.WriteAllText(path, text);

        var whole = gpt2.Encode(text);
        // Chunks of 48 to 1000 bytes split the file at tens to hundreds of places.
        foreach (var chunkBytes in new[] { 48, 64, 97, 1000 })
        {
            using var data = TokenDataset.OpenChunked([path], gpt2, 50257, chunkBytes);
            Assert.Equal(whole, ReadAll(data));
            Assert.Equal(Encoding.UTF8.GetByteCount(text), data.TextBytes);
        }
    }

    [Fact]
    public void The_split_point_is_before_the_last_whitespace_before_a_printable_character()
    {
        // The last line break followed by a printable character wins over later spaces.
        Assert.Equal(4, TextTokenSource.SplitPoint("abc\n\nd\n  "u8));
        Assert.Equal(3, TextTokenSource.SplitPoint("ab \nc d"u8));
        // No such line break: the last whitespace before a printable character.
        Assert.Equal(3, TextTokenSource.SplitPoint("ab  c\n"u8));
        // Only whitespace after each break: after the last line break instead.
        Assert.Equal(5, TextTokenSource.SplitPoint("ab\n\n\n  "u8));
        // No line break or space: before the last character's lead byte (é is C3 A9).
        Assert.Equal(3, TextTokenSource.SplitPoint("abcé"u8));
    }

    [Fact]
    public void Invalid_utf8_is_reported_with_the_file_and_byte_offset_even_past_the_first_chunk()
    {
        var bytes = Encoding.UTF8.GetBytes(string.Concat(Enumerable.Repeat("line of text\n", 30))).ToList();
        var offset = bytes.Count;
        bytes.AddRange([0x61, 0xC3, 0x28, 0x0A]);
        var path = PathOf("bad.txt");
        File.WriteAllBytes(path, [.. bytes]);

        var error = Assert.Throws<InvalidDataException>(
            () => TokenDataset.OpenChunked([path], ByteTokenizer.Instance, 256, chunkBytes: 50));

        Assert.Contains(path, error.Message);
        Assert.Contains($"byte offset {offset + 1}", error.Message);
    }

    [Fact]
    public void Text_without_a_tokenizer_and_empty_inputs_are_rejected()
    {
        var text = PathOf("a.txt");
        File.WriteAllText(text, "words");
        var error = Assert.Throws<ArgumentException>(() => TokenDataset.Open([text], null, 256));
        Assert.Equal("tokenizer", error.ParamName);
        Assert.Contains(text, error.Message);

        var empty = PathOf("empty.txt");
        File.WriteAllBytes(empty, Encoding.UTF8.Preamble.ToArray());
        var emptyError = Assert.Throws<InvalidDataException>(() => TokenDataset.Open([text, empty], ByteTokenizer.Instance, 256));
        Assert.Contains(empty, emptyError.Message);
        Assert.Contains("holds no text", emptyError.Message);

        Assert.Throws<ArgumentException>(() => TokenDataset.Open([], ByteTokenizer.Instance, 256));
        var missing = Assert.Throws<FileNotFoundException>(() => TokenDataset.Open([PathOf("none.bin")], null, 256));
        Assert.Contains("none.bin", missing.Message);
        var small = Assert.Throws<ArgumentException>(() => TokenDataset.Open([text], Gpt2Tokenizer.Instance, 50000));
        Assert.Contains("50257", small.Message);
    }

    [Fact]
    public void Ids_and_text_in_memory_make_datasets_like_files_do()
    {
        int[] ids = [3, 1, 4, 1, 5, 9, 2, 6];
        using var fromIds = TokenDataset.FromIds(ids, vocabularySize: 10);
        Assert.Equal(ids, ReadAll(fromIds));
        Assert.False(fromIds.IsText);
        Assert.Empty(fromIds.Paths);
        var error = Assert.Throws<ArgumentException>(() => TokenDataset.FromIds([1, 10], vocabularySize: 10));
        Assert.Contains("id 10 at position 1", error.Message);
        Assert.Throws<ArgumentException>(() => TokenDataset.FromIds([], vocabularySize: 10));

        const string text = "Hello, wörld.";
        File.WriteAllText(PathOf("hello.txt"), text, new UTF8Encoding(false));
        using var fromText = TokenDataset.FromText(text, ByteTokenizer.Instance, 256);
        using var fromFile = TokenDataset.Open([PathOf("hello.txt")], ByteTokenizer.Instance, 256);
        Assert.Equal(ReadAll(fromFile), ReadAll(fromText));
        Assert.True(fromText.IsText);
        Assert.Equal(Encoding.UTF8.GetByteCount(text), fromText.TextBytes);
        Assert.Equal(fromFile.TextBytes, fromText.TextBytes);
        // Negative control: other text is other ids.
        using var other = TokenDataset.FromText("Hello, world.", ByteTokenizer.Instance, 256);
        Assert.NotEqual(ReadAll(fromFile), ReadAll(other));
    }
}
