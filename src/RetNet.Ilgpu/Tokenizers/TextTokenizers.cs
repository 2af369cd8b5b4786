namespace RetNet.Ilgpu.Tokenizers;

/// <summary>Which tokenizer turns text data into ids.</summary>
public enum TokenizerKind
{
    /// <summary>The built-in tokenizer whose vocabulary has the model's size (none: token files only).</summary>
    Auto,

    /// <summary>UTF-8 bytes, 256 ids (<see cref="ByteTokenizer"/>).</summary>
    Byte,

    /// <summary>GPT-2's byte-level BPE, 50,257 ids (<see cref="Gpt2Tokenizer"/>).</summary>
    Gpt2,
}

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

    /// <summary>Parses "auto", "byte" or "gpt2" (case-insensitive).</summary>
    /// <exception cref="ArgumentException">Any other text.</exception>
    public static TokenizerKind ParseKind(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        return name.Trim().ToLowerInvariant() switch
        {
            "auto" => TokenizerKind.Auto,
            "byte" => TokenizerKind.Byte,
            "gpt2" => TokenizerKind.Gpt2,
            _ => throw new ArgumentException(
                $"Unknown tokenizer '{name}'; expected auto or one of: {string.Join(", ", Names)}.", nameof(name)),
        };
    }

    /// <summary>
    /// The tokenizer for a model of <paramref name="vocabularySize"/> ids: the one of <paramref name="kind"/>, or for
    /// <see cref="TokenizerKind.Auto"/> the built-in one with exactly that vocabulary (null when none has it: token
    /// files need none).
    /// </summary>
    /// <exception cref="ArgumentException">The named tokenizer's vocabulary differs from the model's.</exception>
    public static ITextTokenizer? ForVocabulary(TokenizerKind kind, int vocabularySize)
    {
        if (kind == TokenizerKind.Auto)
            return Names.Select(Create).FirstOrDefault(t => t.VocabularySize == vocabularySize);
        ITextTokenizer tokenizer = kind switch
        {
            TokenizerKind.Byte => ByteTokenizer.Instance,
            TokenizerKind.Gpt2 => Gpt2Tokenizer.Instance,
            _ => throw new ArgumentOutOfRangeException(nameof(kind), kind, "Expected Auto, Byte or Gpt2."),
        };
        if (tokenizer.VocabularySize != vocabularySize)
            throw new ArgumentException(
                $"The {tokenizer.Name} tokenizer has {tokenizer.VocabularySize} ids but the model's vocabulary has " +
                $"{vocabularySize}; they must be equal.", nameof(kind));
        return tokenizer;
    }
}
