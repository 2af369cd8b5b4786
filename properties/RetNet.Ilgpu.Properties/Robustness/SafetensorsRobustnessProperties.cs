using FsCheck;
using FsCheck.Fluent;
using RetNet.Ilgpu.IO;

namespace RetNet.Ilgpu.Properties.Robustness;

/// <summary>
/// <see cref="Safetensors.Read"/> and <see cref="Safetensors.ReadEntries"/> on mutated and arbitrary files: each
/// returns tensors whose shapes match their data, in ranges that tile the data section, or throws a
/// <see cref="SafetensorsFormatException"/> that names the file; never anything else, and never an allocation larger
/// than the file.
/// </summary>
public sealed class SafetensorsRobustnessProperties : IDisposable
{
    private readonly string folder = Fuzz.TemporaryFolder("safetensors");

    /// <inheritdoc/>
    public void Dispose() => Directory.Delete(folder, recursive: true);

    private static Arbitrary<MutatedFile> Mutated =>
        Fuzz.Seeds.Generator.Select(seed =>
        {
            var random = new Random(seed);
            return SafetensorsMutations.Mutate(SafetensorsImage.RandomValid(random), random);
        }).ToArbitrary();

    private static Arbitrary<MutatedFile> ArbitraryBytes =>
        Fuzz.Seeds.Generator.Select(seed => SafetensorsMutations.Arbitrary(new Random(seed))).ToArbitrary();

    [Fact]
    public void Reader_returns_consistent_tensors_or_a_format_error_for_any_mutation_of_a_valid_file() =>
        Fuzz.Check(Prop.ForAll(Mutated, file => Holds(file)), ciCases: 200);

    [Fact]
    public void Reader_returns_consistent_tensors_or_a_format_error_for_arbitrary_bytes() =>
        Fuzz.Check(Prop.ForAll(ArbitraryBytes, file => Holds(file)), ciCases: 60);

    private bool Holds(MutatedFile file)
    {
        var path = Path.Combine(folder, $"{Guid.NewGuid():N}.safetensors");
        File.WriteAllBytes(path, file.Bytes);
        try
        {
            Fuzz.ReturnsValidOrThrowsTyped(() => Safetensors.ReadEntries(path), _ => { }, IsFormatError(path));
            var accepted = Fuzz.ReturnsValidOrThrowsTyped(() => Safetensors.Read(path),
                read => AssertConsistent(read, path, file.Bytes.Length), IsFormatError(path));
            return accepted || !file.MustBeAccepted;
        }
        finally
        {
            File.Delete(path);
        }
    }

    private static Func<Exception, bool> IsFormatError(string path) =>
        e => e is SafetensorsFormatException && e.Message.Contains(path, StringComparison.Ordinal);

    /// <summary>Every entry has a tensor of its shape whose data length is the product of the shape, the entries tile
    /// the data section in order, and the header-only read agrees.</summary>
    internal static void AssertConsistent(SafetensorsFile read, string path, long fileLength)
    {
        Assert.Equal(read.Entries.Count, read.Tensors.Count);
        long expected = 0;
        foreach (var entry in read.Entries)
        {
            var tensor = read.Tensors[entry.Name];
            Assert.Equal(entry.Shape, tensor.Shape);
            var count = entry.Shape.Aggregate(1L, (a, d) => a * d);
            Assert.Equal(count, tensor.Data.LongLength);
            Assert.Equal(expected, entry.Begin);
            Assert.Equal(count * (entry.DType == SafetensorsDType.F32 ? 4 : 2), entry.End - entry.Begin);
            expected = entry.End;
        }
        Assert.True(expected <= fileLength);
        var entries = Safetensors.ReadEntries(path);
        Assert.Equal(read.Entries.Select(e => (e.Name, e.Begin, e.End)), entries.Select(e => (e.Name, e.Begin, e.End)));
    }
}
