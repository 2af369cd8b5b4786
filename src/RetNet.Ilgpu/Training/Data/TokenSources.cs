using System.Buffers;
using System.Buffers.Binary;
using System.IO.MemoryMappedFiles;
using System.Text;
using System.Text.Unicode;
using RetNet.Ilgpu.Tokenizers;

namespace RetNet.Ilgpu.Training.Data;

/// <summary>One contiguous run of token ids inside a <see cref="TokenDataset"/>: a file, or a separator token.</summary>
internal abstract class TokenSource : IDisposable
{
    public abstract long Count { get; }

    /// <summary>Copies ids [start, start + destination.Length), which the caller has checked lie inside.</summary>
    public abstract void CopyTo(long start, Span<int> destination);

    public virtual void Dispose()
    {
    }
}

/// <summary>A single token, such as the end-of-text id placed between two text files.</summary>
internal sealed class SingleTokenSource(int id) : TokenSource
{
    public override long Count => 1;

    public override void CopyTo(long start, Span<int> destination) => destination.Fill(id);
}

/// <summary>An llm.c token file, memory-mapped: the operating system pages tokens in as windows touch them.</summary>
internal sealed class BinTokenSource : TokenSource
{
    // Reads go through a pooled buffer of this many ids, so a large copy never rents a large array.
    private const int BlockIds = 1 << 16;

    private readonly MemoryMappedFile file;
    private readonly MemoryMappedViewAccessor view;

    private BinTokenSource(MemoryMappedFile file, MemoryMappedViewAccessor view, long count)
    {
        this.file = file;
        this.view = view;
        Count = count;
    }

    public override long Count { get; }

    public static BinTokenSource Open(string path, int vocabularySize)
    {
        var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read);
        MemoryMappedFile? mapped = null;
        MemoryMappedViewAccessor? view = null;
        try
        {
            var length = stream.Length;
            if (length < TokenDataset.BinHeaderBytes)
                throw new InvalidDataException(
                    $"Token file '{path}' is {length} bytes, shorter than the {TokenDataset.BinHeaderBytes}-byte llm.c header.");
            var header = new byte[TokenDataset.BinHeaderBytes];
            stream.ReadExactly(header);
            var magic = BinaryPrimitives.ReadInt32LittleEndian(header);
            if (magic != TokenDataset.BinMagic)
                throw new InvalidDataException(
                    $"Token file '{path}' has magic {magic} in its header; expected {TokenDataset.BinMagic} (an llm.c token file).");
            var version = BinaryPrimitives.ReadInt32LittleEndian(header.AsSpan(4));
            if (version != TokenDataset.BinVersion)
                throw new InvalidDataException(
                    $"Token file '{path}' has version {version}; only version {TokenDataset.BinVersion} (uint16 tokens) is supported.");
            var count = BinaryPrimitives.ReadInt32LittleEndian(header.AsSpan(8));
            var expected = TokenDataset.BinHeaderBytes + 2L * count;
            if (count < 0 || length != expected)
                throw new InvalidDataException(
                    $"Token file '{path}' is {length} bytes, but its header's token count {count} needs " +
                    $"{TokenDataset.BinHeaderBytes} + 2·{count} = {expected} bytes.");
            if (count == 0)
                throw new InvalidDataException($"Token file '{path}' holds no tokens.");

            mapped = MemoryMappedFile.CreateFromFile(
                stream, mapName: null, capacity: 0, MemoryMappedFileAccess.Read, HandleInheritability.None, leaveOpen: false);
            view = mapped.CreateViewAccessor(TokenDataset.BinHeaderBytes, 2L * count, MemoryMappedFileAccess.Read);
            var source = new BinTokenSource(mapped, view, count);
            source.Validate(path, vocabularySize);
            return source;
        }
        catch
        {
            view?.Dispose();
            if (mapped is null)
                stream.Dispose();
            else
                mapped.Dispose();
            throw;
        }
    }

    public override void CopyTo(long start, Span<int> destination)
    {
        var buffer = ArrayPool<ushort>.Shared.Rent(Math.Min(BlockIds, Math.Max(destination.Length, 1)));
        try
        {
            while (!destination.IsEmpty)
            {
                var n = Math.Min(destination.Length, buffer.Length);
                var ids = Read(start, buffer, n);
                for (var i = 0; i < ids.Length; i++)
                    destination[i] = ids[i];
                destination = destination[n..];
                start += n;
            }
        }
        finally
        {
            ArrayPool<ushort>.Shared.Return(buffer);
        }
    }

    public override void Dispose()
    {
        view.Dispose();
        file.Dispose();
    }

    // One pass over the mapped tokens when the file is opened, so that a bad id is reported with its file and position
    // before training starts rather than surfacing as an out-of-range gather on the device hours later.
    private void Validate(string path, int vocabularySize)
    {
        if (vocabularySize > ushort.MaxValue)
            return;
        var limit = (ushort)(vocabularySize - 1);
        var buffer = ArrayPool<ushort>.Shared.Rent(BlockIds * 16);
        try
        {
            for (long start = 0; start < Count; start += buffer.Length)
            {
                var ids = Read(start, buffer, (int)Math.Min(buffer.Length, Count - start));
                var bad = ids.IndexOfAnyExceptInRange((ushort)0, limit);
                if (bad >= 0)
                    throw new InvalidDataException(
                        $"Token file '{path}' has token id {ids[bad]} at position {start + bad}, outside the model's " +
                        $"vocabulary [0, {vocabularySize}).");
            }
        }
        finally
        {
            ArrayPool<ushort>.Shared.Return(buffer);
        }
    }

    private ReadOnlySpan<ushort> Read(long start, ushort[] buffer, int count)
    {
        view.ReadArray(2 * start, buffer, 0, count);
        var ids = buffer.AsSpan(0, count);
        if (!BitConverter.IsLittleEndian)
            BinaryPrimitives.ReverseEndianness(ids, ids);
        return ids;
    }
}

