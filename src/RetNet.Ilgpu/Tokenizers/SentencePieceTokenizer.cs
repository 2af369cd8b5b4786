using System.Text;
using System.Text.Json;
using Microsoft.ML.Tokenizers;
using MlSentencePieceTokenizer = Microsoft.ML.Tokenizers.SentencePieceTokenizer;

namespace RetNet.Ilgpu.Tokenizers;

/// <summary>
/// A SentencePiece BPE tokenizer read from a <c>tokenizer.model</c> (Llama-2 and the models that share its tokenizer):
/// Microsoft.ML.Tokenizers' <see cref="LlamaTokenizer"/> reads the model and normalizes text (the dummy prefix, spaces
/// as ▁), and the merges follow sentencepiece's order (<c>SentencePieceBpe</c>: Microsoft.ML.Tokenizers 3.0.0 breaks
/// ties between equal-score merges differently and splits runs of spaces otherwise). Decoding is sentencepiece's:
/// spaces are the pieces' ▁, characters outside the vocabulary are byte pieces <c>&lt;0xNN&gt;</c>, the control pieces
/// (&lt;s&gt;, &lt;/s&gt;) decode to nothing, the unknown piece to " ⁇ ", and the space of the dummy prefix is dropped
/// at the start of a text.
/// </summary>
/// <remarks>
/// tests/RetNet.Ilgpu.Tests/Fixtures/SentencePiece holds what Python's sentencepiece encodes and decodes for awkward
/// texts with a model trained with Llama-2's settings (tools/sentencepiece-fixtures); the tests hold this class to it.
/// </remarks>
public sealed class SentencePieceTokenizer : ITextTokenizer
{
    /// <summary>The model's file name in a model folder.</summary>
    public const string FileName = "tokenizer.model";

    /// <summary>
    /// The files of a model folder that <see cref="FromModelFolder"/> reads besides config.json (which describes the
    /// model; a checkpoint writes its own): what a copy of the tokenizer takes.
    /// </summary>
    public static IReadOnlyList<string> FolderFiles { get; } = [FileName, "tokenizer_config.json", "generation_config.json"];

    private const char SpaceSymbol = '\u2581';

    private readonly MlSentencePieceTokenizer tokenizer;
    private readonly SentencePieceBpe bpe;
    private readonly ReadOnlyMemory<byte>[] bytes;
    private readonly ReadOnlyMemory<byte>[] bytesAtStart;

    private SentencePieceTokenizer(MlSentencePieceTokenizer tokenizer, SentencePieceBpe bpe,
        SentencePieceModelFile model, SentencePieceSpecialTokens special, IReadOnlyDictionary<string, int> added)
    {
        this.tokenizer = tokenizer;
        this.bpe = bpe;
        VocabularySize = model.Pieces.Count;
        BeginningOfText = special.BeginningOfText;
        EndOfText = special.EndOfText;
        AddBeginningOfText = special.AddBeginningOfText;
        AddEndOfText = special.AddEndOfText;
        var specialTokens = new Dictionary<string, int>(added, StringComparer.Ordinal);
        for (var id = 0; id < VocabularySize; id++)
            if (model.Pieces[id].Type == SentencePieceType.Control || id == BeginningOfText || id == EndOfText)
                specialTokens.TryAdd(model.Pieces[id].Piece, id);
        SpecialTokens = specialTokens;
        bytes = new ReadOnlyMemory<byte>[VocabularySize];
        bytesAtStart = new ReadOnlyMemory<byte>[VocabularySize];
        for (var id = 0; id < VocabularySize; id++)
        {
            var (piece, _, type) = model.Pieces[id];
            var control = type == SentencePieceType.Control || id == BeginningOfText || id == EndOfText;
            (bytes[id], bytesAtStart[id]) = (control, type) switch
            {
                (true, _) => (ReadOnlyMemory<byte>.Empty, ReadOnlyMemory<byte>.Empty),
                (_, SentencePieceType.Unknown) => Same(Encoding.UTF8.GetBytes(model.UnknownSurface)),
                (_, SentencePieceType.Byte) => Same(new[] { SentencePieceModelFile.ByteOf(piece) }),
                _ when tokenizer.AddDummyPrefix && piece.Length > 0 && piece[0] == SpaceSymbol =>
                    (Surface(piece), Surface(piece[1..])),
                _ => Same(Surface(piece)),
            };
        }
    }

    /// <inheritdoc/>
    public string Name => "sentencepiece";

    /// <inheritdoc/>
    public int VocabularySize { get; }

