using RetNet.Ilgpu.IO;
using RetNet.Ilgpu.Tensors;

namespace RetNet.Ilgpu.Model;

/// <summary>
/// A set of weights does not fit a config: every missing, unexpected and wrongly shaped tensor is listed by name.
/// </summary>
public sealed class CheckpointMismatchException : IOException
{
    /// <summary>Creates the exception from the three lists (each may be empty).</summary>
    public CheckpointMismatchException(IReadOnlyList<string> missing, IReadOnlyList<string> unexpected,
        IReadOnlyList<string> wrongShape)
        : base(Describe(missing, unexpected, wrongShape))
    {
        Missing = missing;
        Unexpected = unexpected;
        WrongShape = wrongShape;
    }

    /// <summary>Names the config needs that the weights lack.</summary>
    public IReadOnlyList<string> Missing { get; }

    /// <summary>Names in the weights the config has no place for.</summary>
    public IReadOnlyList<string> Unexpected { get; }

    /// <summary>"name: expected [..], got [..]" for each tensor of the wrong shape.</summary>
    public IReadOnlyList<string> WrongShape { get; }

    private static string Describe(IReadOnlyList<string> missing, IReadOnlyList<string> unexpected,
        IReadOnlyList<string> wrongShape)
    {
        var parts = new List<string>();
        if (missing.Count > 0)
            parts.Add($"missing {missing.Count}: {string.Join(", ", missing)}");
        if (unexpected.Count > 0)
            parts.Add($"unexpected {unexpected.Count}: {string.Join(", ", unexpected)}");
        if (wrongShape.Count > 0)
            parts.Add($"wrong shape {wrongShape.Count}: {string.Join("; ", wrongShape)}");
        return $"The weights do not fit the config ({string.Join(" | ", parts)}).";
    }
}

/// <summary>torchscale's parameter names and shapes (RETNET-SPEC.md §4) and the checks of a weight set against them.</summary>
public static class WeightLayout
{
    /// <summary>Every parameter of a model of <paramref name="config"/>, in a fixed order, with its shape;
    /// output_projection.weight only when the output is not tied to the embedding.</summary>
    public static IReadOnlyList<(string Name, int[] Shape)> Expected(RetNetConfig config)
    {
        ArgumentNullException.ThrowIfNull(config);
        int d = config.EmbedDim, value = config.ValueEmbedDim, ffn = config.FfnEmbedDim;
        var list = new List<(string, int[])> { ("embed_tokens.weight", [config.VocabSize, d]) };
        for (var i = 0; i < config.Layers; i++)
        {
            var p = $"layers.{i}.";
            list.Add((p + "retention.q_proj.weight", [d, d]));
            list.Add((p + "retention.k_proj.weight", [d, d]));
            list.Add((p + "retention.v_proj.weight", [value, d]));
            list.Add((p + "retention.g_proj.weight", [value, d]));
            list.Add((p + "retention.out_proj.weight", [d, value]));
            list.Add((p + "retention_layer_norm.weight", [d]));
            list.Add((p + "ffn.fc1.weight", [ffn, d]));
            list.Add((p + "ffn.gate.weight", [ffn, d]));
            list.Add((p + "ffn.fc2.weight", [d, ffn]));
            list.Add((p + "final_layer_norm.weight", [d]));
        }
        list.Add(("layer_norm.weight", [d]));
        if (!config.ShareInputOutputEmbed)
            list.Add(("output_projection.weight", [config.VocabSize, d]));
        return list;
    }