/// <summary>The ids of one UTF-8 text file, tokenized when opened and held compactly in memory.</summary>
internal sealed class TextTokenSource : TokenSource
{
    /// <summary>Bytes read and tokenized at a time (before looking back for a split point).</summary>
    public const int DefaultChunkBytes = 4 << 20;

    private readonly CompactIds ids;

    private TextTokenSource(CompactIds ids, long textBytes)
    {
        this.ids = ids;
        TextBytes = textBytes;
    }

    public override long Count => ids.Count;

    /// <summary>The file's UTF-8 bytes, without a leading byte-order mark.</summary>
    public long TextBytes { get; }

    public static TextTokenSource Open(string path, ITextTokenizer tokenizer, int chunkBytes)
    {
        var ids = new CompactIds(tokenizer.VocabularySize);
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, bufferSize: 1);
        var buffer = new byte[chunkBytes];
        var chars = new char[chunkBytes];
        var filled = 0;
        long bufferOffset = 0;
        long textBytes = 0;
        var endOfFile = false;
        while (true)
        {
            while (!endOfFile && filled < buffer.Length)
            {
                var read = stream.Read(buffer, filled, buffer.Length - filled);
                if (read == 0)
                    endOfFile = true;
                filled += read;
            }
            if (filled == 0)
                break;
            var begin = bufferOffset == 0 && buffer.AsSpan(0, filled).StartsWith(Encoding.UTF8.Preamble) ? 3 : 0;
            var cut = Math.Max(begin, endOfFile ? filled : SplitPoint(buffer.AsSpan(0, filled)));
            var status = Utf8.ToUtf16(
                buffer.AsSpan(begin, cut - begin), chars, out var bytesRead, out var charsWritten,
                replaceInvalidSequences: false, isFinalBlock: true);
            if (status != System.Buffers.OperationStatus.Done)
                throw new InvalidDataException(
                    $"Text file '{path}' is not valid UTF-8: invalid byte sequence at byte offset {bufferOffset + begin + bytesRead}.");
            ids.Append(tokenizer.Encode(new string(chars, 0, charsWritten)));
            textBytes += cut - begin;
            buffer.AsSpan(cut, filled - cut).CopyTo(buffer);
            filled -= cut;
            bufferOffset += cut;
        }
        if (ids.Count == 0)
            throw new InvalidDataException($"Text file '{path}' holds no text (no tokens).");
        return new TextTokenSource(ids, textBytes);
    }

    public override void CopyTo(long start, Span<int> destination) => ids.CopyTo(start, destination);

    /// <summary>
    /// Where to end a chunk: before the last character of a whitespace run that is followed by a printable ASCII
    /// character, preferring a line break. GPT-2's pre-tokenizer always ends a piece there (a whitespace run followed
    /// by a non-space splits as the run less its last character, then that character alone or joined to the word
    /// after it), and the chunk's trailing whitespace is then read as one piece at the end of the string exactly as it
    /// was before the last character, so chunked and whole-file ids agree. Failing that (a chunk without a space or
    /// line break before a printable character), after the last line break; failing that, before the last UTF-8 lead
    /// byte. Those two fallbacks may change the ids next to the split.
    /// </summary>
    internal static int SplitPoint(ReadOnlySpan<byte> bytes)
    {
        for (var i = bytes.Length - 2; i >= 1; i--)
            if (bytes[i] == (byte)'\n' && IsPrintableAscii(bytes[i + 1]))
                return i;
        for (var i = bytes.Length - 2; i >= 1; i--)
            if (bytes[i] is (byte)' ' or (byte)'\t' or (byte)'\r' or (byte)'\n' or 0x0B or 0x0C && IsPrintableAscii(bytes[i + 1]))
                return i;
        var newline = bytes.LastIndexOf((byte)'\n');
        if (newline >= 0)
            return newline + 1;
        for (var i = bytes.Length - 1; i >= 1; i--)
            if ((bytes[i] & 0xC0) != 0x80)
                return i;
        // Nothing but continuation bytes: not UTF-8, and decoding the whole buffer reports where.
        return bytes.Length;
    }

    private static bool IsPrintableAscii(byte b) => b is >= 0x21 and <= 0x7E;
}

