namespace RetNet.Ilgpu.Tokenizers;

/// <summary>The tokenizers by name, for configuration files and the command line.</summary>
public static class TextTokenizers
{
    /// <summary>The names <see cref="Create"/> accepts.</summary>
    public static IReadOnlyList<string> Names { get; } = ["byte", "gpt2"];

    /// <summary>The tokenizer called <paramref name="name"/> (case-insensitive): "byte" or "gpt2".</summary>
    /// <exception cref="ArgumentException">The name is not one of <see cref="Names"/>.</exception>
    public static ITextTokenizer Create(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        return name.ToLowerInvariant() switch
        {
            "byte" => ByteTokenizer.Instance,
            "gpt2" => Gpt2Tokenizer.Instance,
            _ => throw new ArgumentException(
                $"Unknown tokenizer '{name}'; expected one of: {string.Join(", ", Names)}.", nameof(name)),
        };
    }

    /// <summary>
    /// The tokenizer for a model of <paramref name="vocabularySize"/> ids: the one called <paramref name="name"/>, or
    /// for "auto" the built-in one with exactly that vocabulary (null when none has it: token files need none).
    /// </summary>
    /// <exception cref="ArgumentException">The name is unknown, or the named tokenizer's vocabulary differs from the
    /// model's.</exception>
    public static ITextTokenizer? ForVocabulary(string name, int vocabularySize)
    {
        ArgumentNullException.ThrowIfNull(name);
        if (name.Equals("auto", StringComparison.OrdinalIgnoreCase))
            return Names.Select(Create).FirstOrDefault(t => t.VocabularySize == vocabularySize);
        var tokenizer = Create(name);
        if (tokenizer.VocabularySize != vocabularySize)
            throw new ArgumentException(
                $"--tokenizer {tokenizer.Name} has {tokenizer.VocabularySize} ids but the model's vocabulary has " +
                $"{vocabularySize}; they must be equal.", nameof(name));
        return tokenizer;
    }
}
