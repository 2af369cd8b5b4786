using System.Buffers.Binary;
using RetNet.Ilgpu.IO;
using RetNet.Ilgpu.Tokenizers;

namespace RetNet.Ilgpu.Training.Data;

/// <summary>
/// A read-only sequence of token ids for training or evaluation, concatenated from one or more files in order.
/// </summary>
/// <remarks>
/// <para>
/// A file whose name ends in <c>.bin</c> (any case) is an llm.c token file: a header of 256 little-endian int32
/// (<see cref="BinMagic"/>, <see cref="BinVersion"/>, the token count, the rest unused) followed by that many
/// little-endian uint16 ids. It is memory-mapped, never read whole, and scanned once when opened so that an id outside
/// the vocabulary is reported then, with its position.
/// </para>
/// <para>
/// Any other file is UTF-8 text, tokenized when opened and held in memory (2 bytes per id when the vocabulary fits in
/// uint16). A file is one document; where the tokenizer has an end-of-text id, that id is placed between two adjacent
/// text files (not before the first, not after the last, and not next to a .bin file, whose documents carry their own
/// delimiters). A leading UTF-8 byte-order mark is skipped. Large files are tokenized in chunks of a few MiB, each
/// ending at a line break (or failing that a space) before a printable ASCII character, where GPT-2's pre-tokenizer
/// always starts a new piece, so the ids equal those of the whole file tokenized at once; only a chunk with no such
/// place (a few MiB without a space before a printable character) is split elsewhere, which may change the ids next
/// to that split.
/// </para>
/// <para>Reads (<see cref="CopyTo"/>, the indexer) may run on several threads at once.</para>
/// </remarks>
public sealed class TokenDataset : IDisposable
{
    /// <summary>The int32 at the start of an llm.c token file.</summary>
    public const int BinMagic = 20240520;

    /// <summary>The llm.c token file version this reads and writes: uint16 ids.</summary>
    public const int BinVersion = 1;

    /// <summary>The size of an llm.c token file's header in bytes (256 int32).</summary>
    public const int BinHeaderBytes = 1024;

    private readonly TokenSource[] sources;

    // starts[i] is the dataset index of sources[i]'s first id; starts[^1] is Count.
    private readonly long[] starts;
    private bool disposed;

    private TokenDataset(TokenSource[] sources, IReadOnlyList<string> paths, int vocabularySize, bool isText, long textBytes)
    {
        this.sources = sources;
        starts = new long[sources.Length + 1];
        for (var i = 0; i < sources.Length; i++)
            starts[i + 1] = starts[i] + sources[i].Count;
        Paths = paths;
        VocabularySize = vocabularySize;
        IsText = isText;
        TextBytes = textBytes;
    }

    /// <summary>The number of ids.</summary>
    public long Count => starts[^1];

    /// <summary>The files, as given to <see cref="Open"/>, in order (none for a dataset made in memory).</summary>
    public IReadOnlyList<string> Paths { get; }

    /// <summary>The model's vocabulary size V the ids were checked against: every id is in [0, V).</summary>
    public int VocabularySize { get; }

    /// <summary>
    /// True when every file is text, so that <see cref="TextBytes"/> accounts for every id (bits per byte is then
    /// defined over the whole dataset); false when any file is an llm.c token file.
    /// </summary>
    public bool IsText { get; }

    /// <summary>
    /// The UTF-8 bytes of the text files (without byte-order marks or inserted end-of-text ids), the denominator of
    /// bits per byte; 0 when no file is text.
    /// </summary>
    public long TextBytes { get; }

    /// <summary>The id at <paramref name="index"/>.</summary>
    /// <exception cref="ArgumentOutOfRangeException">The index is outside [0, <see cref="Count"/>).</exception>
    public int this[long index]
    {
        get
        {
            if ((ulong)index >= (ulong)Count)
                throw new ArgumentOutOfRangeException(nameof(index), index, $"Index {index} is outside [0, {Count}).");
            Span<int> one = stackalloc int[1];
            CopyTo(index, one);
            return one[0];
        }
    }

    /// <summary>
    /// Opens <paramref name="paths"/> as one dataset: llm.c token files (<c>.bin</c>) and UTF-8 text files,
    /// concatenated in order (see the remarks on <see cref="TokenDataset"/>).
    /// </summary>
    /// <param name="paths">The files, at least one.</param>
    /// <param name="tokenizer">Tokenizes the text files; may be null when every file is a .bin file.</param>
    /// <param name="vocabularySize">The model's V: every id must be below it, and the tokenizer's V must not exceed it.</param>
    /// <exception cref="ArgumentException">
    /// No paths, a blank path, a text file without a tokenizer, or a tokenizer whose vocabulary exceeds V.
    /// </exception>
    /// <exception cref="FileNotFoundException">A file does not exist.</exception>
    /// <exception cref="InvalidDataException">
    /// A malformed or empty token file, an id outside the vocabulary, an empty or non-UTF-8 text file.
    /// </exception>
    public static TokenDataset Open(IReadOnlyList<string> paths, ITextTokenizer? tokenizer, int vocabularySize) =>
        OpenChunked(paths, tokenizer, vocabularySize, TextTokenSource.DefaultChunkBytes);

