using System.Text;

namespace RetNet.Ilgpu.Tokenizers;

/// <summary>
/// sentencepiece's BPE encoding of normalized text (its bpe_model.cc): the text as one symbol per character (a
/// user-defined piece is one symbol that never merges), then, over and over, the adjacent pair that forms the piece
/// with the highest score is merged, the leftmost pair among equal scores; an unused piece is split back into the two
/// pieces that formed it. A symbol outside the vocabulary becomes its UTF-8 bytes' pieces with byte fallback, else the
/// unknown id (one for a run of them).
/// </summary>
/// <remarks>
/// Microsoft.ML.Tokenizers 3.0.0 merges equal-score pairs in another order, which changes runs of spaces: "  " is
/// sentencepiece's [▁▁, ▁] but Microsoft.ML.Tokenizers' [▁, ▁▁]. The merge order here is sentencepiece's, and the
/// fixture tests hold it to sentencepiece's ids.
/// </remarks>
internal sealed class SentencePieceBpe
{
    private readonly Dictionary<string, int>.AlternateLookup<ReadOnlySpan<char>> mergeable;
    private readonly SentencePieceEntry[] pieces;
    private readonly string[] userDefined;
    private readonly int[] byteIds;
    private readonly int unknownId;
    private readonly bool byteFallback;

    public SentencePieceBpe(IReadOnlyList<SentencePieceEntry> pieces, bool byteFallback)
    {
        this.pieces = [.. pieces];
        this.byteFallback = byteFallback;
        var lookup = new Dictionary<string, int>(StringComparer.Ordinal);
        byteIds = new int[256];
        Array.Fill(byteIds, -1);
        unknownId = -1;
        for (var id = 0; id < pieces.Count; id++)
        {
            var (piece, _, type) = pieces[id];
            switch (type)
            {
                // The pieces merges may form; sentencepiece keeps the others (control, unknown, byte) apart.
                case SentencePieceType.Normal or SentencePieceType.UserDefined or SentencePieceType.Unused:
                    lookup.TryAdd(piece, id);
                    break;
                case SentencePieceType.Unknown:
                    unknownId = unknownId < 0 ? id : unknownId;
                    break;
                case SentencePieceType.Byte:
                    byteIds[SentencePieceModelFile.ByteOf(piece)] = id;
                    break;
            }
        }
        if (unknownId < 0)
            throw new InvalidDataException("it has no unknown piece (<unk>).");
        mergeable = lookup.GetAlternateLookup<ReadOnlySpan<char>>();
        userDefined = [.. pieces.Where(p => p.Type == SentencePieceType.UserDefined).Select(p => p.Piece)
            .OrderByDescending(p => p.Length)];
    }

    /// <summary>Appends the ids of <paramref name="normalized"/> (spaces already ▁, the dummy prefix added).</summary>
    public void Encode(string normalized, List<int> ids)
    {
        // Symbols as a linked list over the text: start, length (0 once merged into its left neighbour), neighbours.
        var count = 0;
        var start = new int[normalized.Length];
        var length = new int[normalized.Length];
        var frozen = new bool[normalized.Length];
        for (var position = 0; position < normalized.Length; count++)
        {
            var user = UserDefinedAt(normalized, position);
            start[count] = position;
            length[count] = user?.Length ?? (char.IsSurrogatePair(normalized, position) ? 2 : 1);
            frozen[count] = user is not null;
            position += length[count];
        }
        var previous = new int[count];
        var next = new int[count];
        for (var i = 0; i < count; i++)
            (previous[i], next[i]) = (i - 1, i + 1 < count ? i + 1 : -1);

        var agenda = new PriorityQueue<(int Left, int Right, int Size), (float Score, int Left)>(HighestLeftmost.Instance);
        var unmerge = new Dictionary<string, (string Left, string Right)>(StringComparer.Ordinal);
        void Consider(int left, int right)
        {
            if (left < 0 || right < 0 || frozen[left] || frozen[right])
                return;
            var piece = normalized.AsSpan(start[left], length[left] + length[right]);
            if (!mergeable.TryGetValue(piece, out var id))
                return;
            agenda.Enqueue((left, right, piece.Length), (pieces[id].Score, left));
            if (pieces[id].Type == SentencePieceType.Unused)
                unmerge[piece.ToString()] = (normalized.Substring(start[left], length[left]),
                    normalized.Substring(start[right], length[right]));
        }
        for (var i = 1; i < count; i++)
            Consider(i - 1, i);
        while (agenda.TryDequeue(out var pair, out _))
        {
            // A pair whose symbols have changed since it was queued is stale.
            if (length[pair.Left] == 0 || length[pair.Right] == 0 ||
                length[pair.Left] + length[pair.Right] != pair.Size)
                continue;
            length[pair.Left] += length[pair.Right];
            length[pair.Right] = 0;
            next[pair.Left] = next[pair.Right];
            if (next[pair.Right] >= 0)
                previous[next[pair.Right]] = pair.Left;
            Consider(previous[pair.Left], pair.Left);
            Consider(pair.Left, next[pair.Left]);
        }

        // The first symbol is never merged away (it has no left neighbour): the list starts there.
        var unknownRun = false;
        for (var i = count > 0 ? 0 : -1; i >= 0; i = next[i])
            Resegment(normalized.Substring(start[i], length[i]));

        void Resegment(string piece)
        {
            if (mergeable.TryGetValue(piece, out var id))
            {
                if (pieces[id].Type == SentencePieceType.Unused && unmerge.TryGetValue(piece, out var parts))
                {
                    Resegment(parts.Left);
                    Resegment(parts.Right);
                    return;
                }
                ids.Add(id);
                unknownRun = false;
                return;
            }
            if (byteFallback)
            {
                foreach (var b in Encoding.UTF8.GetBytes(piece))
                    ids.Add(byteIds[b] >= 0 ? byteIds[b] : unknownId);
                return;
            }
            if (!unknownRun)
                ids.Add(unknownId);
            unknownRun = true;
        }
    }

    // The longest user-defined piece the text has at position (sentencepiece's prefix matcher), or null.
    private string? UserDefinedAt(string text, int position)
    {
        foreach (var piece in userDefined)
            if (text.AsSpan(position).StartsWith(piece, StringComparison.Ordinal))
                return piece;
        return null;
    }

    /// <summary>The priority of sentencepiece's agenda: the highest score first, then the leftmost pair.</summary>
    private sealed class HighestLeftmost : IComparer<(float Score, int Left)>
    {
        public static readonly HighestLeftmost Instance = new();

        public int Compare((float Score, int Left) x, (float Score, int Left) y) =>
            x.Score != y.Score ? y.Score.CompareTo(x.Score) : x.Left.CompareTo(y.Left);
    }
}
