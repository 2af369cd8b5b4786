using System.Text.Json;
using System.Text.Json.Nodes;
using RetNet.Ilgpu.Tensors;

namespace RetNet.Ilgpu.IO;

/// <summary>
/// Weights split over several safetensors files, as Hugging Face's <c>save_pretrained</c> writes them:
/// <c>model-0000k-of-0000n.safetensors</c> beside <c>model.safetensors.index.json</c>, whose <c>weight_map</c> names
/// the file of every tensor and whose <c>metadata.total_size</c> counts their bytes.
/// </summary>
/// <remarks>
/// Several files cannot be replaced at once, so a save writes every shard first (each atomically), then the index.
/// Both carry the same random save id (<c>retnet_save_id</c>, in each shard's <c>__metadata__</c> and in the index's
/// <c>metadata</c>): a save killed between its shards and its index leaves shards whose id the index does not know,
/// and <see cref="Read"/> refuses that mix by name instead of loading half of one save and half of another. Files from
/// other writers have no id and are read as they are.
/// </remarks>
public static class ShardedSafetensors
{
    /// <summary>The index's file name.</summary>
    public const string IndexFile = "model.safetensors.index.json";

    /// <summary>The key of the save id in the shards' and the index's metadata.</summary>
    public const string SaveIdKey = "retnet_save_id";

    /// <summary>The name of shard <paramref name="index"/> (1-based) of <paramref name="count"/>.</summary>
    public static string ShardName(int index, int count) => $"model-{index:D5}-of-{count:D5}.safetensors";

