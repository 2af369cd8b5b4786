using System.Text;
using System.Text.Json.Nodes;

namespace RetNet.Ilgpu.Properties.Robustness;

/// <summary>One structured mutation of a valid safetensors file: what was changed, and the resulting bytes.</summary>
/// <param name="Description">The mutation, for the report of a failing case.</param>
/// <param name="Bytes">The file.</param>
/// <param name="MustBeAccepted">True when nothing was changed, so the reader must accept the file: the negative
/// control that keeps the generator from producing only garbage.</param>
internal sealed record MutatedFile(string Description, byte[] Bytes, bool MustBeAccepted = false)
{
    /// <inheritdoc/>
    public override string ToString() => $"{Description} ({Bytes.Length} bytes)";
}

/// <summary>
/// Structured mutations of a valid safetensors file, one field at a time: a dtype, a shape entry (negative, huge,
/// overflowing int32 or int64, fractional, a string), the data_offsets (reversed, overlapping, past the end, beyond
/// int64, of the wrong type or arity), an entry or the <c>__metadata__</c> of the wrong type, a missing or unknown
/// field, a duplicate key, a header that is not JSON, not an object, too deep or not UTF-8, a length prefix larger than
/// the file or near 2^64, truncation at every interesting point, appended bytes, flipped bytes, or none at all.
/// </summary>
internal static class SafetensorsMutations
{
    /// <summary>JSON values a shape entry or an offset may be replaced by: every way a number can be wrong.</summary>
    public static readonly string[] BadNumbers =
    [
        "-1", "-2147483648", "2147483647", "2147483648", "4294967297", "9007199254740993", "9223372036854775807",
        "9223372036854775808", "18446744073709551615", "1e400", "-1e400", "1.5", "1.0", "4e0", "-0", "\"4\"", "null",
        "true", "[]", "{}", "\"NaN\"", "\"Infinity\"", "100000000000000000000000000000000000000",
    ];

    private static readonly string[] BadDTypes =
        ["\"F64\"", "\"I32\"", "\"U8\"", "\"BOOL\"", "\"f32\"", "\"\"", "\"F32 \"", "\"F8_E4M3\"", "32", "null", "true", "[]", "{}", "[\"F32\"]"];

    private static readonly string[] BadContainers = ["null", "1", "\"x\"", "true", "[]", "{}", "[[]]", "[{}]"];

    private static readonly string[] NotObjects = ["[]", "\"header\"", "1", "null", "true", "[{}]", "[1,2]"];

    private static readonly string[] NotJson =
    [
        "", " ", "{", "}", "{\"a\":}", "{\"a\" 1}", "{'a':1}", "{\"a\":1,}", "\0\0\0\0", "{\"a\":1}}", "nul", "[",
        "{\"a\":\"\\uZZZZ\"}", "{\"a\":tru}", "{\"a\":01}",
    ];

