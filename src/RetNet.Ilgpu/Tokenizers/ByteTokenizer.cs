using System.Text;

namespace RetNet.Ilgpu.Tokenizers;

/// <summary>
/// The built-in byte-level tokenizer: 256 ids, id b standing for the byte b of the text's UTF-8 encoding. Any text
/// round-trips; a character outside ASCII takes 2–4 tokens.
/// </summary>
public sealed class ByteTokenizer : ITextTokenizer
{
    private static readonly ReadOnlyMemory<byte>[] Bytes = CreateBytes();

    /// <summary>The shared instance (the tokenizer has no state).</summary>
    public static ByteTokenizer Instance { get; } = new();

    /// <inheritdoc/>
    public string Name => "byte";

    /// <inheritdoc/>
    public int VocabularySize => 256;

    /// <inheritdoc/>
    public int? EndOfText => null;

    /// <inheritdoc/>
    public IReadOnlyList<int> Encode(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var bytes = Encoding.UTF8.GetBytes(text);
        var ids = new int[bytes.Length];
        for (var i = 0; i < bytes.Length; i++)
            ids[i] = bytes[i];
        return ids;
    }

    /// <inheritdoc/>
    public string Decode(IReadOnlyList<int> ids) => TextBytes.Decode(this, ids);

    /// <inheritdoc/>
    public ReadOnlyMemory<byte> TokenBytes(int id) =>
        id is >= 0 and < 256
            ? Bytes[id]
            : throw new ArgumentOutOfRangeException(nameof(id), id, $"Token id {id} is outside [0, 256).");

    private static ReadOnlyMemory<byte>[] CreateBytes()
    {
        var bytes = new ReadOnlyMemory<byte>[256];
        for (var b = 0; b < 256; b++)
            bytes[b] = new[] { (byte)b };
        return bytes;
    }
}