    /// <summary>The id that starts a text (Llama's &lt;s&gt;), if the model has one.</summary>
    public int? BeginningOfText { get; }

    /// <inheritdoc/>
    public int? EndOfText { get; }

    /// <summary>Whether <see cref="Encode"/> puts <see cref="BeginningOfText"/> first (Llama: yes).</summary>
    public bool AddBeginningOfText { get; }

    /// <summary>Whether <see cref="Encode"/> puts <see cref="EndOfText"/> last (Llama: no).</summary>
    public bool AddEndOfText { get; }

    /// <inheritdoc/>
    /// <remarks>The model's control pieces (&lt;s&gt;, &lt;/s&gt;), the pieces of the beginning- and end-of-text ids,
    /// and tokenizer_config.json's <c>added_tokens_decoder</c> entries whose ids are in the vocabulary. Their
    /// lstrip/rstrip flags are not applied.</remarks>
    public IReadOnlyDictionary<string, int> SpecialTokens { get; }

    /// <summary>
    /// The tokenizer of the model folder <paramref name="folder"/>: its <c>tokenizer.model</c>, with the ids that start
    /// and end a text from generation_config.json, else config.json (<c>bos_token_id</c>, <c>eos_token_id</c>; the
    /// first of a list), else tokenizer_config.json's <c>bos_token</c>/<c>eos_token</c> text looked up among the
    /// pieces, else the model's &lt;s&gt;/&lt;/s&gt;; whether encoding adds them from tokenizer_config.json's
    /// <c>add_bos_token</c> (default true) and <c>add_eos_token</c> (default false).
    /// </summary>
    /// <exception cref="FileNotFoundException">The folder has no tokenizer.model.</exception>
    /// <exception cref="InvalidDataException">The tokenizer.model or a config does not parse, or names an id
    /// outside the vocabulary; the message names the file and what is wrong.</exception>
    public static SentencePieceTokenizer FromModelFolder(string folder)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(folder);
        var path = Path.Combine(folder, FileName);
        if (!File.Exists(path))
            throw new FileNotFoundException($"The model folder {folder} has no {FileName}.", path);
        return Load(path, model => SentencePieceSpecialTokens.FromModelFolder(folder, model),
            size => SentencePieceSpecialTokens.AddedTokens(folder, size));
    }

    /// <summary>
    /// The tokenizer of the SentencePiece model file <paramref name="path"/> with its own &lt;s&gt; and &lt;/s&gt;,
    /// adding &lt;s&gt; before each text and nothing after it unless told otherwise (Llama's defaults).
    /// </summary>
    /// <exception cref="InvalidDataException">The file is not a SentencePiece BPE model; the message names the file
    /// and what is wrong.</exception>
    public static SentencePieceTokenizer Load(string path, bool addBeginningOfText = true, bool addEndOfText = false)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(path);
        return Load(path, model => SentencePieceSpecialTokens.OfModel(model) with
        {
            AddBeginningOfText = addBeginningOfText, AddEndOfText = addEndOfText,
        }, _ => new Dictionary<string, int>());
    }

    private static SentencePieceTokenizer Load(string path,
        Func<SentencePieceModelFile, SentencePieceSpecialTokens> special,
        Func<int, IReadOnlyDictionary<string, int>> added)
    {
        var data = File.ReadAllBytes(path);
        SentencePieceModelFile model;
        MlSentencePieceTokenizer tokenizer;
        SentencePieceBpe bpe;
        try
        {
            model = SentencePieceModelFile.Parse(data);
            using var stream = new MemoryStream(data, writable: false);
            tokenizer = LlamaTokenizer.Create(stream, addBeginOfSentence: false, addEndOfSentence: false);
            bpe = new SentencePieceBpe(model.Pieces, tokenizer.ByteFallback);
        }
        catch (Exception e) when (e is not InvalidDataException and not OutOfMemoryException)
        {
            throw new InvalidDataException($"{path} is not a SentencePiece model that Microsoft.ML.Tokenizers reads: " +
                                           e.Message, e);
        }
        catch (InvalidDataException e)
        {
            throw new InvalidDataException($"{path} is not a SentencePiece model: {e.Message}", e);
        }
        SentencePieceSpecialTokens tokens;
        IReadOnlyDictionary<string, int> addedTokens;
        try
        {
            tokens = special(model);
            tokens.Validate(model.Pieces.Count);
            addedTokens = added(model.Pieces.Count);
        }
        catch (InvalidDataException e)
        {
            throw new InvalidDataException($"The tokenizer of {path}: {e.Message}", e);
        }
        return new SentencePieceTokenizer(tokenizer, bpe, model, tokens, addedTokens);
    }

    /// <inheritdoc/>
    public IReadOnlyList<int> Encode(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var ids = new List<int>(text.Length + 2);
        if (AddBeginningOfText && BeginningOfText is { } begin)
            ids.Add(begin);
        // sentencepiece adds no dummy prefix to an empty text.
        if (text.Length > 0)
            bpe.Encode(tokenizer.Normalizer?.Normalize(text) ?? text, ids);
        if (AddEndOfText && EndOfText is { } end)
            ids.Add(end);
        return ids;
    }

    /// <inheritdoc/>
    /// <remarks>Each text is encoded as sentencepiece encodes a whole text, dummy prefix included: what
    /// transformers' Llama tokenizers (legacy mode) do with the text between two special tokens.</remarks>
    public IReadOnlyList<int> EncodeWithoutSpecialTokens(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var ids = new List<int>(text.Length + 1);
        if (text.Length > 0)
            bpe.Encode(tokenizer.Normalizer?.Normalize(text) ?? text, ids);
        return ids;
    }

    /// <inheritdoc/>
    public string Decode(IReadOnlyList<int> ids) => TextBytes.Decode(this, ids);

    /// <inheritdoc/>
    public ReadOnlyMemory<byte> TokenBytes(int id) =>
        id >= 0 && id < VocabularySize
            ? bytes[id]
            : throw new ArgumentOutOfRangeException(nameof(id), id, $"Token id {id} is outside [0, {VocabularySize}).");

    /// <inheritdoc/>
    /// <remarks>sentencepiece drops the ▁ that starts the first piece of a text: the dummy prefix encoding added.</remarks>
    public ReadOnlyMemory<byte> TokenBytesAtStart(int id) =>
        id >= 0 && id < VocabularySize
            ? bytesAtStart[id]
            : throw new ArgumentOutOfRangeException(nameof(id), id, $"Token id {id} is outside [0, {VocabularySize}).");

    private static (ReadOnlyMemory<byte>, ReadOnlyMemory<byte>) Same(byte[] value) => (value, value);

    private static byte[] Surface(string piece) => Encoding.UTF8.GetBytes(piece.Replace(SpaceSymbol, ' '));
}

