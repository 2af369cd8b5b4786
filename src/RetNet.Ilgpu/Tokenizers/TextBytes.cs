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
        for (var i = 0; i < ids.Count; i++)
        {
            if (ids[i] < 0 || ids[i] >= tokenizer.VocabularySize)
                throw new ArgumentException(
                    $"Argument 'ids' has id {ids[i]} at position {i}; expected an id in [0, {tokenizer.VocabularySize}).",
                    nameof(ids));
            bytes.AddRange(tokenizer.TokenBytes(ids[i]).Span);
        }
        return Utf8.GetString(bytes.ToArray());
    }
}
