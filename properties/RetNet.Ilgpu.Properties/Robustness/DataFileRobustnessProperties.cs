using System.Buffers.Binary;
using System.Text;
using FsCheck;
using FsCheck.Fluent;
using RetNet.Ilgpu.Tokenizers;
using RetNet.Ilgpu.Training.Data;

namespace RetNet.Ilgpu.Properties.Robustness;

/// <summary>One or two training data files (an llm.c .bin or UTF-8 text), what was done to them, and the model's V.</summary>
public sealed record DataFiles(string Description, (string Name, byte[] Bytes)[] Files, int VocabularySize, int ChunkBytes,
    int[]? ExpectedIds)
{
    /// <inheritdoc/>
    public override string ToString() =>
        $"{Description}; V={VocabularySize}, chunks of {ChunkBytes} bytes; " +
        string.Join(", ", Files.Select(f => $"{f.Name} ({f.Bytes.Length} bytes)"));
}

/// <summary>
/// <see cref="TokenDataset"/> on llm.c token files with a wrong magic, version or count, truncated, extended, with ids
/// at or beyond V or flipped bytes, and on text files of any bytes (invalid UTF-8, a byte-order mark alone, empty)
/// read in small chunks: it opens a dataset whose every id is in [0, V) (the ids written when nothing was changed), or
/// throws a typed exception.
/// </summary>
public sealed class DataFileRobustnessProperties : IDisposable
{
    private readonly string folder = Fuzz.TemporaryFolder("data");

    /// <inheritdoc/>
    public void Dispose() => Directory.Delete(folder, recursive: true);

    private static byte[] BinFile(int[] ids)
    {
        var bytes = new byte[TokenDataset.BinHeaderBytes + 2 * ids.Length];
        BinaryPrimitives.WriteInt32LittleEndian(bytes, TokenDataset.BinMagic);
        BinaryPrimitives.WriteInt32LittleEndian(bytes.AsSpan(4), TokenDataset.BinVersion);
        BinaryPrimitives.WriteInt32LittleEndian(bytes.AsSpan(8), ids.Length);
        for (var i = 0; i < ids.Length; i++)
            BinaryPrimitives.WriteUInt16LittleEndian(bytes.AsSpan(TokenDataset.BinHeaderBytes + 2 * i), (ushort)ids[i]);
        return bytes;
    }

    private static (string, byte[]) MutatedBin(Random random, int vocabularySize, out int[]? expected)
    {
        var ids = Enumerable.Range(0, random.Next(1, 300)).Select(_ => random.Next(Math.Min(vocabularySize, 65536))).ToArray();
        var bytes = BinFile(ids);
        var name = random.Next(4) == 0 ? "tokens.BIN" : "tokens.bin";
        expected = null;
        switch (random.Next(9))
        {
            case 0:
                expected = ids;
                return ($"{name} unchanged", bytes);
            case 1:
            {
                var magic = new[] { 0, -1, TokenDataset.BinMagic + 1, 20240801, random.Next() }[random.Next(5)];
                BinaryPrimitives.WriteInt32LittleEndian(bytes, magic);
                return ($"{name} magic {magic}", bytes);
            }
            case 2:
            {
                var version = new[] { 0, 2, -1, int.MaxValue }[random.Next(4)];
                BinaryPrimitives.WriteInt32LittleEndian(bytes.AsSpan(4), version);
                return ($"{name} version {version}", bytes);
            }
            case 3:
            {
                var count = new[] { -1, 0, ids.Length - 1, ids.Length + 1, int.MaxValue, int.MinValue, 2 * ids.Length }[random.Next(7)];
                BinaryPrimitives.WriteInt32LittleEndian(bytes.AsSpan(8), count);
                return ($"{name} count {count} for {ids.Length} ids", bytes);
            }
            case 4:
            {
                var cut = new[] { 0, 3, 8, 11, 1023, 1024, 1025, bytes.Length - 1, random.Next(bytes.Length) }[random.Next(9)];
                return ($"{name} truncated to {cut} bytes", bytes[..cut]);
            }
            case 5:
                return ($"{name} with a byte appended", [.. bytes, 7]);
            case 6:
            {
                var at = random.Next(ids.Length);
                var id = new[] { vocabularySize, 65535, vocabularySize + random.Next(100) }[random.Next(3)];
                BinaryPrimitives.WriteUInt16LittleEndian(bytes.AsSpan(TokenDataset.BinHeaderBytes + 2 * at), (ushort)Math.Min(id, 65535));
                return ($"{name} id {id} at {at}", bytes);
            }
            case 7:
            {
                for (var i = 0; i < 4; i++)
                    bytes[random.Next(bytes.Length)] ^= (byte)random.Next(1, 256);
                return ($"{name} with flipped bytes", bytes);
            }
            default:
            {
                var arbitrary = new byte[random.Next(0, 2000)];
                random.NextBytes(arbitrary);
                return ($"{name} of arbitrary bytes", arbitrary);
            }
        }
    }