    /// <summary><see cref="Open"/> with a chosen text chunk size, so tests can split small files into many chunks.</summary>
    internal static TokenDataset OpenChunked(IReadOnlyList<string> paths, ITextTokenizer? tokenizer, int vocabularySize, int chunkBytes)
    {
        ArgumentNullException.ThrowIfNull(paths);
        ArgumentOutOfRangeException.ThrowIfLessThan(vocabularySize, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(chunkBytes, 16);
        if (paths.Count == 0)
            throw new ArgumentException("A dataset needs at least one file; none was given.", nameof(paths));
        if (tokenizer is not null && tokenizer.VocabularySize > vocabularySize)
            throw new ArgumentException(
                $"Tokenizer '{tokenizer.Name}' has {tokenizer.VocabularySize} ids, more than the model's vocabulary of " +
                $"{vocabularySize}.", nameof(tokenizer));
        for (var i = 0; i < paths.Count; i++)
        {
            if (string.IsNullOrWhiteSpace(paths[i]))
                throw new ArgumentException($"Dataset path {i} is blank.", nameof(paths));
            if (tokenizer is null && !IsTokenFile(paths[i]))
                throw new ArgumentException(
                    $"'{paths[i]}' is a text file (its name does not end in .bin), and no tokenizer was given to " +
                    "tokenize it.", nameof(tokenizer));
            if (!File.Exists(paths[i]))
                throw new FileNotFoundException($"Dataset file '{paths[i]}' does not exist.", paths[i]);
        }

        var sources = new List<TokenSource>();
        try
        {
            long textBytes = 0;
            var previousWasText = false;
            foreach (var path in paths)
            {
                if (IsTokenFile(path))
                {
                    sources.Add(BinTokenSource.Open(path, vocabularySize));
                    previousWasText = false;
                    continue;
                }
                if (previousWasText && tokenizer!.EndOfText is { } endOfText)
                    sources.Add(new SingleTokenSource(endOfText));
                var text = TextTokenSource.Open(path, tokenizer!, chunkBytes);
                sources.Add(text);
                textBytes += text.TextBytes;
                previousWasText = true;
            }
            var isText = paths.All(p => !IsTokenFile(p));
            return new TokenDataset([.. sources], [.. paths], vocabularySize, isText, textBytes);
        }
        catch
        {
            foreach (var source in sources)
                source.Dispose();
            throw;
        }
    }

    /// <summary>A dataset of ids already in memory (copied, compactly), e.g. to train or evaluate without files.</summary>
    /// <param name="ids">The ids, at least one, each in [0, <paramref name="vocabularySize"/>).</param>
    /// <param name="vocabularySize">The model's V.</param>
    /// <exception cref="ArgumentException">No ids, or an id outside [0, V) (the message gives its position).</exception>
    public static TokenDataset FromIds(IReadOnlyList<int> ids, int vocabularySize)
    {
        ArgumentNullException.ThrowIfNull(ids);
        ArgumentOutOfRangeException.ThrowIfLessThan(vocabularySize, 1);
        if (ids.Count == 0)
            throw new ArgumentException("Argument 'ids' is empty; a dataset needs at least one id.", nameof(ids));
        for (var i = 0; i < ids.Count; i++)
            if ((uint)ids[i] >= (uint)vocabularySize)
                throw new ArgumentException(
                    $"Argument 'ids' has id {ids[i]} at position {i}; expected an id in [0, {vocabularySize}).",
                    nameof(ids));
        var compact = new CompactIds(vocabularySize);
        compact.Append(ids);
        return new TokenDataset([new MemoryTokenSource(compact)], [], vocabularySize, isText: false, textBytes: 0);
    }

    /// <summary>A dataset of <paramref name="text"/> tokenized by <paramref name="tokenizer"/> (a text dataset: bits per
    /// byte are defined over it).</summary>
    /// <exception cref="ArgumentException">The text holds no tokens, or the tokenizer's vocabulary exceeds V.</exception>
    public static TokenDataset FromText(string text, ITextTokenizer tokenizer, int vocabularySize)
    {
        ArgumentNullException.ThrowIfNull(text);
        ArgumentNullException.ThrowIfNull(tokenizer);
        ArgumentOutOfRangeException.ThrowIfLessThan(vocabularySize, 1);
        if (tokenizer.VocabularySize > vocabularySize)
            throw new ArgumentException(
                $"Tokenizer '{tokenizer.Name}' has {tokenizer.VocabularySize} ids, more than the model's vocabulary of " +
                $"{vocabularySize}.", nameof(tokenizer));
        var ids = tokenizer.Encode(text);
        if (ids.Count == 0)
            throw new ArgumentException("Argument 'text' holds no tokens.", nameof(text));
        var compact = new CompactIds(tokenizer.VocabularySize);
        compact.Append(ids);
        return new TokenDataset([new MemoryTokenSource(compact)], [], vocabularySize, isText: true,
            System.Text.Encoding.UTF8.GetByteCount(text));
    }

    /// <summary>
    /// The paths of a command-line list, "a.bin,b.bin": split at commas, each trimmed, empty entries dropped.
    /// </summary>
    /// <exception cref="ArgumentException">The list names no file.</exception>
    public static IReadOnlyList<string> ParsePathList(string list)
    {
        ArgumentNullException.ThrowIfNull(list);
        var paths = list.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
        return paths.Length > 0
            ? paths
            : throw new ArgumentException($"The dataset list '{list}' names no file.", nameof(list));
    }

    /// <summary>Whether <see cref="Open"/> reads <paramref name="path"/> as an llm.c token file: its name ends in .bin.</summary>
    public static bool IsTokenFile(string path) =>
        path.EndsWith(".bin", StringComparison.OrdinalIgnoreCase);

    /// <summary>Copies the ids [<paramref name="start"/>, start + destination.Length) into <paramref name="destination"/>.</summary>
    /// <exception cref="ArgumentOutOfRangeException">The range is not inside [0, <see cref="Count"/>).</exception>
    /// <exception cref="ObjectDisposedException">The dataset was disposed.</exception>
    public void CopyTo(long start, Span<int> destination)
    {
        ObjectDisposedException.ThrowIf(disposed, this);
        if (start < 0 || start > Count - destination.Length)
            throw new ArgumentOutOfRangeException(
                nameof(start), start,
                $"Ids [{start}, {start + destination.Length}) are not inside the dataset's [0, {Count}).");
        var index = Array.BinarySearch(starts, start);
        var source = index >= 0 ? index : ~index - 1;
        while (!destination.IsEmpty)
        {
            // Zero-length sources cannot occur (empty files are rejected), so each step copies at least one id.
            var offset = start - starts[source];
            var n = (int)Math.Min(destination.Length, sources[source].Count - offset);
            sources[source].CopyTo(offset, destination[..n]);
            destination = destination[n..];
            start += n;
            source++;
        }
    }

    /// <summary>
    /// Writes <paramref name="tokens"/> as an llm.c token file (version 1, uint16 ids) to <paramref name="path"/>,
    /// atomically (a temporary file renamed over the target), for tests and for converting data.
    /// </summary>
    /// <exception cref="ArgumentException">An id is outside [0, 65535].</exception>
    public static void WriteTokenFile(string path, IReadOnlyList<int> tokens)
    {
        ArgumentNullException.ThrowIfNull(tokens);
        for (var i = 0; i < tokens.Count; i++)
            if ((uint)tokens[i] > ushort.MaxValue)
                throw new ArgumentException(
                    $"Token id {tokens[i]} at position {i} does not fit an llm.c token file's uint16 ids.", nameof(tokens));
        AtomicFile.Write(path, stream =>
        {
            var header = new byte[BinHeaderBytes];
            BinaryPrimitives.WriteInt32LittleEndian(header, BinMagic);
            BinaryPrimitives.WriteInt32LittleEndian(header.AsSpan(4), BinVersion);
            BinaryPrimitives.WriteInt32LittleEndian(header.AsSpan(8), tokens.Count);
            stream.Write(header);
            var block = new byte[2 * 65536];
            for (var start = 0; start < tokens.Count; start += block.Length / 2)
            {
                var n = Math.Min(block.Length / 2, tokens.Count - start);
                for (var i = 0; i < n; i++)
                    BinaryPrimitives.WriteUInt16LittleEndian(block.AsSpan(2 * i), (ushort)tokens[start + i]);
                stream.Write(block, 0, 2 * n);
            }
        });
    }

    /// <summary>Releases the memory-mapped files.</summary>
    public void Dispose()
    {
        if (disposed)
            return;
        disposed = true;
        foreach (var source in sources)
            source.Dispose();
    }
}
