using System.Security.Cryptography;
using System.Text;
using RetNet.Ilgpu.IO;

namespace RetNet.Ilgpu.Model;

/// <summary>What <see cref="ModelFolder.Read"/> found: the config to use, the weights, and what it had to decide.</summary>
/// <param name="ConfigJson">The config JSON the weights belong to.</param>
/// <param name="ConfigOrigin">Where that JSON came from, for messages: config.json's path, or the weights file's
/// embedded copy.</param>
/// <param name="Weights">The weights file's contents.</param>
/// <param name="Notices">Sentences for the user when config.json was not used as it stands; empty otherwise.</param>
public sealed record ModelFolderContents(string ConfigJson, string ConfigOrigin, SafetensorsFile Weights,
    IReadOnlyList<string> Notices);

/// <summary>
/// A model folder, config.json beside model.safetensors, written so that a process killed at any point leaves a
/// folder that loads as one whole saved version, never new weights with an old config.
/// </summary>
/// <remarks>
/// Two files cannot be renamed into place at once (and a directory cannot be swapped over an existing one
/// atomically on Linux), so one file is the commit point: model.safetensors. Its <c>__metadata__</c> holds the config
/// JSON (key <c>config</c>) and, when the save changes config.json, the SHA-256 of the one it supersedes (key
/// <c>replaces_config_sha256</c>);
/// it is renamed into place first, config.json second. A kill between the two leaves exactly the superseded
/// config.json beside the new weights, which <see cref="Read"/> recognises by its hash and replaces with the embedded
/// config. A config.json edited after the save has another hash and is used as it stands (with a notice, since it
/// differs from what the weights were saved with), unless it does not fit the weights and the embedded config does.
/// Folders without an embedded config (torchscale's, older saves) read config.json alone, as before. torchscale reads
/// only the tensors, so the extra metadata keys change nothing for it.
/// </remarks>
public static class ModelFolder
{
    /// <summary>The config file's name.</summary>
    public const string ConfigFile = "config.json";

    /// <summary>The weights file's name.</summary>
    public const string WeightsFile = "model.safetensors";

    /// <summary>The metadata key of the embedded config JSON.</summary>
    public const string ConfigKey = "config";

    /// <summary>The metadata key of the SHA-256 (hex) of the config.json the save superseded.</summary>
    public const string ReplacesKey = "replaces_config_sha256";

    /// <summary>Weights larger than this are saved in shards of at most this size (Hugging Face's layout,
    /// <see cref="ShardedSafetensors"/>); smaller ones in model.safetensors.</summary>
    public const long MaxShardBytes = 2L << 30;

