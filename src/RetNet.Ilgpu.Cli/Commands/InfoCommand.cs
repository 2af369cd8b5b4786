using System.CommandLine;
using System.Text.Json.Nodes;
using RetNet.Ilgpu.IO;
using RetNet.Ilgpu.Model;

namespace RetNet.Ilgpu.Cli.Commands;

/// <summary>
/// <c>retnet info --model DIR</c>: what a model folder holds and whether the library runs it, read from the config and
/// the safetensors headers alone (a multi-gigabyte folder is described in milliseconds).
/// </summary>
internal static class InfoCommand
{
    public static Command Create()
    {
        var modelDir = new Option<DirectoryInfo>("--model") { Description = "A model folder.", Required = true };
        var command = new Command("info",
            "Describe a model folder: convention, sizes, parameters, dtypes and bytes, tokenizer, and what the " +
            "library would refuse and why (exit code 1 when it would).")
        {
            modelDir,
        };
        command.SetAction(parse => CommonOptions.Run(() => Describe(parse.GetValue(modelDir)!.FullName)));
        return command;
    }

    private static int Describe(string folder)
    {
        if (!Directory.Exists(folder))
            throw new DirectoryNotFoundException($"--model {folder}: no such folder.");
        Console.WriteLine($"folder: {folder}");
        var refusals = new List<string>();

        var files = WeightFiles(folder, refusals);
        var entries = files.SelectMany(f => f.Entries).ToList();
        var bytesOnDisk = files.Sum(f => new FileInfo(Path.Combine(folder, f.File)).Length);
        if (files.Count > 0)
        {
            Console.WriteLine($"weights: {string.Join(", ", files.Select(f => f.File))} " +
                              $"({Format.Bytes(bytesOnDisk)} on disk, {entries.Count} tensors)");
            foreach (var group in entries.GroupBy(e => e.DType).OrderBy(g => g.Key))
                Console.WriteLine($"  {group.Key}: {group.Count()} tensors, " +
                                  $"{group.Sum(e => e.Shape.Aggregate(1L, (a, b) => a * b)):N0} values, " +
                                  $"{Format.Bytes(group.Sum(e => e.End - e.Begin))}");
        }

        var configPath = Path.Combine(folder, ModelFolder.ConfigFile);
        ModelConfig? config = null;
        if (!File.Exists(configPath))
            refusals.Add($"{ModelFolder.ConfigFile} is absent");
        else
        {
            var json = File.ReadAllText(configPath);
            try
            {
                config = ModelConfig.FromJson(json);
            }
            catch (ArgumentException e)
            {
                refusals.Add($"{ModelFolder.ConfigFile}: {e.Message}");
                Console.WriteLine($"config: model_type {ModelType(json)} (not runnable, see below)");
            }
        }
        if (config is not null)
        {
            Console.WriteLine($"convention: {config.Convention} ({config.Architecture}); {config.Summary}");
            Console.WriteLine($"parameters: {config.ParameterCount():N0}" +
                              (config.StoredType is { } stored ? $"; config says {stored}" : ""));
            if (entries.Count > 0)
                refusals.AddRange(Mismatches(config, entries));
        }

        Console.WriteLine($"tokenizer: {Tokenizer(folder, config)}");
        if (refusals.Count == 0)
        {
            Console.WriteLine("runs: yes (forward, generate, eval, gradients, train)");
            return 0;
        }
        Console.WriteLine("runs: no");
        foreach (var refusal in refusals)
            Console.WriteLine($"  refused: {refusal}");
        return 1;
    }

    /// <summary>The weight files' header entries: model.safetensors, else the shards an index names.</summary>
    private static List<(string File, IReadOnlyList<SafetensorsEntry> Entries)> WeightFiles(string folder,
        List<string> refusals)
    {
        try
        {
            if (File.Exists(Path.Combine(folder, ModelFolder.WeightsFile)))
                return [(ModelFolder.WeightsFile, Safetensors.ReadEntries(Path.Combine(folder, ModelFolder.WeightsFile)))];
            if (File.Exists(Path.Combine(folder, ShardedSafetensors.IndexFile)))
                return [.. ShardedSafetensors.ReadEntries(Path.Combine(folder, ShardedSafetensors.IndexFile))];
            refusals.Add($"no {ModelFolder.WeightsFile} nor {ShardedSafetensors.IndexFile}");
        }
        catch (Exception e) when (e is IOException)
        {
            refusals.Add(e.Message);
        }
        return [];
    }

    /// <summary>What the weights lack, hold besides, or hold in another shape than the config needs.</summary>
    private static IEnumerable<string> Mismatches(ModelConfig config, IReadOnlyList<SafetensorsEntry> entries)
    {
        var byName = entries.ToDictionary(e => e.Name, e => e.Shape, StringComparer.Ordinal);
        var expected = config.ExpectedWeights();
        var names = expected.Select(e => e.Name).ToHashSet(StringComparer.Ordinal);
        var missing = expected.Where(e => !byName.ContainsKey(e.Name)).Select(e => e.Name).ToList();
        var shapes = expected.Where(e => byName.TryGetValue(e.Name, out var s) && !s.SequenceEqual(e.Shape))
            .Select(e => $"{e.Name} is {Tensors.ShapeCheck.Format(byName[e.Name])}, expected {Tensors.ShapeCheck.Format(e.Shape)}")
            .ToList();
        if (missing.Count > 0)
            yield return $"the weights lack {missing.Count} tensors the config needs: {string.Join(", ", missing.Take(6))}";
        foreach (var shape in shapes.Take(6))
            yield return shape;
        // Extra tensors may be buffers or a tied projection the loader accepts; name them without refusing.
        var extra = byName.Keys.Where(n => !names.Contains(n)).Order(StringComparer.Ordinal).ToList();
        if (extra.Count > 0)
            Console.WriteLine($"extra tensors (buffers or a tied projection are accepted; others are refused on " +
                              $"load): {string.Join(", ", extra.Take(6))}{(extra.Count > 6 ? ", …" : "")}");
    }

    private static string Tokenizer(string folder, ModelConfig? config)
    {
        if (File.Exists(Path.Combine(folder, "tokenizer.model")))
            return "tokenizer.model (SentencePiece)";
        return config?.VocabSize switch
        {
            256 => "none in the folder; the built-in byte tokenizer fits the vocabulary of 256",
            50257 => "none in the folder; the built-in GPT-2 tokenizer fits the vocabulary of 50257",
            _ => "none in the folder (token ids only: forward, gradients, eval on .bin data)",
        };
    }

    private static string ModelType(string json)
    {
        try
        {
            return JsonNode.Parse(json)?["model_type"]?.ToJsonString() ?? "absent";
        }
        catch (System.Text.Json.JsonException)
        {
            return "unreadable";
        }
    }
}
