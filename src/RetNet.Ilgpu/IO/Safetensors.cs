using System.Buffers.Binary;
using System.Text;
using System.Text.Json;
using System.Text.Unicode;
using RetNet.Ilgpu.Tensors;

namespace RetNet.Ilgpu.IO;

/// <summary>The element types a safetensors file may hold that this library reads.</summary>
public enum SafetensorsDType
{
    /// <summary>IEEE 754 binary32.</summary>
    F32,

    /// <summary>IEEE 754 binary16, kept as 16-bit bits on read.</summary>
    F16,

    /// <summary>bfloat16 (the upper half of a binary32), kept as 16-bit bits on read.</summary>
    BF16,
}

/// <summary>One tensor's header entry: name, element type, shape and byte range within the data section.</summary>
/// <param name="Name">The tensor's name.</param>
/// <param name="DType">Its element type.</param>
/// <param name="Shape">Its dimensions.</param>
/// <param name="Begin">First byte, relative to the start of the data section.</param>
/// <param name="End">One past the last byte.</param>
public sealed record SafetensorsEntry(string Name, SafetensorsDType DType, int[] Shape, long Begin, long End);

/// <summary>The contents of a safetensors file: every tensor as host values in its stored type, and the free-form
/// metadata.</summary>
/// <param name="Tensors">Tensors by name.</param>
/// <param name="Metadata">The <c>__metadata__</c> strings (empty when absent).</param>
/// <param name="Entries">The header entries, in data order (the stored element types).</param>
public sealed record SafetensorsFile(
    IReadOnlyDictionary<string, HostTensor> Tensors,
    IReadOnlyDictionary<string, string> Metadata,
    IReadOnlyList<SafetensorsEntry> Entries)
{
    /// <summary>The mapping (or, for shards, the mappings) the tensors are views of (<see cref="MappedSafetensors.Open"/>),
    /// released by disposing it; null when they were read into memory (<see cref="Safetensors.Read"/>).</summary>
    public IDisposable? Mapping { get; init; }
}

/// <summary>A safetensors file that does not follow the format; the message names the file and the fault.</summary>
public sealed class SafetensorsFormatException(string message) : IOException(message);

/// <summary>
/// Reads and writes the safetensors format: an 8-byte little-endian header length, a JSON header
/// <c>{name: {dtype, shape, data_offsets}, "__metadata__": {…}}</c>, then the raw little-endian data. Reading is strict:
/// a truncated file, malformed JSON, an unsupported type, a size that disagrees with the shape, offsets out of range,
/// overlapping or leaving gaps are each a <see cref="SafetensorsFormatException"/>, raised before any tensor is returned.
/// Writing keeps each tensor's type (F32, F16 or BF16) and goes through a temporary file that is renamed into place.
/// </summary>
public static class Safetensors
{
    private const string MetadataKey = "__metadata__";

    /// <summary>Headers above this size are refused (the reference implementation's limit is 100 MB).</summary>
    private const long MaxHeaderBytes = 100_000_000;

