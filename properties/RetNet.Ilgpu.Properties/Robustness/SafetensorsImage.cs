using System.Buffers.Binary;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace RetNet.Ilgpu.Properties.Robustness;

/// <summary>
/// A safetensors file taken apart for mutation: the header as an ordered list of (key, JSON value) pairs, so duplicate
/// keys can be expressed, and the data section. <see cref="Serialize"/> puts it back together byte for byte.
/// </summary>
internal sealed class SafetensorsImage
{
    public const string MetadataKey = "__metadata__";

    public List<KeyValuePair<string, JsonNode?>> Header { get; } = [];

    public byte[] Data { get; set; } = [];

    /// <summary>A valid file of 1–4 tensors (F32, F16 or BF16, rank 0–3, dimensions 0–5), stored in a shuffled order,
    /// with random data and sometimes metadata.</summary>
    public static SafetensorsImage RandomValid(Random random)
    {
        var image = new SafetensorsImage();
        var count = random.Next(1, 5);
        var specs = new List<(string Name, string DType, int[] Shape, int Bytes)>();
        for (var i = 0; i < count; i++)
        {
            var dtype = new[] { "F32", "F16", "BF16" }[random.Next(3)];
            var shape = Enumerable.Range(0, random.Next(0, 4)).Select(_ => random.Next(0, 6)).ToArray();
            var bytes = shape.Aggregate(1, (a, b) => a * b) * (dtype == "F32" ? 4 : 2);
            specs.Add(($"layers.{i}.weight", dtype, shape, bytes));
        }
        long offset = 0;
        var entries = new List<KeyValuePair<string, JsonNode?>>();
        foreach (var spec in specs.OrderBy(_ => random.Next()))
        {
            entries.Add(new(spec.Name, new JsonObject
            {
                ["dtype"] = spec.DType,
                ["shape"] = new JsonArray(spec.Shape.Select(d => (JsonNode?)d).ToArray()),
                ["data_offsets"] = new JsonArray(offset, offset + spec.Bytes),
            }));
            offset += spec.Bytes;
        }
        if (random.Next(2) == 0)
            image.Header.Add(new(MetadataKey, new JsonObject { ["format"] = "pt" }));
        image.Header.AddRange(entries.OrderBy(_ => random.Next()));
        image.Data = new byte[offset];
        random.NextBytes(image.Data);
        return image;
    }

    /// <summary>Takes a valid file apart.</summary>
    public static SafetensorsImage Parse(byte[] file)
    {
        var length = (int)BinaryPrimitives.ReadUInt64LittleEndian(file);
        var header = JsonNode.Parse(file.AsSpan(8, length))!.AsObject();
        var image = new SafetensorsImage { Data = file[(8 + length)..] };
        foreach (var (key, value) in header)
            image.Header.Add(new(key, value?.DeepClone()));
        return image;
    }

    /// <summary>The header's JSON text.</summary>
    public string HeaderText() =>
        "{" + string.Join(",", Header.Select(p => $"{JsonSerializer.Serialize(p.Key)}:{p.Value?.ToJsonString() ?? "null"}")) + "}";

    /// <summary>The file's bytes, from <see cref="HeaderText"/> (or <paramref name="headerBytes"/>), with the true header
    /// length unless <paramref name="lengthPrefix"/> overrides it.</summary>
    public byte[] Serialize(byte[]? headerBytes = null, ulong? lengthPrefix = null)
    {
        headerBytes ??= Encoding.UTF8.GetBytes(HeaderText());
        var bytes = new byte[8 + headerBytes.Length + Data.Length];
        BinaryPrimitives.WriteUInt64LittleEndian(bytes, lengthPrefix ?? (ulong)headerBytes.Length);
        headerBytes.CopyTo(bytes, 8);
        Data.CopyTo(bytes, 8 + headerBytes.Length);
        return bytes;
    }

    /// <summary>The indices of <see cref="Header"/> that describe tensors.</summary>
    public List<int> TensorIndices() =>
        Enumerable.Range(0, Header.Count).Where(i => Header[i].Key != MetadataKey).ToList();
}