    /// <summary>
    /// Reads every shard the index at <paramref name="indexPath"/> names and checks them against it: every shard
    /// exists, holds exactly the tensors the index maps to it, and comes from the same save as the index.
    /// </summary>
    /// <param name="indexPath">The index file.</param>
    /// <param name="map">Map the shards read-only (<see cref="MappedSafetensors"/>) instead of reading them; the
    /// result's <see cref="SafetensorsFile.Mapping"/> then releases every shard's mapping.</param>
    /// <returns>The tensors of all shards, with the first shard's metadata.</returns>
    /// <exception cref="SafetensorsFormatException">The index is malformed, a shard does not hold what the index says,
    /// or the shards come from another save than the index.</exception>
    /// <exception cref="FileNotFoundException">A shard the index names is absent.</exception>
    public static SafetensorsFile Read(string indexPath, bool map = false)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(indexPath);
        var mappings = new List<MappedSafetensors>();
        try
        {
            var file = ReadShards(indexPath, map ? mappings : null);
            return map ? file with { Mapping = new Mappings(mappings) } : file;
        }
        catch
        {
            foreach (var mapping in mappings)
                mapping.Dispose();
            throw;
        }
    }

    private static SafetensorsFile ReadShards(string indexPath, List<MappedSafetensors>? mappings)
    {
        var (weightMap, indexMetadata) = ReadIndex(indexPath);
        var folder = Path.GetDirectoryName(Path.GetFullPath(indexPath))!;
        indexMetadata.TryGetValue(SaveIdKey, out var saveId);
        var tensors = new Dictionary<string, HostTensor>(StringComparer.Ordinal);
        var entries = new List<SafetensorsEntry>();
        IReadOnlyDictionary<string, string>? metadata = null;
        foreach (var shard in weightMap.GroupBy(p => p.Value, p => p.Key, StringComparer.Ordinal))
        {
            var path = Path.Combine(folder, shard.Key);
            if (!File.Exists(path))
                throw new FileNotFoundException(
                    $"{indexPath} maps {shard.Count()} tensors (e.g. {shard.First()}) to {shard.Key}, which is absent.",
                    path);
            SafetensorsFile file;
            if (mappings is null)
                file = Safetensors.Read(path);
            else
            {
                var mapped = MappedSafetensors.Open(path);
                mappings.Add(mapped);
                file = mapped.File;
            }
            var expected = shard.ToHashSet(StringComparer.Ordinal);
            var absent = expected.Where(n => !file.Tensors.ContainsKey(n)).Order(StringComparer.Ordinal).ToList();
            var extra = file.Tensors.Keys.Where(n => !expected.Contains(n)).Order(StringComparer.Ordinal).ToList();
            if (absent.Count > 0 || extra.Count > 0)
                throw new SafetensorsFormatException(
                    $"{path} does not hold what {indexPath} maps to it: " +
                    string.Join("; ", new[]
                    {
                        absent.Count > 0 ? $"absent: {string.Join(", ", absent.Take(8))}{More(absent)}" : null,
                        extra.Count > 0 ? $"not in the index: {string.Join(", ", extra.Take(8))}{More(extra)}" : null,
                    }.Where(s => s is not null)) + ".");
            file.Metadata.TryGetValue(SaveIdKey, out var shardId);
            if (saveId != shardId)
                throw new SafetensorsFormatException(
                    $"{path} was written by another save than {indexPath} (save id {shardId ?? "none"}, the index's " +
                    $"{saveId ?? "none"}): a save was interrupted between its shards and its index. Save the model " +
                    "again, or restore the folder.");
            foreach (var (name, tensor) in file.Tensors)
                tensors.Add(name, tensor);
            entries.AddRange(file.Entries);
            metadata ??= file.Metadata;
        }
        return new SafetensorsFile(tensors, metadata ?? new Dictionary<string, string>(), entries);
    }

    /// <summary>
    /// Writes <paramref name="tensors"/> into <paramref name="folder"/> as shards of at most
    /// <paramref name="maxShardBytes"/> (a tensor larger than that gets a shard of its own), in the order given,
    /// then the index; every file atomically, all with one save id (see the remarks of
    /// <see cref="ShardedSafetensors"/>).
    /// </summary>
    /// <returns>The shard file names, in order.</returns>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="maxShardBytes"/> is not positive.</exception>
    public static IReadOnlyList<string> Write(string folder, IReadOnlyList<(string Name, HostTensor Tensor)> tensors,
        IReadOnlyDictionary<string, string> metadata, long maxShardBytes)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(folder);
        ArgumentNullException.ThrowIfNull(tensors);
        ArgumentNullException.ThrowIfNull(metadata);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(maxShardBytes);
        var groups = new List<List<(string Name, HostTensor Tensor)>> { new() };
        long size = 0, total = 0;
        foreach (var item in tensors)
        {
            var bytes = item.Tensor.Length * (long)TensorDTypes.SizeOf(item.Tensor.DType);
            if (groups[^1].Count > 0 && size + bytes > maxShardBytes)
            {
                groups.Add([]);
                size = 0;
            }
            groups[^1].Add(item);
            size += bytes;
            total += bytes;
        }
        Directory.CreateDirectory(folder);
        var saveId = Guid.NewGuid().ToString("N");
        var shardMetadata = new Dictionary<string, string>(metadata) { [SaveIdKey] = saveId };
        var names = new List<string>();
        var weightMap = new JsonObject();
        for (var i = 0; i < groups.Count; i++)
        {
            var name = ShardName(i + 1, groups.Count);
            Safetensors.Write(Path.Combine(folder, name), groups[i].ToDictionary(p => p.Name, p => p.Tensor),
                shardMetadata);
            names.Add(name);
            foreach (var (tensor, _) in groups[i])
                weightMap[tensor] = name;
        }
        var index = new JsonObject
        {
            ["metadata"] = new JsonObject { ["total_size"] = total, [SaveIdKey] = saveId },
            ["weight_map"] = new JsonObject(weightMap.OrderBy(p => p.Key, StringComparer.Ordinal)
                .Select(p => KeyValuePair.Create(p.Key, (JsonNode?)p.Value!.GetValue<string>()))),
        };
        AtomicFile.WriteAllText(Path.Combine(folder, IndexFile),
            index.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n");
        return names;
    }

    /// <summary>The shard files the index at <paramref name="indexPath"/> names, as paths beside it, in name order.</summary>
    /// <exception cref="SafetensorsFormatException">The index is malformed.</exception>
    public static IReadOnlyList<string> ShardFiles(string indexPath)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(indexPath);
        var folder = Path.GetDirectoryName(Path.GetFullPath(indexPath))!;
        return [.. ReadIndex(indexPath).WeightMap.Values.Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal)
            .Select(file => Path.Combine(folder, file))];
    }

    /// <summary>The header entries of every shard the index at <paramref name="indexPath"/> names, by shard file, without
    /// reading the tensors.</summary>
    /// <exception cref="SafetensorsFormatException">The index or a shard's header is malformed.</exception>
    /// <exception cref="FileNotFoundException">A shard the index names is absent.</exception>
    public static IReadOnlyList<(string File, IReadOnlyList<SafetensorsEntry> Entries)> ReadEntries(string indexPath) =>
    [
        .. ShardFiles(indexPath).Select(path => File.Exists(path)
            ? (Path.GetFileName(path), Safetensors.ReadEntries(path))
            : throw new FileNotFoundException($"{indexPath} names {Path.GetFileName(path)}, which is absent.", path)),
    ];

    /// <summary>The index's weight map (tensor → shard file) and its string metadata.</summary>
    private static (Dictionary<string, string> WeightMap, Dictionary<string, string> Metadata) ReadIndex(string path)
    {
        JsonObject root;
        try
        {
            root = JsonNode.Parse(File.ReadAllText(path)) as JsonObject
                   ?? throw new SafetensorsFormatException($"{path} is not a JSON object.");
        }
        catch (JsonException e)
        {
            throw new SafetensorsFormatException($"{path} is not valid JSON: {e.Message}");
        }
        if (root["weight_map"] is not JsonObject map || map.Count == 0)
            throw new SafetensorsFormatException($"{path} has no weight_map (an object naming each tensor's file).");
        var weightMap = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var (name, value) in map)
        {
            if (value is not JsonValue v || v.GetValueKind() != JsonValueKind.String)
                throw new SafetensorsFormatException($"{path}: weight_map's {name} is not a file name.");
            var file = v.GetValue<string>();
            if (file.Length == 0 || Path.GetFileName(file) != file)
                throw new SafetensorsFormatException(
                    $"{path}: weight_map's {name} names '{file}'; expected a file name in the same folder.");
            weightMap[name] = file;
        }
        var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
        if (root["metadata"] is JsonObject meta)
        {
            foreach (var (key, value) in meta)
            {
                if (value is JsonValue v)
                    metadata[key] = v.GetValueKind() == JsonValueKind.String ? v.GetValue<string>() : v.ToJsonString();
            }
        }
        return (weightMap, metadata);
    }

    /// <summary>The mappings of every shard, released together.</summary>
    private sealed class Mappings(IReadOnlyList<MappedSafetensors> shards) : IDisposable
    {
        public void Dispose()
        {
            foreach (var shard in shards)
                shard.Dispose();
        }
    }

    private static string More(IReadOnlyCollection<string> names) => names.Count > 8 ? $" and {names.Count - 8} more" : "";
}
