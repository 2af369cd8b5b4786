using RetNet.Ilgpu.Tokenizers;

namespace RetNet.Ilgpu.Generation;

/// <summary>Text in, text out: encodes a prompt, generates, and streams the continuation as whole characters.</summary>
public static class TextGenerator
{
    /// <summary>
    /// Continues <paramref name="prompt"/>, yielding text as soon as generated tokens complete characters (a piece
    /// may hold several tokens' text, and a token that ends mid-character yields nothing until it completes); the
    /// last piece flushes what is left. The prompt itself is not repeated. Lazy, like
    /// <see cref="Generator.Generate(ITokenDecoder, IReadOnlyList{int}, SamplingOptions)"/>; arguments are
    /// validated on the call.
    /// </summary>
    /// <remarks>
    /// An empty prompt starts from the tokenizer's <see cref="ITextTokenizer.EndOfText"/> token (GPT-2's convention
    /// for unconditional text). Stop tokens are only those in <paramref name="options"/>: pass
    /// <see cref="ITextTokenizer.EndOfText"/> there to stop at the end of a text.
    /// </remarks>
    /// <exception cref="ArgumentException">
    /// The tokenizer and decoder have different vocabulary sizes, or the prompt is empty and the tokenizer has no
    /// end-of-text token.
    /// </exception>
    public static IEnumerable<string> Generate(ITokenDecoder decoder, ITextTokenizer tokenizer, string prompt,
        SamplingOptions options)
    {
        ArgumentNullException.ThrowIfNull(decoder);
        ArgumentNullException.ThrowIfNull(tokenizer);
        ArgumentNullException.ThrowIfNull(prompt);
        if (tokenizer.VocabularySize != decoder.VocabularySize)
            throw new ArgumentException(
                $"The {tokenizer.Name} tokenizer has {tokenizer.VocabularySize} ids but the decoder has "
                + $"{decoder.VocabularySize} logits; expected the same vocabulary size.", nameof(tokenizer));
        IReadOnlyList<int> ids = prompt.Length > 0
            ? tokenizer.Encode(prompt)
            : tokenizer.EndOfText is { } endOfText
                ? [endOfText]
                : throw new ArgumentException(
                    $"The prompt is empty and the {tokenizer.Name} tokenizer has no end-of-text token to start from.",
                    nameof(prompt));
        var tokens = Generator.Generate(decoder, ids, options);
        return Stream(tokens, new StreamingTextDecoder(tokenizer));
    }

    private static IEnumerable<string> Stream(IEnumerable<GeneratedToken> tokens, StreamingTextDecoder text)
    {
        foreach (var token in tokens)
        {
            var piece = text.Append(token.TokenId);
            if (piece.Length > 0)
                yield return piece;
        }
        var rest = text.Flush();
        if (rest.Length > 0)
            yield return rest;
    }
}
