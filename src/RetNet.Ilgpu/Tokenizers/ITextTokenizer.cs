namespace RetNet.Ilgpu.Tokenizers;

/// <summary>Maps text to token ids and back. Every token stands for a fixed byte string of UTF-8 text.</summary>
public interface ITextTokenizer
{
    /// <summary>The name <see cref="TextTokenizers.Create"/> knows it by.</summary>
    string Name { get; }

    /// <summary>V: ids are in [0, V).</summary>
    int VocabularySize { get; }

    /// <summary>The id that marks the end of a text, if the vocabulary has one (a natural stop token).</summary>
    int? EndOfText { get; }

    /// <summary>The token ids of <paramref name="text"/>.</summary>
    IReadOnlyList<int> Encode(string text);

    /// <summary>
    /// The texts of the vocabulary's special and added tokens (&lt;s&gt;, &lt;/s&gt;, &lt;|im_end|&gt;, …), each with
    /// its id: what a rendered chat template writes as text and <see cref="SpecialTokenText.EncodeRendered"/> maps to
    /// the id as a whole (default: none).
    /// </summary>
    IReadOnlyDictionary<string, int> SpecialTokens => SpecialTokenText.None;

    /// <summary>
    /// The token ids of <paramref name="text"/> with nothing added around it (transformers'
    /// <c>add_special_tokens=False</c>): <see cref="Encode"/> without a beginning- or end-of-text id (default:
    /// <see cref="Encode"/>, for tokenizers that add none).
    /// </summary>
    IReadOnlyList<int> EncodeWithoutSpecialTokens(string text) => Encode(text);

    /// <summary>
    /// The text of <paramref name="ids"/>: their bytes concatenated and read as UTF-8, each invalid or incomplete
    /// sequence becoming U+FFFD.
    /// </summary>
    /// <exception cref="ArgumentException">An id is outside [0, V).</exception>
    string Decode(IReadOnlyList<int> ids);

    /// <summary>
    /// The UTF-8 bytes token <paramref name="id"/> stands for; one token may hold only part of a character.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">The id is outside [0, V).</exception>
    ReadOnlyMemory<byte> TokenBytes(int id);

    /// <summary>
    /// The bytes token <paramref name="id"/> stands for when it is the first token of a text that stands for any bytes
    /// (the tokens before it, if any, have empty <see cref="TokenBytes"/>): <see cref="TokenBytes"/>, except where a
    /// tokenizer drops something at the start of a text (SentencePiece drops the space its dummy prefix added).
    /// <see cref="Decode"/> reads that token this way, and every other token with <see cref="TokenBytes"/>.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">The id is outside [0, V).</exception>
    ReadOnlyMemory<byte> TokenBytesAtStart(int id) => TokenBytes(id);
}
