using System.Text;

namespace RetNet.Ilgpu.Tokenizers;

/// <summary>
/// Turns a stream of token ids into text as it arrives, never emitting part of a character: the bytes of an
/// incomplete UTF-8 sequence (a token may end mid-character, with byte-level tokenizers often does) are held back
/// until the sequence completes. Bytes that can no longer form a valid character become U+FFFD as soon as that is
/// certain; <see cref="Flush"/> turns a still-incomplete tail into U+FFFD at the end.
/// </summary>
/// <remarks>
/// For a decoder made at the start of a text, the concatenation of everything returned equals
/// <see cref="ITextTokenizer.Decode"/> of all the ids; one that continues a text (the continuation of a prompt) reads
/// every token with <see cref="ITextTokenizer.TokenBytes"/>, as text that follows other text. A character outside the
/// Basic Multilingual Plane is returned whole, as its surrogate pair, never as a lone surrogate.
/// </remarks>
public sealed class StreamingTextDecoder
{
    private readonly ITextTokenizer tokenizer;
    private readonly bool startOfText;
    private readonly Decoder decoder = TextBytes.Utf8.GetDecoder();
    private char[] chars = new char[16];
    private bool atStart;

    /// <summary>
    /// A decoder for <paramref name="tokenizer"/>'s ids, with nothing held back. With <paramref name="startOfText"/>
    /// the first token that stands for any bytes is read as the start of a text
    /// (<see cref="ITextTokenizer.TokenBytesAtStart"/>), as <see cref="ITextTokenizer.Decode"/> reads it.
    /// </summary>
    public StreamingTextDecoder(ITextTokenizer tokenizer, bool startOfText = true)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        this.tokenizer = tokenizer;
        this.startOfText = atStart = startOfText;
    }

    /// <summary>The text that token <paramref name="id"/> completes; empty while a character is still incomplete.</summary>
    /// <exception cref="ArgumentOutOfRangeException">The id is outside the tokenizer's vocabulary.</exception>
    public string Append(int id)
    {
        if (id < 0 || id >= tokenizer.VocabularySize)
            throw new ArgumentOutOfRangeException(nameof(id), id,
                $"Token id {id} is outside the {tokenizer.Name} vocabulary [0, {tokenizer.VocabularySize}).");
        return Convert(TextBytes.Next(tokenizer, id, ref atStart).Span, flush: false);
    }

    /// <summary>
    /// Ends the stream: returns U+FFFD for bytes still held back (an incomplete character), or an empty string, and
    /// leaves the decoder ready for a new stream (at the start of a text if it was made so).
    /// </summary>
    public string Flush()
    {
        atStart = startOfText;
        return Convert(ReadOnlySpan<byte>.Empty, flush: true);
    }

    private string Convert(ReadOnlySpan<byte> bytes, bool flush)
    {
        var needed = decoder.GetCharCount(bytes, flush);
        if (chars.Length < needed)
            chars = new char[Math.Max(needed, 2 * chars.Length)];
        var written = decoder.GetChars(bytes, chars, flush);
        return new string(chars, 0, written);
    }
}