/// <summary>
/// The ids that start and end a text and whether encoding adds them, as a Hugging Face model folder states them.
/// </summary>
/// <param name="BeginningOfText">The id of &lt;s&gt;, if any.</param>
/// <param name="EndOfText">The id of &lt;/s&gt;, if any (generation stops there).</param>
/// <param name="AddBeginningOfText">Whether encoding puts <paramref name="BeginningOfText"/> first.</param>
/// <param name="AddEndOfText">Whether encoding puts <paramref name="EndOfText"/> last.</param>
internal sealed record SentencePieceSpecialTokens(int? BeginningOfText, int? EndOfText, bool AddBeginningOfText,
    bool AddEndOfText)
{
    /// <summary>
    /// The folder's settings over <paramref name="model"/>'s own: each id from generation_config.json, else
    /// config.json (<c>bos_token_id</c>, <c>eos_token_id</c>; the first of a list), else tokenizer_config.json's
    /// <c>bos_token</c>/<c>eos_token</c> text looked up in the vocabulary, else the model's &lt;s&gt;/&lt;/s&gt;;
    /// tokenizer_config.json's <c>add_bos_token</c> (default true) and <c>add_eos_token</c> (default false).
    /// </summary>
    /// <exception cref="InvalidDataException">A config is not JSON or a field has the wrong type; the message names
    /// the file and the field.</exception>
    internal static SentencePieceSpecialTokens FromModelFolder(string folder, SentencePieceModelFile model)
    {
        var own = OfModel(model);
        var generation = ReadConfig(folder, "generation_config.json");
        var config = ReadConfig(folder, "config.json");
        var tokenizer = ReadConfig(folder, "tokenizer_config.json");
        int? Id(string idField, string textField, int? fallback) =>
            generation?.Id(idField) ?? config?.Id(idField) ?? tokenizer?.TokenId(textField, model) ?? fallback;
        return new SentencePieceSpecialTokens(
            Id("bos_token_id", "bos_token", own.BeginningOfText),
            Id("eos_token_id", "eos_token", own.EndOfText),
            tokenizer?.Flag("add_bos_token") ?? true,
            tokenizer?.Flag("add_eos_token") ?? false);
    }

    /// <summary>The model's pieces &lt;s&gt; and &lt;/s&gt;, added as Llama adds them.</summary>
    internal static SentencePieceSpecialTokens OfModel(SentencePieceModelFile model)
    {
        return new SentencePieceSpecialTokens(model.Find("<s>"), model.Find("</s>"), AddBeginningOfText: true,
            AddEndOfText: false);
    }

    internal void Validate(int vocabularySize)
    {
        if (BeginningOfText is < 0 || BeginningOfText >= vocabularySize || EndOfText is < 0 ||
            EndOfText >= vocabularySize)
            throw new InvalidDataException($"The text's start id {BeginningOfText} or end id {EndOfText} is outside " +
                                           $"the vocabulary [0, {vocabularySize}).");
        if (AddBeginningOfText && BeginningOfText is null)
            throw new InvalidDataException("add_bos_token is true but the model has no <s> and no config names a " +
                                           "bos_token_id.");
        if (AddEndOfText && EndOfText is null)
            throw new InvalidDataException("add_eos_token is true but the model has no </s> and no config names an " +
                                           "eos_token_id.");
    }

    /// <summary>tokenizer_config.json's <c>added_tokens_decoder</c> ({"id": {"content": text, …}}): each text with
    /// its id, those outside the vocabulary of <paramref name="vocabularySize"/> left out.</summary>
    /// <exception cref="InvalidDataException">An entry is malformed.</exception>
    internal static IReadOnlyDictionary<string, int> AddedTokens(string folder, int vocabularySize)
    {
        var tokens = new Dictionary<string, int>(StringComparer.Ordinal);
        var config = ReadConfig(folder, "tokenizer_config.json");
        if (config is null || !config.Root.TryGetProperty("added_tokens_decoder", out var decoder) ||
            decoder.ValueKind != JsonValueKind.Object)
            return tokens;
        foreach (var entry in decoder.EnumerateObject())
        {
            if (!int.TryParse(entry.Name, out var id) || entry.Value.ValueKind != JsonValueKind.Object ||
                !entry.Value.TryGetProperty("content", out var content) || content.ValueKind != JsonValueKind.String)
                throw new InvalidDataException($"{config.Path}: added_tokens_decoder entry '{entry.Name}' is not " +
                                               "an id with a {\"content\": text} object.");
            if (id >= 0 && id < vocabularySize && content.GetString()!.Length > 0)
                tokens[content.GetString()!] = id;
        }
        return tokens;
    }

    private static Config? ReadConfig(string folder, string name)
    {
        var path = Path.Combine(folder, name);
        if (!File.Exists(path))
            return null;
        try
        {
            using var document = JsonDocument.Parse(File.ReadAllBytes(path));
            return document.RootElement.ValueKind == JsonValueKind.Object
                ? new Config(path, document.RootElement.Clone())
                : throw new InvalidDataException($"{path} is not a JSON object.");
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{path} is not JSON: {e.Message}", e);
        }
    }

    private sealed record Config(string Path, JsonElement Root)
    {
        public int? Id(string field)
        {
            if (!Root.TryGetProperty(field, out var value) || value.ValueKind == JsonValueKind.Null)
                return null;
            if (value.ValueKind == JsonValueKind.Array && value.GetArrayLength() > 0)
                value = value[0];
            return value.ValueKind == JsonValueKind.Number && value.TryGetInt32(out var id)
                ? id
                : throw new InvalidDataException($"{Path}: {field} is {value}; expected an integer id or a list of them.");
        }

        public bool? Flag(string field) =>
            !Root.TryGetProperty(field, out var value) || value.ValueKind == JsonValueKind.Null
                ? null
                : value.ValueKind is JsonValueKind.True or JsonValueKind.False
                    ? value.GetBoolean()
                    : throw new InvalidDataException($"{Path}: {field} is {value}; expected true or false.");

        // bos_token / eos_token: the token's text, or an object whose "content" is the text (an AddedToken).
        public int? TokenId(string field, SentencePieceModelFile model)
        {
            if (!Root.TryGetProperty(field, out var value) || value.ValueKind == JsonValueKind.Null)
                return null;
            if (value.ValueKind == JsonValueKind.Object && value.TryGetProperty("content", out var content))
                value = content;
            if (value.ValueKind != JsonValueKind.String)
                throw new InvalidDataException($"{Path}: {field} is {value}; expected the token's text.");
            var text = value.GetString()!;
            return model.Find(text)
                ?? throw new InvalidDataException($"{Path}: {field} is '{text}', which is not a piece of the model.");
        }
    }
}
