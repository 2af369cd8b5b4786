using System.Text;

namespace RetNet.Ilgpu.Tokenizers;

/// <summary>The kind of a SentencePiece piece (sentencepiece_model.proto, <c>SentencePiece.Type</c>).</summary>
internal enum SentencePieceType
{
    Normal = 1,
    Unknown = 2,
    Control = 3,
    UserDefined = 4,
    Unused = 5,
    Byte = 6,
}

/// <summary>One piece of a SentencePiece vocabulary; its id is its position. BPE merges higher scores first.</summary>
internal readonly record struct SentencePieceEntry(string Piece, float Score, SentencePieceType Type);

/// <summary>
/// What encoding and decoding need from a SentencePiece <c>tokenizer.model</c> (a serialized <c>ModelProto</c>) that
/// Microsoft.ML.Tokenizers does not expose: every piece with its score and type, and the surface of the unknown piece. Read with
/// a minimal protobuf reader that checks the whole file, so that a truncated or foreign file is refused with the
/// offset where it stops making sense.
/// </summary>
internal sealed class SentencePieceModelFile
{
    // TrainerSpec.ModelType.
    private const ulong Unigram = 1, Bpe = 2;

    // sentencepiece's kDefaultUnknownSymbol: what <unk> decodes to unless trainer_spec.unk_surface says otherwise.
    private const string DefaultUnknownSurface = " \u2047 ";

    private SentencePieceModelFile(IReadOnlyList<SentencePieceEntry> pieces, string unknownSurface)
    {
        Pieces = pieces;
        UnknownSurface = unknownSurface;
    }

    /// <summary>Every piece, id order.</summary>
    public IReadOnlyList<SentencePieceEntry> Pieces { get; }

    /// <summary>The text the unknown piece decodes to.</summary>
    public string UnknownSurface { get; }

    /// <summary>The id of the piece <paramref name="piece"/>, or null.</summary>
    public int? Find(string piece)
    {
        for (var id = 0; id < Pieces.Count; id++)
            if (Pieces[id].Piece == piece)
                return id;
        return null;
    }

    /// <exception cref="InvalidDataException">The bytes are not a SentencePiece model; the message says why.</exception>
    public static SentencePieceModelFile Parse(ReadOnlySpan<byte> model)
    {
        var pieces = new List<SentencePieceEntry>();
        string? unknownSurface = null;
        ulong modelType = Unigram;
        var reader = new ProtoReader(model);
        while (reader.Next(out var field, out var wireType))
        {
            // ModelProto: 1 = repeated SentencePiece pieces, 2 = TrainerSpec trainer_spec.
            if (field == 1 && wireType == ProtoReader.LengthDelimited)
                pieces.Add(ReadPiece(reader.ReadBytes(), pieces.Count));
            else if (field == 2 && wireType == ProtoReader.LengthDelimited)
                ReadTrainerSpec(reader.ReadBytes(), ref modelType, ref unknownSurface);
            else
                reader.Skip(wireType);
        }
        if (pieces.Count == 0)
            throw new InvalidDataException("it has no pieces (a SentencePiece model lists its vocabulary first).");
        if (modelType != Bpe)
            throw new InvalidDataException(
                $"it is a {modelType switch { Unigram => "unigram", 3 => "word", 4 => "char", _ => $"type {modelType}" }} " +
                "model; only BPE models (Llama's) are read.");
        return new SentencePieceModelFile(pieces, unknownSurface ?? DefaultUnknownSurface);
    }

    private static SentencePieceEntry ReadPiece(ReadOnlySpan<byte> message, int id)
    {
        // SentencePiece: 1 = string piece, 2 = float score, 3 = Type type (default NORMAL).
        string? piece = null;
        var score = 0f;
        var type = SentencePieceType.Normal;
        var reader = new ProtoReader(message);
        while (reader.Next(out var field, out var wireType))
        {
            if (field == 1 && wireType == ProtoReader.LengthDelimited)
                piece = Encoding.UTF8.GetString(reader.ReadBytes());
            else if (field == 2 && wireType == ProtoReader.Fixed32)
                score = reader.ReadFloat();
            else if (field == 3 && wireType == ProtoReader.Varint)
            {
                var value = reader.ReadVarint();
                type = value is >= 1 and <= 6
                    ? (SentencePieceType)value
                    : throw new InvalidDataException($"piece {id} has type {value}; expected 1 to 6.");
            }
            else
                reader.Skip(wireType);
        }
        if (piece is null)
            throw new InvalidDataException($"piece {id} has no text.");
        if (type == SentencePieceType.Byte && !TryByteOf(piece, out _))
            throw new InvalidDataException($"byte piece {id} is '{piece}'; expected <0xNN>.");
        return new SentencePieceEntry(piece, score, type);
    }

