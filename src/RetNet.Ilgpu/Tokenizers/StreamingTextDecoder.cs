using System.Text;

namespace RetNet.Ilgpu.Tokenizers;

/// <summary>
/// Turns a stream of token ids into text as it arrives, never emitting part of a character: the bytes of an
/// incomplete UTF-8 sequence (a token may end mid-character, with byte-level tokenizers often does) are held back
/// until the sequence completes. Bytes that can no longer form a valid character become U+FFFD as soon as that is
/// certain; <see cref="Flush"/> turns a still-incomplete tail into U+FFFD at the end.
/// </summary>
/// <remarks>
/// The concatenation of everything returned equals <see cref="ITextTokenizer.Decode"/> of all the ids. A character
/// outside the Basic Multilingual Plane is returned whole, as its surrogate pair, never as a lone surrogate.
/// </remarks>
public sealed class StreamingTextDecoder
{
    private readonly ITextTokenizer tokenizer;
    private readonly Decoder decoder = TextBytes.Utf8.GetDecoder();
    private char[] chars = new char[16];

    /// <summary>A decoder for <paramref name="tokenizer"/>'s ids, with nothing held back.</summary>
    public StreamingTextDecoder(ITextTokenizer tokenizer)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        this.tokenizer = tokenizer;
    }

    /// <summary>The text that token <paramref name="id"/> completes; empty while a character is still incomplete.</summary>
    /// <exception cref="ArgumentOutOfRangeException">The id is outside the tokenizer's vocabulary.</exception>
    public string Append(int id)
    {
        if (id < 0 || id >= tokenizer.VocabularySize)
            throw new ArgumentOutOfRangeException(nameof(id), id,
                $"Token id {id} is outside the {tokenizer.Name} vocabulary [0, {tokenizer.VocabularySize}).");
        return Convert(tokenizer.TokenBytes(id).Span, flush: false);
    }

    /// <summary>
    /// Ends the stream: returns U+FFFD for bytes still held back (an incomplete character), or an empty string, and
    /// leaves the decoder ready for a new stream.
    /// </summary>
    public string Flush() => Convert(ReadOnlySpan<byte>.Empty, flush: true);

    private string Convert(ReadOnlySpan<byte> bytes, bool flush)
    {
        var needed = decoder.GetCharCount(bytes, flush);
        if (chars.Length < needed)
            chars = new char[Math.Max(needed, 2 * chars.Length)];
        var written = decoder.GetChars(bytes, chars, flush);
        return new string(chars, 0, written);
    }
}