    /// <summary>Reads every tensor of <paramref name="path"/>; F16 and BF16 tensors keep their 16-bit bits (their
    /// <see cref="HostTensor.Data"/> widens on demand).</summary>
    /// <exception cref="SafetensorsFormatException">The file is not a well-formed safetensors file.</exception>
    /// <exception cref="FileNotFoundException">The file does not exist.</exception>
    public static SafetensorsFile Read(string path)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(path);
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read);
        var (entries, metadata, dataStart) = ReadHeader(stream, path);
        var tensors = new Dictionary<string, HostTensor>(StringComparer.Ordinal);
        foreach (var entry in entries)
        {
            var bytes = new byte[entry.End - entry.Begin];
            stream.Position = dataStart + entry.Begin;
            stream.ReadExactly(bytes);
            tensors.Add(entry.Name, Decode(bytes, entry));
        }
        return new SafetensorsFile(tensors, metadata, entries);
    }

    /// <summary>Reads and validates only the header of <paramref name="path"/>.</summary>
    /// <exception cref="SafetensorsFormatException">The file is not a well-formed safetensors file.</exception>
    public static IReadOnlyList<SafetensorsEntry> ReadEntries(string path)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(path);
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read);
        return ReadHeader(stream, path).Entries;
    }

    /// <summary>
    /// Writes <paramref name="tensors"/> to <paramref name="path"/> in their own types (fp32 as F32, 16-bit tensors as
    /// F16 or BF16, bits unchanged), in name order, through a temporary file
    /// renamed into place: a reader never sees a half-written file and a failure leaves the old one.
    /// </summary>
    /// <exception cref="ArgumentException">A name is empty or is <c>__metadata__</c>.</exception>
    public static void Write(string path, IReadOnlyDictionary<string, HostTensor> tensors,
        IReadOnlyDictionary<string, string>? metadata = null)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(path);
        ArgumentNullException.ThrowIfNull(tensors);
        var names = tensors.Keys.OrderBy(n => n, StringComparer.Ordinal).ToList();
        foreach (var name in names)
        {
            if (string.IsNullOrEmpty(name) || name == MetadataKey)
                throw new ArgumentException($"Argument 'tensors' has a tensor named '{name}'; expected a non-empty name " +
                                            $"other than {MetadataKey}.", nameof(tensors));
        }

        var header = new MemoryStream();
        using (var json = new Utf8JsonWriter(header))
        {
            json.WriteStartObject();
            if (metadata is { Count: > 0 })
            {
                json.WriteStartObject(MetadataKey);
                foreach (var (key, value) in metadata.OrderBy(p => p.Key, StringComparer.Ordinal))
                    json.WriteString(key, value);
                json.WriteEndObject();
            }
            long offset = 0;
            foreach (var name in names)
            {
                var tensor = tensors[name];
                json.WriteStartObject(name);
                json.WriteString("dtype", tensor.DType switch
                {
                    TensorDType.Float16 => "F16",
                    TensorDType.BFloat16 => "BF16",
                    _ => "F32",
                });
                json.WriteStartArray("shape");
                foreach (var dim in tensor.Shape)
                    json.WriteNumberValue(dim);
                json.WriteEndArray();
                json.WriteStartArray("data_offsets");
                json.WriteNumberValue(offset);
                offset += tensor.Length * (long)TensorDTypes.SizeOf(tensor.DType);
                json.WriteNumberValue(offset);
                json.WriteEndArray();
                json.WriteEndObject();
            }
            json.WriteEndObject();
        }
        // Pad the header with spaces so the data section starts 8-byte aligned, as the reference writer does.
        while (header.Length % 8 != 0)
            header.WriteByte((byte)' ');

        AtomicFile.Write(path, stream =>
        {
            Span<byte> length = stackalloc byte[8];
            BinaryPrimitives.WriteUInt64LittleEndian(length, (ulong)header.Length);
            stream.Write(length);
            header.Position = 0;
            header.CopyTo(stream);
            var buffer = new byte[1 << 16];
            foreach (var name in names)
            {
                if (tensors[name].DType != TensorDType.Float32)
                {
                    var bits = tensors[name].BitSpan;
                    for (var start = 0; start < bits.Length; start += buffer.Length / sizeof(ushort))
                    {
                        var count = Math.Min(buffer.Length / sizeof(ushort), bits.Length - start);
                        for (var i = 0; i < count; i++)
                            BinaryPrimitives.WriteUInt16LittleEndian(buffer.AsSpan(i * sizeof(ushort)), bits[start + i]);
                        stream.Write(buffer, 0, count * sizeof(ushort));
                    }
                    continue;
                }
                var data = tensors[name].DataSpan;
                for (var start = 0; start < data.Length; start += buffer.Length / sizeof(float))
                {
                    var count = Math.Min(buffer.Length / sizeof(float), data.Length - start);
                    for (var i = 0; i < count; i++)
                        BinaryPrimitives.WriteSingleLittleEndian(buffer.AsSpan(i * sizeof(float)), data[start + i]);
                    stream.Write(buffer, 0, count * sizeof(float));
                }
            }
        });
    }

    /// <summary>Reads and validates the header of <paramref name="stream"/> (positioned at the start), leaving it just
    /// after the header: the entries in data order, the metadata and where the data section starts.</summary>
    internal static (IReadOnlyList<SafetensorsEntry> Entries, IReadOnlyDictionary<string, string> Metadata,
        long DataStart) ReadHeader(Stream stream, string path)
    {
        var fileLength = stream.Length;
        if (fileLength < 8)
            throw Fault(path, $"is truncated: {fileLength} bytes, shorter than the 8-byte header length");
        Span<byte> lengthBytes = stackalloc byte[8];
        stream.ReadExactly(lengthBytes);
        var headerLength = BinaryPrimitives.ReadUInt64LittleEndian(lengthBytes);
        if (headerLength > MaxHeaderBytes)
            throw Fault(path, $"declares a {headerLength}-byte header; at most {MaxHeaderBytes} bytes are accepted");
        if ((long)headerLength > fileLength - 8)
            throw Fault(path, $"is truncated: the header declares {headerLength} bytes but only {fileLength - 8} follow");
        var headerBytes = new byte[headerLength];
        stream.ReadExactly(headerBytes);
        var dataStart = 8 + (long)headerLength;
        var dataLength = fileLength - dataStart;

        // JsonDocument checks UTF-8 only when a string is read, and then throws InvalidOperationException.
        if (!Utf8.IsValid(headerBytes))
            throw Fault(path, "has a header that is not valid UTF-8");
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(headerBytes);
        }
        catch (JsonException e)
        {
            throw Fault(path, $"has a header that is not valid JSON: {e.Message}");
        }
        using (document)
        {
            if (document.RootElement.ValueKind != JsonValueKind.Object)
                throw Fault(path, $"has a header that is a JSON {document.RootElement.ValueKind}; expected an object");
            var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
            var entries = new List<SafetensorsEntry>();
            var seen = new HashSet<string>(StringComparer.Ordinal);
            foreach (var property in document.RootElement.EnumerateObject())
            {
                if (!seen.Add(property.Name))
                    throw Fault(path, $"names '{property.Name}' twice in its header");
                if (property.Name == MetadataKey)
                    ReadMetadata(property.Value, metadata, path);
                else
                    entries.Add(ReadEntry(property.Name, property.Value, dataLength, path));
            }
            entries.Sort((a, b) => a.Begin != b.Begin ? a.Begin.CompareTo(b.Begin) : a.End.CompareTo(b.End));
            long expected = 0;
            SafetensorsEntry? previous = null;
            foreach (var entry in entries)
            {
                if (entry.Begin < expected)
                    throw Fault(path, $"has overlapping tensors: '{entry.Name}' [{entry.Begin}, {entry.End}) overlaps " +
                                      $"'{previous!.Name}' [{previous.Begin}, {previous.End})");
                if (entry.Begin > expected)
                    throw Fault(path, $"has a gap in its data: bytes [{expected}, {entry.Begin}) before '{entry.Name}' " +
                                      "belong to no tensor");
                expected = entry.End;
                previous = entry;
            }
            if (expected != dataLength)
                throw Fault(path, $"has {dataLength - expected} bytes after the last tensor's data; the tensors cover " +
                                  $"{expected} of {dataLength} data bytes");
            return (entries, metadata, dataStart);
        }
    }

    private static void ReadMetadata(JsonElement element, Dictionary<string, string> metadata, string path)
    {
        if (element.ValueKind != JsonValueKind.Object)
            throw Fault(path, $"has a {MetadataKey} that is a JSON {element.ValueKind}; expected an object of strings");
        foreach (var item in element.EnumerateObject())
        {
            if (item.Value.ValueKind != JsonValueKind.String)
                throw Fault(path, $"has {MetadataKey}.{item.Name} of JSON type {item.Value.ValueKind}; expected a string");
            metadata[item.Name] = item.Value.GetString()!;
        }
    }

    private static SafetensorsEntry ReadEntry(string name, JsonElement element, long dataLength, string path)
    {
        if (element.ValueKind != JsonValueKind.Object)
            throw Fault(path, $"describes tensor '{name}' with a JSON {element.ValueKind}; expected an object");
        if (!element.TryGetProperty("dtype", out var dtypeElement) || dtypeElement.ValueKind != JsonValueKind.String)
            throw Fault(path, $"gives tensor '{name}' no dtype string");
        var dtype = dtypeElement.GetString() switch
        {
            "F32" => SafetensorsDType.F32,
            "F16" => SafetensorsDType.F16,
            "BF16" => SafetensorsDType.BF16,
            var other => throw Fault(path, $"stores tensor '{name}' as {other}; supported: F32, F16, BF16"),
        };
        if (!element.TryGetProperty("shape", out var shapeElement) || shapeElement.ValueKind != JsonValueKind.Array)
            throw Fault(path, $"gives tensor '{name}' no shape array");
        var shape = new int[shapeElement.GetArrayLength()];
        var i = 0;
        long count = 1;
        foreach (var dim in shapeElement.EnumerateArray())
        {
            if (dim.ValueKind != JsonValueKind.Number || !dim.TryGetInt32(out var size) || size < 0)
                throw Fault(path, $"gives tensor '{name}' a shape entry {dim.GetRawText()}; expected integers ≥ 0");
            shape[i++] = size;
            count *= size;
            if (count > int.MaxValue)
                throw Fault(path, $"gives tensor '{name}' more than {int.MaxValue} elements");
        }
        if (!element.TryGetProperty("data_offsets", out var offsets) || offsets.ValueKind != JsonValueKind.Array ||
            offsets.GetArrayLength() != 2 || !TryGetInt64(offsets[0], out var begin) || !TryGetInt64(offsets[1], out var end))
            throw Fault(path, $"gives tensor '{name}' no data_offsets [begin, end] of two integers");
        if (begin < 0 || end < begin || end > dataLength)
            throw Fault(path, $"gives tensor '{name}' data_offsets [{begin}, {end}) outside the {dataLength} data bytes");
        var elementSize = dtype == SafetensorsDType.F32 ? 4 : 2;
        if (end - begin != count * elementSize)
            throw Fault(path, $"gives tensor '{name}' {end - begin} bytes; its shape [{string.Join(", ", shape)}] of " +
                              $"{dtype} needs {count * elementSize}");
        return new SafetensorsEntry(name, dtype, shape, begin, end);
    }

    // JsonElement.TryGetInt64 throws on a non-number (data_offsets ["0", "4"]) instead of returning false.
    private static bool TryGetInt64(JsonElement element, out long value)
    {
        value = 0;
        return element.ValueKind == JsonValueKind.Number && element.TryGetInt64(out value);
    }

    private static HostTensor Decode(byte[] bytes, SafetensorsEntry entry)
    {
        if (entry.DType == SafetensorsDType.F32)
        {
            var values = new float[bytes.Length / 4];
            for (var i = 0; i < values.Length; i++)
                values[i] = BinaryPrimitives.ReadSingleLittleEndian(bytes.AsSpan(4 * i));
            return new HostTensor(entry.Shape, values);
        }
        var bits = new ushort[bytes.Length / 2];
        for (var i = 0; i < bits.Length; i++)
            bits[i] = BinaryPrimitives.ReadUInt16LittleEndian(bytes.AsSpan(2 * i));
        return new HostTensor(entry.Shape, bits,
            entry.DType == SafetensorsDType.F16 ? TensorDType.Float16 : TensorDType.BFloat16);
    }

    private static SafetensorsFormatException Fault(string path, string fault) =>
        new($"'{path}' is not a valid safetensors file: it {fault}.");
}