    /// <summary>
    /// Writes <paramref name="tensors"/> to model.safetensors with <paramref name="configJson"/> embedded, then
    /// config.json, each atomically (see the remarks of <see cref="ModelFolder"/> for why in this order). Weights over
    /// <paramref name="maxShardBytes"/> go to shards and their index instead (the index is then the commit point),
    /// and the layout the save did not use is removed from the folder once the save is complete, so that it holds one
    /// saved version.
    /// </summary>
    public static void Write(string folder, string configJson, IReadOnlyDictionary<string, HostTensor> tensors,
        IReadOnlyDictionary<string, string> metadata, long maxShardBytes = MaxShardBytes)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(folder);
        ArgumentNullException.ThrowIfNull(configJson);
        ArgumentNullException.ThrowIfNull(tensors);
        ArgumentNullException.ThrowIfNull(metadata);
        Directory.CreateDirectory(folder);
        var configPath = Path.Combine(folder, ConfigFile);
        var withConfig = new Dictionary<string, string>(metadata) { [ConfigKey] = configJson };
        // Only a config.json that this save changes needs recognising later; leaving the key out otherwise keeps a
        // re-save (a training checkpoint) byte-identical to a save into a fresh folder.
        if (File.Exists(configPath) && File.ReadAllBytes(configPath) is var superseded &&
            !superseded.AsSpan().SequenceEqual(Encoding.UTF8.GetBytes(configJson)))
            withConfig[ReplacesKey] = Sha256(superseded);
        var bytes = tensors.Values.Sum(t => t.Length * (long)Tensors.TensorDTypes.SizeOf(t.DType));
        var indexPath = Path.Combine(folder, ShardedSafetensors.IndexFile);
        if (bytes > maxShardBytes)
        {
            var previous = StaleShards(folder);
            var written = ShardedSafetensors.Write(folder,
                [.. tensors.OrderBy(p => p.Key, StringComparer.Ordinal).Select(p => (p.Key, p.Value))], withConfig,
                maxShardBytes);
            AtomicFile.WriteAllText(configPath, configJson);
            File.Delete(Path.Combine(folder, WeightsFile));
            foreach (var stale in previous.Except(written))
                File.Delete(Path.Combine(folder, stale));
        }
        else
        {
            Safetensors.Write(Path.Combine(folder, WeightsFile), tensors, withConfig);
            AtomicFile.WriteAllText(configPath, configJson);
            if (File.Exists(indexPath))
            {
                var previous = StaleShards(folder);
                File.Delete(indexPath);
                foreach (var stale in previous)
                    File.Delete(Path.Combine(folder, stale));
            }
        }
    }

    /// <summary>The folder's weight files: model.safetensors, else the shards its index names (none when it has
    /// neither).</summary>
    /// <exception cref="SafetensorsFormatException">The index is malformed.</exception>
    public static IReadOnlyList<string> WeightFiles(string folder)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(folder);
        var single = Path.Combine(folder, WeightsFile);
        if (File.Exists(single))
            return [single];
        var index = Path.Combine(folder, ShardedSafetensors.IndexFile);
        return File.Exists(index) ? ShardedSafetensors.ShardFiles(index) : [];
    }

    /// <summary>The shard files the folder's current index names (none without an index, or with one that does not
    /// parse).</summary>
    private static IReadOnlyList<string> StaleShards(string folder)
    {
        var index = Path.Combine(folder, ShardedSafetensors.IndexFile);
        try
        {
            return File.Exists(index)
                ? [.. ShardedSafetensors.ShardFiles(index).Select(Path.GetFileName).OfType<string>()]
                : [];
        }
        catch (SafetensorsFormatException)
        {
            return [];
        }
    }

    /// <summary>
    /// Writes a model of <paramref name="config"/> with the parameters <paramref name="weights"/> (already on the
    /// host) to <paramref name="folder"/>, with what the architecture's checkpoints hold besides (see
    /// <see cref="ILanguageModel.Save"/>).
    /// </summary>
    internal static void Save(string folder, ModelConfig config, IReadOnlyDictionary<string, HostTensor> weights)
    {
        var (extra, metadata) = config.SaveExtras(weights);
        var tensors = new Dictionary<string, HostTensor>(weights);
        foreach (var (name, tensor) in extra)
            tensors.Add(name, tensor);
        Write(folder, config.ToJson(), tensors, metadata);
    }

    /// <summary>
    /// Reads the folder's weights and decides which config they belong to (see the remarks of
    /// <see cref="ModelFolder"/>).
    /// </summary>
    /// <exception cref="FileNotFoundException">model.safetensors is absent, or config.json is absent and the weights
    /// embed no config.</exception>
    /// <exception cref="SafetensorsFormatException">model.safetensors is malformed.</exception>
    /// <param name="folder">The model folder.</param>
    /// <param name="map">Memory-map model.safetensors instead of reading it: its tensors are then views of
    /// <see cref="SafetensorsFile.Mapping"/>, which the caller disposes.</param>
    public static ModelFolderContents Read(string folder, bool map = false)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(folder);
        var configPath = Path.Combine(folder, ConfigFile);
        var weightsPath = Path.Combine(folder, WeightsFile);
        var indexPath = Path.Combine(folder, ShardedSafetensors.IndexFile);
        // As Hugging Face's loader does, a single model.safetensors comes before an index of shards.
        var sharded = !File.Exists(weightsPath) && File.Exists(indexPath);
        var configBytes = File.Exists(configPath) ? File.ReadAllBytes(configPath) : null;
        if (configBytes is null && !File.Exists(weightsPath) && !sharded)
            throw new FileNotFoundException($"The model folder {folder} has no {ConfigFile}.", configPath);
        if (!File.Exists(weightsPath) && !sharded)
            throw new FileNotFoundException(
                $"The model folder {folder} has no {WeightsFile} (nor {ShardedSafetensors.IndexFile}).", weightsPath);
        var weights = sharded
            ? ShardedSafetensors.Read(indexPath, map)
            : map ? MappedSafetensors.Open(weightsPath).File : Safetensors.Read(weightsPath);
        if (sharded)
            weightsPath = indexPath;
        try
        {
            return Decide(folder, configPath, weightsPath, configBytes, weights);
        }
        catch
        {
            weights.Mapping?.Dispose();
            throw;
        }
    }

    private static ModelFolderContents Decide(string folder, string configPath, string weightsPath, byte[]? configBytes,
        SafetensorsFile weights)
    {
        var embeddedOrigin = $"{weightsPath} (the config saved with the weights)";
        weights.Metadata.TryGetValue(ConfigKey, out var embedded);
        if (configBytes is null)
        {
            return embedded is null
                ? throw new FileNotFoundException($"The model folder {folder} has no {ConfigFile}.", configPath)
                : new ModelFolderContents(embedded, embeddedOrigin, weights,
                    [$"{folder} has no {ConfigFile}; using the config saved in {WeightsFile}."]);
        }
        var onDisk = Encoding.UTF8.GetString(configBytes);
        if (embedded is null || SameConfig(onDisk, embedded))
            return new ModelFolderContents(onDisk, configPath, weights, []);
        if (weights.Metadata.TryGetValue(ReplacesKey, out var replaced) && replaced == Sha256(configBytes))
            return new ModelFolderContents(embedded, embeddedOrigin, weights,
            [
                $"{configPath} is the one the last save replaced: that save was interrupted between {WeightsFile} and " +
                $"{ConfigFile}. Using the config saved in {WeightsFile}; saving the model again rewrites {ConfigFile}.",
            ]);
        var misfit = Misfit(onDisk, weights.Tensors);
        if (misfit is not null && Misfit(embedded, weights.Tensors) is null)
            return new ModelFolderContents(embedded, embeddedOrigin, weights,
                [$"{configPath} does not fit the weights ({misfit}); using the config saved in {WeightsFile}."]);
        return new ModelFolderContents(onDisk, configPath, weights,
        [
            $"{configPath} differs from the config {WeightsFile} was saved with (edited since?); using {ConfigFile}.",
        ]);
    }

    /// <summary>True when both texts parse to the same config (formatting and ignored fields aside).</summary>
    private static bool SameConfig(string a, string b) =>
        a == b || (Normalised(a) is { } x && x == Normalised(b));

    private static string? Normalised(string json)
    {
        try
        {
            return ModelConfig.FromJson(json).ToJson();
        }
        catch (ArgumentException)
        {
            return null;
        }
    }

    /// <summary>Why <paramref name="json"/> cannot describe <paramref name="weights"/>, or null when it can.</summary>
    private static string? Misfit(string json, IReadOnlyDictionary<string, HostTensor> weights)
    {
        try
        {
            ModelConfig.FromJson(json).Resolve(weights);
            return null;
        }
        catch (Exception e) when (e is ArgumentException or CheckpointMismatchException)
        {
            return e.Message;
        }
    }

    private static string Sha256(byte[] bytes) => Convert.ToHexStringLower(SHA256.HashData(bytes));
}