    /// <summary>
    /// Strips an optional <c>decoder.</c> or <c>model.</c> prefix from every name and checks the set against
    /// <paramref name="config"/>. A tied model accepts an output_projection.weight equal to the embedding (PyTorch
    /// state dicts list a tied tensor under both names) and drops it. Returns the weights by canonical name.
    /// </summary>
    /// <exception cref="CheckpointMismatchException">A tensor is missing, unexpected or wrongly shaped (all listed),
    /// or two names collide once the prefix is stripped.</exception>
    public static IReadOnlyDictionary<string, HostTensor> Validate(RetNetConfig config,
        IReadOnlyDictionary<string, HostTensor> weights)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(weights);
        config.Validate();
        var byName = new Dictionary<string, HostTensor>();
        var unexpected = new List<string>();
        foreach (var (name, tensor) in weights)
        {
            var canonical = Canonical(name);
            if (!byName.TryAdd(canonical, tensor))
                unexpected.Add($"{name} (a second tensor for {canonical})");
        }
        var expected = Expected(config);
        var known = expected.Select(e => e.Name).ToHashSet();
        if (config.ShareInputOutputEmbed && byName.TryGetValue("output_projection.weight", out var tied) &&
            byName.TryGetValue("embed_tokens.weight", out var embedding) && tied.Shape.SequenceEqual(embedding.Shape) &&
            tied.Data.AsSpan().SequenceEqual(embedding.Data))
            byName.Remove("output_projection.weight");
        var missing = expected.Where(e => !byName.ContainsKey(e.Name)).Select(e => e.Name).ToList();
        unexpected.AddRange(byName.Keys.Where(n => !known.Contains(n)).Order(StringComparer.Ordinal));
        var wrongShape = expected
            .Where(e => byName.TryGetValue(e.Name, out var t) && !t.Shape.SequenceEqual(e.Shape))
            .Select(e => $"{e.Name}: expected {ShapeCheck.Format(e.Shape)}, got {ShapeCheck.Format(byName[e.Name].Shape)}")
            .ToList();
        if (missing.Count > 0 || unexpected.Count > 0 || wrongShape.Count > 0)
            throw new CheckpointMismatchException(missing, unexpected, wrongShape);
        return byName;
    }

    private static string Canonical(string name) =>
        name.StartsWith("decoder.", StringComparison.Ordinal) ? name["decoder.".Length..]
        : name.StartsWith("model.", StringComparison.Ordinal) ? name["model.".Length..]
        : name;

    /// <summary>
    /// torchscale's initialisation, reproducible from <paramref name="seed"/>: q/k/v/g xavier_uniform with gain 2^−2.5,
    /// out_proj with gain 2^−1 (RETNET-SPEC.md §2), the embedding and an untied output projection N(0, d^−1/2) (as
    /// torchscale's language-model wrappers do), the FFN's linears PyTorch's default U(±1/√fan_in), norm weights 1.
    /// </summary>
    public static IReadOnlyDictionary<string, HostTensor> Initialize(RetNetConfig config, int seed)
    {
        ArgumentNullException.ThrowIfNull(config);
        config.Validate();
        var random = new Random(seed);
        var result = new Dictionary<string, HostTensor>();
        foreach (var (name, shape) in Expected(config))
        {
            var data = new float[ShapeCheck.ElementCount(shape)];
            if (shape.Length == 1)
                Array.Fill(data, 1f);
            else if (name.EndsWith("q_proj.weight", StringComparison.Ordinal) ||
                     name.EndsWith("k_proj.weight", StringComparison.Ordinal) ||
                     name.EndsWith("v_proj.weight", StringComparison.Ordinal) ||
                     name.EndsWith("g_proj.weight", StringComparison.Ordinal))
                Uniform(random, data, Math.Pow(2, -2.5) * Math.Sqrt(6.0 / (shape[0] + shape[1])));
            else if (name.EndsWith("out_proj.weight", StringComparison.Ordinal))
                Uniform(random, data, 0.5 * Math.Sqrt(6.0 / (shape[0] + shape[1])));
            else if (name.StartsWith("layers.", StringComparison.Ordinal))
                Uniform(random, data, 1 / Math.Sqrt(shape[1]));
            else
                Normal(random, data, 1 / Math.Sqrt(config.EmbedDim));
            result.Add(name, new HostTensor(shape, data));
        }
        return result;
    }

    private static void Uniform(Random random, float[] data, double bound)
    {
        for (var i = 0; i < data.Length; i++)
            data[i] = (float)((random.NextDouble() * 2 - 1) * bound);
    }

    private static void Normal(Random random, float[] data, double std)
    {
        // Box–Muller: two uniforms give two independent standard normals.
        for (var i = 0; i < data.Length; i += 2)
        {
            var u1 = 1 - random.NextDouble();
            var u2 = random.NextDouble();
            var radius = Math.Sqrt(-2 * Math.Log(u1));
            data[i] = (float)(std * radius * Math.Cos(2 * Math.PI * u2));
            if (i + 1 < data.Length)
                data[i + 1] = (float)(std * radius * Math.Sin(2 * Math.PI * u2));
        }
    }
}