    /// <summary>The byte a byte piece <c>&lt;0xNN&gt;</c> stands for (checked when the file was read).</summary>
    public static byte ByteOf(string piece) =>
        TryByteOf(piece, out var value) ? value : throw new ArgumentException($"'{piece}' is not <0xNN>.", nameof(piece));

    private static bool TryByteOf(string piece, out byte value)
    {
        value = 0;
        return piece.Length == 6 && piece.StartsWith("<0x", StringComparison.Ordinal) && piece[5] == '>' &&
               byte.TryParse(piece.AsSpan(3, 2), System.Globalization.NumberStyles.AllowHexSpecifier, null, out value);
    }

    private static void ReadTrainerSpec(ReadOnlySpan<byte> trainerSpec, ref ulong modelType, ref string? unknownSurface)
    {
        // TrainerSpec: 3 = ModelType model_type (default UNIGRAM), 44 = string unk_surface.
        var reader = new ProtoReader(trainerSpec);
        while (reader.Next(out var field, out var wireType))
        {
            if (field == 3 && wireType == ProtoReader.Varint)
                modelType = reader.ReadVarint();
            else if (field == 44 && wireType == ProtoReader.LengthDelimited)
                unknownSurface = Encoding.UTF8.GetString(reader.ReadBytes());
            else
                reader.Skip(wireType);
        }
    }

    /// <summary>The protobuf wire format, as much of it as a ModelProto uses.</summary>
    private ref struct ProtoReader(ReadOnlySpan<byte> data)
    {
        public const int Varint = 0, Fixed64 = 1, LengthDelimited = 2, Fixed32 = 5;

        private readonly ReadOnlySpan<byte> data = data;
        private int position;

        public bool Next(out int field, out int wireType)
        {
            field = wireType = 0;
            if (position == data.Length)
                return false;
            var start = position;
            var tag = ReadVarint();
            field = (int)(tag >> 3);
            wireType = (int)(tag & 7);
            if (field == 0 || wireType is not (Varint or Fixed64 or LengthDelimited or Fixed32))
                throw new InvalidDataException(
                    $"byte {start} holds field {field} of wire type {wireType}, which no SentencePiece model has.");
            return true;
        }

        public ulong ReadVarint()
        {
            ulong value = 0;
            for (var shift = 0; shift < 64; shift += 7)
            {
                if (position == data.Length)
                    throw new InvalidDataException($"it ends inside a number at byte {position}.");
                var b = data[position++];
                value |= (ulong)(b & 0x7F) << shift;
                if (b < 0x80)
                    return value;
            }
            throw new InvalidDataException($"the number ending at byte {position} is longer than 10 bytes.");
        }

        public float ReadFloat()
        {
            if (data.Length - position < 4)
                throw new InvalidDataException($"it ends inside a 4-byte field at byte {position}.");
            var value = System.Buffers.Binary.BinaryPrimitives.ReadSingleLittleEndian(data[position..]);
            position += 4;
            return value;
        }

        public ReadOnlySpan<byte> ReadBytes()
        {
            var length = ReadVarint();
            if (length > (ulong)(data.Length - position))
                throw new InvalidDataException(
                    $"a field at byte {position} claims {length} bytes but only {data.Length - position} remain.");
            var bytes = data.Slice(position, (int)length);
            position += (int)length;
            return bytes;
        }

        public void Skip(int wireType)
        {
            switch (wireType)
            {
                case Varint:
                    ReadVarint();
                    break;
                case LengthDelimited:
                    ReadBytes();
                    break;
                default:
                    var size = wireType == Fixed64 ? 8 : 4;
                    if (data.Length - position < size)
                        throw new InvalidDataException($"it ends inside a {size}-byte field at byte {position}.");
                    position += size;
                    break;
            }
        }
    }
}