    /// <summary>Applies one random mutation (or none, one case in twenty) to <paramref name="image"/>.</summary>
    public static MutatedFile Mutate(SafetensorsImage image, Random random)
    {
        var tensors = image.TensorIndices();
        var t = tensors.Count > 0 ? tensors[random.Next(tensors.Count)] : -1;
        var entry = t >= 0 ? image.Header[t].Value as JsonObject : null;
        var name = t >= 0 ? image.Header[t].Key : "";
        string Pick(string[] values) => values[random.Next(values.Length)];
        JsonNode? Json(string text) => JsonNode.Parse(text);
        MutatedFile Done(string description) => new(description, image.Serialize());

        switch (random.Next(entry is null ? 10 : 22))
        {
            case 0:
                return new("unchanged", image.Serialize(), MustBeAccepted: true);
            case 1:
            {
                var bytes = image.Serialize();
                var cut = TruncationPoint(bytes.Length, random, image);
                return new($"truncated to {cut} bytes", bytes[..cut]);
            }
            case 2:
            {
                var bytes = image.Serialize();
                var extra = new byte[random.Next(1, 40)];
                random.NextBytes(extra);
                return new($"{extra.Length} bytes appended", [.. bytes, .. extra]);
            }
            case 3:
            {
                var bytes = image.Serialize();
                var flips = random.Next(1, 6);
                for (var i = 0; i < flips && bytes.Length > 0; i++)
                    bytes[random.Next(bytes.Length)] ^= (byte)random.Next(1, 256);
                return new($"{flips} bytes flipped", bytes);
            }
            case 4:
            {
                var header = Encoding.UTF8.GetBytes(image.HeaderText());
                var total = (ulong)(8 + header.Length + image.Data.Length);
                var prefixes = new ulong[]
                {
                    (ulong)header.Length + 1, (ulong)header.Length - 1, total, total - 8, 0, 1, 100_000_001,
                    (1UL << 63) - 1, 1UL << 63, ulong.MaxValue, ulong.MaxValue - 7, (1UL << 32) + (ulong)header.Length,
                    (ulong)header.Length + (ulong)image.Data.Length,
                };
                var prefix = prefixes[random.Next(prefixes.Length)];
                return new($"length prefix {prefix} for a {header.Length}-byte header", image.Serialize(header, prefix));
            }
            case 5:
            {
                var text = Pick(NotJson);
                return new($"header {text}", image.Serialize(Encoding.UTF8.GetBytes(text)));
            }
            case 6:
            {
                var text = Pick(NotObjects);
                return new($"header {text}", image.Serialize(Encoding.UTF8.GetBytes(text)));
            }
            case 7:
            {
                var header = Encoding.UTF8.GetBytes(image.HeaderText());
                var at = random.Next(header.Length);
                header[at] = (byte)new[] { 0xFF, 0xC0, 0x80, 0xED, 0xF8 }[random.Next(5)];
                return new($"header byte {at} made invalid UTF-8", image.Serialize(header));
            }
            case 8:
            {
                var depth = random.Next(60, 5000);
                image.Header.RemoveAll(p => p.Key == SafetensorsImage.MetadataKey);
                var rest = image.HeaderText();
                var text = "{\"__metadata__\":" + new string('[', depth) + new string(']', depth) +
                           (rest.Length > 2 ? "," + rest[1..] : "}");
                var header = Encoding.UTF8.GetBytes(text);
                return new($"metadata nested {depth} deep", image.Serialize(header));
            }
            case 9:
            {
                var value = Pick([.. BadContainers, "{\"k\":1}", "{\"k\":null}", "{\"k\":{}}", "{\"k\":[\"v\"]}", "{}"]);
                image.Header.RemoveAll(p => p.Key == SafetensorsImage.MetadataKey);
                image.Header.Insert(random.Next(image.Header.Count + 1), new(SafetensorsImage.MetadataKey, Json(value)));
                return Done($"__metadata__ {value}");
            }
        }
        // Mutations of one tensor's entry.
        switch (random.Next(12))
        {
            case 0:
            {
                var value = Pick(BadDTypes);
                entry!["dtype"] = Json(value);
                return Done($"'{name}' dtype {value}");
            }
            case 1:
            {
                var shape = entry!["shape"]!.AsArray();
                var value = Pick(BadNumbers);
                if (shape.Count == 0)
                    shape.Add(Json(value));
                else
                    shape[random.Next(shape.Count)] = Json(value);
                return Done($"'{name}' shape {shape.ToJsonString()}");
            }
            case 2:
            {
                // Sizes whose product overflows int32 or int64, or that claim gigabytes.
                var value = Pick(["[65536,65536]", "[46341,46341]", "[40000,40000]", "[2147483647,2147483647,2147483647]",
                    "[3037000500,3037000500]", "[1,2147483647]", "[0,2147483647,2147483647]", "[536870912]",
                    "[1073741824,4]"]);
                entry!["shape"] = Json(value);
                if (random.Next(2) == 0)
                {
                    var begin = entry["data_offsets"]![0]!.GetValue<long>();
                    entry["data_offsets"] = new JsonArray(begin, begin + (random.Next(2) == 0 ? 17179869184L : 8589934592L));
                }
                return Done($"'{name}' shape {value}, offsets {entry["data_offsets"]!.ToJsonString()}");
            }
            case 3:
            {
                var value = Pick(BadContainers);
                entry!["shape"] = Json(value);
                return Done($"'{name}' shape {value}");
            }
            case 4:
            {
                var offsets = entry!["data_offsets"]!.AsArray();
                var begin = offsets[0]!.GetValue<long>();
                var end = offsets[1]!.GetValue<long>();
                var length = image.Data.Length;
                var candidates = new (long, long)[]
                {
                    (end, begin), (begin, end + 1), (begin - 1, end), (begin + 1, end + 1), (begin - 2, end - 2),
                    (0, long.MaxValue), (long.MaxValue - 1, long.MaxValue), (-1, end), (begin, -1), (length, length + end - begin),
                    (long.MinValue, end), (begin + length, end + length), (0, length), (begin, begin),
                };
                var (b, e) = candidates[random.Next(candidates.Length)];
                entry["data_offsets"] = new JsonArray(b, e);
                return Done($"'{name}' data_offsets [{b}, {e}]");
            }
            case 5:
            {
                var begin = entry!["data_offsets"]![0]!.ToJsonString();
                var end = entry["data_offsets"]![1]!.ToJsonString();
                var value = Pick([$"[\"{begin}\",\"{end}\"]", $"[{begin}]", $"[{begin},{end},{end}]", "[]", "null", "\"0-4\"",
                    $"[{begin}.5,{end}]", $"[{begin},null]", $"[true,{end}]", $"[{begin},{Pick(BadNumbers)}]",
                    $"[{Pick(BadNumbers)},{end}]", $"{{\"0\":{begin},\"1\":{end}}}", $"[[{begin}],[{end}]]"]);
                entry["data_offsets"] = Json(value);
                return Done($"'{name}' data_offsets {value}");
            }
            case 6:
            {
                // Two tensors swap ranges, or one takes another's: overlapping, or equal sizes and still valid.
                var other = tensors[random.Next(tensors.Count)];
                if (image.Header[other].Value is JsonObject otherEntry)
                {
                    var swap = random.Next(2) == 0;
                    var mine = entry!["data_offsets"]!.DeepClone();
                    entry["data_offsets"] = otherEntry["data_offsets"]!.DeepClone();
                    if (swap)
                        otherEntry["data_offsets"] = mine;
                    return Done($"'{name}' {(swap ? "swaps ranges with" : "takes the range of")} '{image.Header[other].Key}'");
                }
                return Done("unchanged");
            }
            case 7:
            {
                var value = Pick(BadContainers);
                image.Header[t] = new(name, Json(value));
                return Done($"'{name}' described by {value}");
            }
            case 8:
            {
                var field = Pick(["dtype", "shape", "data_offsets"]);
                entry!.Remove(field);
                return Done($"'{name}' without {field}");
            }
            case 9:
            {
                entry!["unknown_field"] = Json(Pick(BadContainers));
                return Done($"'{name}' with an unknown field");
            }
            case 10:
            {
                // A duplicate key: the same name again, with the same or another tensor's entry.
                var copy = image.Header[tensors[random.Next(tensors.Count)]].Value?.DeepClone();
                image.Header.Insert(random.Next(image.Header.Count + 1), new(name, copy));
                return Done($"'{name}' named twice");
            }
            default:
            {
                var weird = Pick(["", " ", "__metadata__", "\u0000", "a\"b", "\uD7FF\uE000", new string('n', 10_000)]);
                image.Header[t] = new(weird, entry);
                return Done($"a tensor named {weird.Length} chars '{(weird.Length > 20 ? weird[..20] : weird)}'");
            }
        }
    }

    /// <summary>A truncation length: inside the length prefix, inside the header, at the header's end, inside the
    /// data, one byte short, or anywhere.</summary>
    private static int TruncationPoint(int length, Random random, SafetensorsImage image)
    {
        var headerEnd = length - image.Data.Length;
        var points = new[] { 0, 1, 7, 8, 9, headerEnd / 2, headerEnd - 1, headerEnd, headerEnd + 1, length - 1, random.Next(length) };
        return Math.Clamp(points[random.Next(points.Length)], 0, Math.Max(0, length - 1));
    }

    /// <summary>Bytes with no structure at all, sometimes behind a plausible length prefix.</summary>
    public static MutatedFile Arbitrary(Random random)
    {
        var bytes = new byte[random.Next(0, 200)];
        random.NextBytes(bytes);
        if (bytes.Length >= 8 && random.Next(2) == 0)
            BitConverter.TryWriteBytes(bytes.AsSpan(0, 8), (ulong)random.Next(0, bytes.Length));
        return new("arbitrary bytes", bytes);
    }
}
