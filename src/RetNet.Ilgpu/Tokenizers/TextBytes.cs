using System.Text;

namespace RetNet.Ilgpu.Tokenizers;

/// <summary>Decoding through bytes, shared by the tokenizers so that whole and streaming decoding agree.</summary>
internal static class TextBytes
{
    /// <summary>UTF-8 that replaces invalid input with U+FFFD instead of throwing.</summary>
    public static readonly UTF8Encoding Utf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: false);

    public static string Decode(ITextTokenizer tokenizer, IReadOnlyList<int> ids)
    {
        ArgumentNullException.ThrowIfNull(ids);
        var bytes = new List<byte>();
        var atStart = true;
        for (var i = 0; i < ids.Count; i++)
        {
            if (ids[i] < 0 || ids[i] >= tokenizer.VocabularySize)
                throw new ArgumentException(
                    $"Argument 'ids' has id {ids[i]} at position {i}; expected an id in [0, {tokenizer.VocabularySize}).",
                    nameof(ids));
            bytes.AddRange(Next(tokenizer, ids[i], ref atStart).Span);
        }
        return Utf8.GetString(bytes.ToArray());
    }

    /// <summary>
    /// The bytes of token <paramref name="id"/> in a text: <see cref="ITextTokenizer.TokenBytesAtStart"/> for the first
    /// token that stands for any bytes while <paramref name="atStart"/>, which it then clears.
    /// </summary>
    public static ReadOnlyMemory<byte> Next(ITextTokenizer tokenizer, int id, ref bool atStart)
    {
        var bytes = tokenizer.TokenBytes(id);
        if (!atStart || bytes.IsEmpty)
            return bytes;
        atStart = false;
        return tokenizer.TokenBytesAtStart(id);
    }
}
