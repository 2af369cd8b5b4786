using RetNet.Ilgpu.Tokenizers;

namespace RetNet.Ilgpu.Training.Data;

/// <summary>
/// Training and evaluation on packed documents: windows cut from a token stream in which an end-of-text token opens
/// every document (llm.c's .bin files put GPT-2's &lt;|endoftext|&gt; before each document; text files read in a row
/// are joined by the tokenizer's end-of-text). A window's boundaries become the model's <c>cuSeqlens</c>
/// (<see cref="Retention.PackedSequences"/>), so no token attends to, or is decayed from, another document.
/// </summary>
public static class DocumentPacking
{
    /// <summary>GPT-2's &lt;|endoftext|&gt;, the separator of llm.c's token files.</summary>
    public const int Gpt2EndOfText = 50256;

    /// <summary>
    /// The offsets into the B·T input tokens of windows [B, T + 1] (inputs are tokens 0 … T − 1 of each row): a
    /// document starts at each row's first token and at every input token equal to <paramref name="separator"/>, which
    /// belongs to the document it opens.
    /// </summary>
    /// <exception cref="ArgumentException">A window holds fewer than 2 tokens.</exception>
    public static int[] Offsets(int[,] windows, int separator)
    {
        ArgumentNullException.ThrowIfNull(windows);
        int batch = windows.GetLength(0), seqLen = windows.GetLength(1) - 1;
        if (batch < 1 || seqLen < 1)
            throw new ArgumentException(
                $"Argument 'windows' is [{batch}, {seqLen + 1}]; expected at least one window of ≥ 2 tokens.",
                nameof(windows));
        var offsets = new List<int>(batch + 1);
        for (var b = 0; b < batch; b++)
        {
            offsets.Add(b * seqLen);
            for (var t = 1; t < seqLen; t++)
                if (windows[b, t] == separator)
                    offsets.Add(b * seqLen + t);
        }
        offsets.Add(batch * seqLen);
        return [.. offsets];
    }

    /// <summary>
    /// The separator of <paramref name="data"/>: for text, the end-of-text of the tokenizer that reads it; for llm.c
    /// token files (any .bin among the files), GPT-2's <see cref="Gpt2EndOfText"/>, which must be inside the
    /// vocabulary. The data must contain it somewhere.
    /// </summary>
    /// <exception cref="ArgumentException">No separator is known for this data (text read with a tokenizer without
    /// end-of-text, such as the byte tokenizer; token files with a vocabulary below 50,257), or the data holds none:
    /// packing it would be the same as not packing, which is most likely a mistake; the message says which.</exception>
    public static int Separator(TokenDataset data, ITextTokenizer? tokenizer, int vocabularySize)
    {
        ArgumentNullException.ThrowIfNull(data);
        int separator;
        if (!data.IsText && vocabularySize > Gpt2EndOfText)
            separator = Gpt2EndOfText;
        else if (data.IsText && tokenizer?.EndOfText is { } endOfText)
            separator = endOfText;
        else
            throw new ArgumentException(
                "Packing documents (--pack-documents) needs an end-of-text token to find where documents start, and " +
                (data.IsText
                    ? $"tokenizer '{tokenizer?.Name ?? "(none)"}' has none"
                    : $"token files with a vocabulary of {vocabularySize} have none (GPT-2's {Gpt2EndOfText} is " +
                      "outside it)") +
                "; expected GPT-2 token files, or text read with a tokenizer that has one (gpt2).", nameof(tokenizer));
        if (!Contains(data, separator))
            throw new ArgumentException(
                $"Packing documents (--pack-documents): the data ({string.Join(", ", data.Paths)}, " +
                $"{data.Count} tokens) " +
                $"holds no end-of-text token (id {separator}), so it has no document boundaries; expected documents " +
                "separated by it (or train without --pack-documents).", nameof(data));
        return separator;
    }

    private static bool Contains(TokenDataset data, int id)
    {
        var buffer = new int[1 << 16];
        for (long start = 0; start < data.Count; start += buffer.Length)
        {
            var span = buffer.AsSpan(0, (int)Math.Min(buffer.Length, data.Count - start));
            data.CopyTo(start, span);
            if (span.Contains(id))
                return true;
        }
        return false;
    }
}
