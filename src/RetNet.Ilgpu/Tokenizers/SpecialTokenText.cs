namespace RetNet.Ilgpu.Tokenizers;

/// <summary>
/// Encoding text that writes special tokens as text, as a rendered chat template does ("&lt;s&gt;[INST] …",
/// "&lt;|im_start|&gt;user…&lt;|im_end|&gt;"): transformers tokenizes such a prompt with
/// <c>add_special_tokens=False</c>, its special and added tokens matched as whole strings first. So here: the text is
/// split at every occurrence of a <see cref="ITextTokenizer.SpecialTokens"/> text (leftmost first, the longest where
/// several start at one place), each becomes its id, and the text between them is encoded with
/// <see cref="ITextTokenizer.EncodeWithoutSpecialTokens"/>; no beginning-of-text id is added (the template writes
/// its own).
/// </summary>
public static class SpecialTokenText
{
    /// <summary>No special tokens.</summary>
    public static IReadOnlyDictionary<string, int> None { get; } = new Dictionary<string, int>();

    /// <summary>The ids of <paramref name="text"/>, a rendered chat prompt, with its special-token texts as their ids.
    /// </summary>
    public static IReadOnlyList<int> EncodeRendered(this ITextTokenizer tokenizer, string text)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        ArgumentNullException.ThrowIfNull(text);
        var special = tokenizer.SpecialTokens;
        var ids = new List<int>(text.Length / 2 + 1);
        if (special.Count == 0)
        {
            ids.AddRange(tokenizer.EncodeWithoutSpecialTokens(text));
            return ids;
        }
        var byLength = special.Keys.Where(k => k.Length > 0).OrderByDescending(k => k.Length).ToArray();
        var firsts = byLength.Select(k => k[0]).ToHashSet();
        var start = 0;
        for (var at = 0; at < text.Length;)
        {
            var match = firsts.Contains(text[at])
                ? byLength.FirstOrDefault(k => string.CompareOrdinal(text, at, k, 0, k.Length) == 0)
                : null;
            if (match is null)
            {
                at++;
                continue;
            }
            if (at > start)
                ids.AddRange(tokenizer.EncodeWithoutSpecialTokens(text[start..at]));
            ids.Add(special[match]);
            at += match.Length;
            start = at;
        }
        if (start < text.Length)
            ids.AddRange(tokenizer.EncodeWithoutSpecialTokens(text[start..]));
        return ids;
    }
}
