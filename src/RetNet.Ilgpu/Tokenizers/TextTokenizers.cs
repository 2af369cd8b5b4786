using System.Text.Json.Serialization;

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

    /// <summary>The model folder's SentencePiece tokenizer.model (<see cref="SentencePieceTokenizer"/>).</summary>
    [JsonStringEnumMemberName("sentencepiece")]
    SentencePiece,
}

/// <summary>The tokenizers by name, for configuration files and the command line.</summary>
public static class TextTokenizers
{
    /// <summary>The names <see cref="Create"/> accepts: the built-in tokenizers, which need no file.</summary>
    public static IReadOnlyList<string> Names { get; } = ["byte", "gpt2"];

    /// <summary>The built-in tokenizer called <paramref name="name"/> (case-insensitive): "byte" or "gpt2".</summary>
    /// <exception cref="ArgumentException">The name is not one of <see cref="Names"/> ("sentencepiece" needs a
    /// model folder: <see cref="FromModelFolder"/>).</exception>
    public static ITextTokenizer Create(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        return name.ToLowerInvariant() switch
        {
            "byte" => ByteTokenizer.Instance,
            "gpt2" => Gpt2Tokenizer.Instance,
            "sentencepiece" => throw new ArgumentException(
                $"The tokenizer 'sentencepiece' is read from a model folder's {SentencePieceTokenizer.FileName} " +
                $"(TextTokenizers.FromModelFolder); the built-in ones are: {string.Join(", ", Names)}.", nameof(name)),
            _ => throw new ArgumentException(
                $"Unknown tokenizer '{name}'; expected one of: {string.Join(", ", Names)}.", nameof(name)),
        };
    }

    /// <summary>
    /// The tokenizer that came with the model folder <paramref name="folder"/>: its SentencePiece
    /// <c>tokenizer.model</c> (<see cref="SentencePieceTokenizer.FromModelFolder"/>), or null when it has none.
    /// </summary>
    /// <exception cref="InvalidDataException">The folder's tokenizer.model or one of its configs does not parse; the
    /// message names the file and what is wrong.</exception>
    public static ITextTokenizer? FromModelFolder(string folder)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(folder);
        return File.Exists(Path.Combine(folder, SentencePieceTokenizer.FileName))
            ? SentencePieceTokenizer.FromModelFolder(folder)
            : null;
    }

    /// <summary>
    /// The tokenizer for the model in <paramref name="folder"/> with <paramref name="vocabularySize"/> ids: for
    /// <see cref="TokenizerKind.Auto"/> the folder's own (<see cref="FromModelFolder"/>) if it has one, else as
    /// <see cref="ForVocabulary"/>; for <see cref="TokenizerKind.SentencePiece"/> the folder's tokenizer.model, which
    /// must be there; the built-in one <paramref name="kind"/> names otherwise.
    /// </summary>
    /// <exception cref="ArgumentException">The tokenizer's vocabulary differs from the model's, or
    /// <see cref="TokenizerKind.SentencePiece"/> is asked of a folder without a tokenizer.model.</exception>
    /// <exception cref="InvalidDataException">The folder's tokenizer.model or one of its configs does not parse.</exception>
    public static ITextTokenizer? ForModel(TokenizerKind kind, string folder, int vocabularySize)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(folder);
        if (kind is not (TokenizerKind.Auto or TokenizerKind.SentencePiece))
            return ForVocabulary(kind, vocabularySize);
        var own = FromModelFolder(folder);
        if (own is null)
            return kind == TokenizerKind.Auto
                ? ForVocabulary(kind, vocabularySize)
                : throw new ArgumentException(
                    $"The sentencepiece tokenizer is read from the model folder's {SentencePieceTokenizer.FileName}, " +
                    $"and {folder} has none.", nameof(folder));
        return RequireSize(own, vocabularySize, nameof(folder));
    }

    /// <summary>Parses "auto", "byte", "gpt2" or "sentencepiece" (case-insensitive).</summary>
    /// <exception cref="ArgumentException">Any other text.</exception>
    public static TokenizerKind ParseKind(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        return name.Trim().ToLowerInvariant() switch
        {
            "auto" => TokenizerKind.Auto,
            "byte" => TokenizerKind.Byte,
            "gpt2" => TokenizerKind.Gpt2,
            "sentencepiece" => TokenizerKind.SentencePiece,
            _ => throw new ArgumentException(
                $"Unknown tokenizer '{name}'; expected auto, {string.Join(", ", Names)} or sentencepiece.", nameof(name)),
        };
    }

    /// <summary>
    /// The tokenizer for a model of <paramref name="vocabularySize"/> ids: the one of <paramref name="kind"/>, or for
    /// <see cref="TokenizerKind.Auto"/> the built-in one with exactly that vocabulary (null when none has it: token
    /// files need none).
    /// </summary>
    /// <exception cref="ArgumentException">The named tokenizer's vocabulary differs from the model's, or the kind is
    /// <see cref="TokenizerKind.SentencePiece"/>, which needs a model folder (<see cref="ForModel"/>).</exception>
    public static ITextTokenizer? ForVocabulary(TokenizerKind kind, int vocabularySize)
    {
        if (kind == TokenizerKind.Auto)
            return Names.Select(Create).FirstOrDefault(t => t.VocabularySize == vocabularySize);
        ITextTokenizer tokenizer = kind switch
        {
            TokenizerKind.Byte => ByteTokenizer.Instance,
            TokenizerKind.Gpt2 => Gpt2Tokenizer.Instance,
            TokenizerKind.SentencePiece => throw new ArgumentException(
                $"The sentencepiece tokenizer is read from a model folder's {SentencePieceTokenizer.FileName}; " +
                "this model has no folder to read it from.", nameof(kind)),
            _ => throw new ArgumentOutOfRangeException(nameof(kind), kind, "Expected Auto, Byte, Gpt2 or SentencePiece."),
        };
        return RequireSize(tokenizer, vocabularySize, nameof(kind));
    }

    private static ITextTokenizer RequireSize(ITextTokenizer tokenizer, int vocabularySize, string parameter)
    {
        if (tokenizer.VocabularySize != vocabularySize)
            throw new ArgumentException(
                $"The {tokenizer.Name} tokenizer has {tokenizer.VocabularySize} ids but the model's vocabulary has " +
                $"{vocabularySize}; they must be equal.", parameter);
        return tokenizer;
    }
}
