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
}