/// <summary>Ids handed over in memory (or text tokenized from a string), held compactly.</summary>
internal sealed class MemoryTokenSource(CompactIds ids) : TokenSource
{
    public override long Count => ids.Count;

    public override void CopyTo(long start, Span<int> destination) => ids.CopyTo(start, destination);
}

/// <summary>A growable id array: 2 bytes per id when the vocabulary fits in uint16, otherwise 4.</summary>
internal sealed class CompactIds(int vocabularySize)
{
    private ushort[] narrow = vocabularySize <= 65536 ? new ushort[1024] : [];
    private int[] wide = vocabularySize <= 65536 ? [] : new int[1024];

    public long Count { get; private set; }

    private bool IsNarrow => narrow.Length > 0;

    public void Append(IReadOnlyList<int> ids)
    {
        var needed = Count + ids.Count;
        if (needed > Array.MaxLength)
            throw new InvalidDataException(
                $"A text file yields more than {Array.MaxLength} tokens; convert it to an llm.c token file (.bin).");
        var capacity = IsNarrow ? narrow.Length : wide.Length;
        if (needed > capacity)
        {
            var grown = (int)Math.Min(Array.MaxLength, Math.Max(needed, 2L * capacity));
            if (IsNarrow)
                Array.Resize(ref narrow, grown);
            else
                Array.Resize(ref wide, grown);
        }
        var at = (int)Count;
        for (var i = 0; i < ids.Count; i++)
        {
            var id = ids[i];
            if ((uint)id >= (uint)vocabularySize)
                throw new InvalidOperationException(
                    $"The tokenizer produced id {id}, outside its own vocabulary [0, {vocabularySize}).");
            if (IsNarrow)
                narrow[at + i] = (ushort)id;
            else
                wide[at + i] = id;
        }
        Count = needed;
    }

    public void CopyTo(long start, Span<int> destination)
    {
        if (IsNarrow)
        {
            var source = narrow.AsSpan((int)start, destination.Length);
            for (var i = 0; i < source.Length; i++)
                destination[i] = source[i];
        }
        else
        {
            wide.AsSpan((int)start, destination.Length).CopyTo(destination);
        }
    }
}
