using RetNet.Ilgpu.Tokenizers;

namespace RetNet.Ilgpu.Generation;

/// <summary>Text in, text out: encodes a prompt, generates, and streams the continuation as whole characters.</summary>
public static class TextGenerator
{
    /// <summary>
    /// Continues <paramref name="prompt"/>, yielding text as soon as generated tokens complete characters (a piece
    /// may hold several tokens' text, and a token that ends mid-character yields nothing until it completes); the
    /// last piece flushes what is left. The prompt itself is not repeated. Lazy, like
    /// <see cref="Generator.Generate(ITokenDecoder, IReadOnlyList{int}, SamplingOptions, CancellationToken)"/>;
    /// arguments are validated on the call. Once <paramref name="cancellationToken"/> is cancelled, generation stops
    /// at the next step boundary: the text of the tokens generated so far is flushed as a last piece, then the
    /// enumeration throws <see cref="OperationCanceledException"/>.
    /// </summary>
    /// <remarks>
    /// An empty prompt starts from the ids the tokenizer encodes it to (SentencePiece's &lt;s&gt;), or where those are
    /// none from its <see cref="ITextTokenizer.EndOfText"/> token (GPT-2's convention for unconditional text), and
    /// the generated text is then the start of a text (SentencePiece drops the space its dummy prefix added). Stop tokens are only those in <paramref name="options"/>: pass
    /// <see cref="ITextTokenizer.EndOfText"/> there to stop at the end of a text.
    /// </remarks>
    /// <exception cref="ArgumentException">
    /// The tokenizer and decoder have different vocabulary sizes, or the prompt is empty and the tokenizer has no
    /// end-of-text token.
    /// </exception>
    /// <exception cref="OperationCanceledException">Thrown by the enumeration, after the flushed text, once
    /// <paramref name="cancellationToken"/> is cancelled.</exception>
    public static IEnumerable<string> Generate(ITokenDecoder decoder, ITextTokenizer tokenizer, string prompt,
        SamplingOptions options, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(decoder);
        ArgumentNullException.ThrowIfNull(tokenizer);
        ArgumentNullException.ThrowIfNull(prompt);
        if (tokenizer.VocabularySize != decoder.VocabularySize)
            throw new ArgumentException(
                $"The {tokenizer.Name} tokenizer has {tokenizer.VocabularySize} ids but the decoder has "
                + $"{decoder.VocabularySize} logits; expected the same vocabulary size.", nameof(tokenizer));
        var ids = tokenizer.Encode(prompt);
        if (ids.Count == 0)
            ids = tokenizer.EndOfText is { } endOfText
                ? [endOfText]
                : throw new ArgumentException(
                    $"The prompt is empty and the {tokenizer.Name} tokenizer has no end-of-text token to start from.",
                    nameof(prompt));
        var tokens = Generator.Generate(decoder, ids, options, cancellationToken);
        return Stream(tokens, new StreamingTextDecoder(tokenizer, startOfText: prompt.Length == 0));
    }

    private static IEnumerable<string> Stream(IEnumerable<GeneratedToken> tokens, StreamingTextDecoder text)
    {
        OperationCanceledException? cancelled = null;
        using (var enumerator = tokens.GetEnumerator())
        {
            while (true)
            {
                // An iterator cannot yield inside a catch: remember the cancellation, flush, then rethrow it.
                try
                {
                    if (!enumerator.MoveNext())
                        break;
                }
                catch (OperationCanceledException e)
                {
                    cancelled = e;
                    break;
                }
                var piece = text.Append(enumerator.Current.TokenId);
                if (piece.Length > 0)
                    yield return piece;
            }
        }
        var rest = text.Flush();
        if (rest.Length > 0)
            yield return rest;
        if (cancelled is not null)
            System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(cancelled);
    }
}