    private static (string, byte[]) Text(Random random)
    {
        var pieces = new[] { "hello world ", "\n", "\r\n", "é", "日本", "🙂", " ", "\t", "\0", "\uFEFF", "x" };
        var builder = new StringBuilder();
        for (var i = random.Next(0, 60); i > 0; i--)
            builder.Append(pieces[random.Next(pieces.Length)]);
        var bytes = Encoding.UTF8.GetBytes(builder.ToString());
        switch (random.Next(5))
        {
            case 0 when bytes.Length > 0:
                bytes[random.Next(bytes.Length)] = (byte)new[] { 0xFF, 0xC3, 0x80, 0xED, 0xF0 }[random.Next(5)];
                return ("text with an invalid UTF-8 byte", bytes);
            case 1:
                return ("a byte-order mark and the text", [.. Encoding.UTF8.Preamble, .. bytes]);
            case 2:
                return ("a byte-order mark alone", [.. Encoding.UTF8.Preamble]);
            case 3 when bytes.Length > 0:
                return ("text cut inside a character", bytes[..random.Next(bytes.Length)]);
            default:
                return ("text", bytes);
        }
    }

    private static Arbitrary<DataFiles> Cases =>
        Fuzz.Seeds.Generator.Select(seed =>
        {
            var random = new Random(seed);
            var vocabularySize = new[] { 1, 2, 256, 300, 50257, 65535, 65536, 70000 }[random.Next(8)];
            var files = new List<(string, byte[])>();
            var descriptions = new List<string>();
            int[]? expected = null;
            for (var i = random.Next(1, 3); i > 0; i--)
            {
                var (description, bytes) = random.Next(3) == 0 && vocabularySize >= 256
                    ? Text(random)
                    : MutatedBin(random, vocabularySize, out expected);
                files.Add(($"{files.Count}.{(description.StartsWith("text", StringComparison.Ordinal) || description.StartsWith("a byte", StringComparison.Ordinal) ? "txt" : description.Split(' ')[0])}", bytes));
                descriptions.Add(description);
            }
            return new DataFiles(string.Join(" + ", descriptions), [.. files], vocabularySize, random.Next(16, 80),
                files.Count == 1 ? expected : null);
        }).ToArbitrary();

    [Fact]
    public void Token_datasets_open_with_every_id_below_V_or_throw_a_typed_error_for_any_mutated_file() =>
        Fuzz.Check(Prop.ForAll(Cases, Holds), ciCases: 150);

    private bool Holds(DataFiles data)
    {
        var case_ = Directory.CreateDirectory(Path.Combine(folder, Guid.NewGuid().ToString("N"))).FullName;
        try
        {
            var paths = data.Files.Select(f =>
            {
                var path = Path.Combine(case_, f.Name);
                File.WriteAllBytes(path, f.Bytes);
                return path;
            }).ToList();
            var tokenizer = data.VocabularySize >= 256 ? TextTokenizers.Create("byte") : null;
            var accepted = Fuzz.ReturnsValidOrThrowsTyped(
                () => TokenDataset.OpenChunked(paths, tokenizer, data.VocabularySize, data.ChunkBytes),
                dataset =>
                {
                    using (dataset)
                    {
                        Assert.True(dataset.Count > 0);
                        var ids = new int[dataset.Count];
                        dataset.CopyTo(0, ids);
                        Assert.All(ids, id => Assert.InRange(id, 0, data.VocabularySize - 1));
                        if (data.ExpectedIds is { } expected)
                            Assert.Equal(expected, ids);
                    }
                });
            return accepted || data.ExpectedIds is null;
        }
        finally
        {
            Directory.Delete(case_, recursive: true);
        }
    }
}
