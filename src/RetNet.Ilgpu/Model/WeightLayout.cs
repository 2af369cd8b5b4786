using System.Globalization;
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

/// <summary>torchscale's parameter and buffer names and shapes (docs/MATH.md §8) and the checks of a weight set
/// against them.</summary>
public static class WeightLayout
{
    /// <summary>torchscale's buffer of rotation angles [Dk]: θ_i once for each element of the pair (2i, 2i+1).</summary>
    public const string AngleBuffer = "retnet_rel_pos.angle";

    /// <summary>torchscale's buffer of the decays [H], as log γ_h.</summary>
    public const string DecayBuffer = "retnet_rel_pos.decay";

    /// <summary>
    /// How far a buffer may stand from the config's value, relative, and still be the same value stored in a low
    /// precision: bf16 keeps 8 significant bits, so its rounding error is at most 2^−9.
    /// </summary>
    private const double AngleTolerance = 1.0 / 256;

    /// <summary>Relative difference of log γ below which the decay buffer is the config's schedule rounded to fp32
    /// (a few ulps of fp32's 2^−24).</summary>
    private const double DecayTolerance = 4.0 / (1 << 24);

    /// <summary>Twice the spacing of fp32 values just below 1 (2^−24): a γ that close to the config's is the same
    /// decay as far as an fp32 buffer can tell.</summary>
    private const double FloatResolutionBelowOne = 2.0 / (1 << 24);

    /// <summary>Every parameter of a model of <paramref name="config"/>, in a fixed order, with its shape:
    /// layernorm_embedding.weight only with <see cref="RetNetConfig.LayerNormEmbedding"/>, layer_norm.weight only for
    /// pre-norm blocks, output_projection.weight only when the output is not tied to the embedding.</summary>
    public static IReadOnlyList<(string Name, int[] Shape)> Expected(RetNetConfig config)
    {
        ArgumentNullException.ThrowIfNull(config);
        return config.Spec().Weights();
    }

    /// <summary>
    /// torchscale's two buffers for <paramref name="config"/>: the angles [Dk] and log γ [H], in fp32. Saved with
    /// every model so that torchscale's strict load_state_dict accepts the file.
    /// </summary>
    public static IReadOnlyDictionary<string, HostTensor> Buffers(RetNetConfig config)
    {
        ArgumentNullException.ThrowIfNull(config);
        var half = Kernels.Rotation.ThetaShift.Angles(config.KeyHeadDim);
        var angles = new float[config.KeyHeadDim];
        for (var i = 0; i < angles.Length; i++)
            angles[i] = half[i / 2];
        var decay = config.Decay().Gammas.Select(g => (float)Math.Log(g)).ToArray();
        return new Dictionary<string, HostTensor>
        {
            [AngleBuffer] = new([angles.Length], angles),
            [DecayBuffer] = new([decay.Length], decay),
        };
    }

    /// <summary>
    /// Strips an optional <c>decoder.</c> or <c>model.</c> prefix from every name, takes torchscale's buffers out and
    /// checks the parameters against <paramref name="config"/>. A tied model accepts an output_projection.weight equal
    /// to the embedding (PyTorch state dicts list a tied tensor under both names) and drops it. The angle buffer must
    /// equal what the config implies (to bf16 rounding). A decay buffer that differs from the config's decays beyond
    /// fp32 rounding means the model was trained with other decays: the result's config then carries the buffer's
    /// values as <see cref="RetNetConfig.RetentionDecay"/>, and a notice says so.
    /// </summary>
    /// <exception cref="ArgumentException">The config is invalid, or the angle buffer does not match it.</exception>
    /// <exception cref="CheckpointMismatchException">A tensor is missing, unexpected or wrongly shaped (all listed),
    /// or two names collide once the prefix is stripped.</exception>
    public static ResolvedWeights Resolve(RetNetConfig config, IReadOnlyDictionary<string, HostTensor> weights)
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
        var wrongShape = new List<string>();
        var notices = new List<string>();
        if (byName.Remove(AngleBuffer, out var angle))
        {
            if (angle.Shape.SequenceEqual([config.KeyHeadDim]))
                CheckAngles(config, angle);
            else
                wrongShape.Add(ShapeMismatch(AngleBuffer, [config.KeyHeadDim], angle.Shape));
        }
        if (byName.Remove(DecayBuffer, out var decay))
        {
            if (decay.Shape.SequenceEqual([config.RetentionHeads]))
                config = ApplyDecayBuffer(config, decay, notices);
            else
                wrongShape.Add(ShapeMismatch(DecayBuffer, [config.RetentionHeads], decay.Shape));
        }
        var expected = Expected(config);
        var known = expected.Select(e => e.Name).ToHashSet();
        if (config.ShareInputOutputEmbed && byName.TryGetValue("output_projection.weight", out var tied) &&
            byName.TryGetValue("embed_tokens.weight", out var embedding) && tied.Shape.SequenceEqual(embedding.Shape) &&
            tied.Data.AsSpan().SequenceEqual(embedding.Data))
            byName.Remove("output_projection.weight");
        var missing = expected.Where(e => !byName.ContainsKey(e.Name)).Select(e => e.Name).ToList();
        unexpected.AddRange(byName.Keys.Where(n => !known.Contains(n)).Order(StringComparer.Ordinal));
        wrongShape.AddRange(expected
            .Where(e => byName.TryGetValue(e.Name, out var t) && !t.Shape.SequenceEqual(e.Shape))
            .Select(e => ShapeMismatch(e.Name, e.Shape, byName[e.Name].Shape)));
        if (missing.Count > 0 || unexpected.Count > 0 || wrongShape.Count > 0)
            throw new CheckpointMismatchException(missing, unexpected, wrongShape);
        return new ResolvedWeights(config, byName, notices);
    }

    private static string ShapeMismatch(string name, int[] expected, int[] actual) =>
        $"{name}: expected {ShapeCheck.Format(expected)}, got {ShapeCheck.Format(actual)}";

    private static void CheckAngles(RetNetConfig config, HostTensor buffer)
    {
        var expected = Kernels.Rotation.RotationReference.Angles(config.KeyHeadDim);
        for (var i = 0; i < buffer.Data.Length; i++)
        {
            var want = expected[i / 2];
            if (!(Math.Abs(buffer.Data[i] - want) <= AngleTolerance * want))
                throw new ArgumentException(
                    $"The checkpoint's {AngleBuffer}[{i}] is {buffer.Data[i].ToString("R", CultureInfo.InvariantCulture)}; " +
                    $"expected {want.ToString("G9", CultureInfo.InvariantCulture)} = 10000^(−linspace(0, 1, " +
                    $"{config.KeyHeadDim / 2})[{i / 2}]) for key head dim {config.KeyHeadDim}: the model rotates " +
                    "queries and keys differently from what this config implies.", "weights");
        }
    }

    private static RetNetConfig ApplyDecayBuffer(RetNetConfig config, HostTensor buffer, List<string> notices)
    {
        var gammas = config.Decay().Gammas;
        var differs = new List<string>();
        var fromBuffer = new double[gammas.Count];
        for (var h = 0; h < gammas.Count; h++)
        {
            double logGamma = buffer.Data[h], want = Math.Log(gammas[h]);
            fromBuffer[h] = Math.Exp(logGamma);
            if (!double.IsFinite(logGamma) || logGamma > 0)
                throw new ArgumentException(
                    $"The checkpoint's {DecayBuffer}[{h}] is {buffer.Data[h].ToString("R", CultureInfo.InvariantCulture)}; " +
                    "expected log γ ≤ 0.", "weights");
            // Equal to fp32 rounding, relative, or absolutely within fp32's resolution below 1: torchscale computes
            // log(1 − 2^(−5−h)) in fp32, where 1 − 2^(−5−h) rounds to exactly 1 from h = 20 on, so its buffer holds
            // 0 there.
            var difference = Math.Abs(logGamma - want);
            if (difference > DecayTolerance * Math.Abs(want) && difference > FloatResolutionBelowOne)
                differs.Add($"head {h}: γ {gammas[h].ToString("G9", CultureInfo.InvariantCulture)} → " +
                            fromBuffer[h].ToString("G9", CultureInfo.InvariantCulture));
        }
        if (differs.Count == 0)
            return config;
        var one = Array.FindIndex(fromBuffer, g => g >= 1);
        if (one >= 0)
            throw new ArgumentException(
                $"The checkpoint's {DecayBuffer}[{one}] is 0 (γ = 1, no decay) and differs from the config's " +
                $"γ = {gammas[one].ToString("G9", CultureInfo.InvariantCulture)}; retention needs 0 < γ < 1.", "weights");
        notices.Add($"The checkpoint's {DecayBuffer} differs from the config's decays ({string.Join(", ", differs)}): " +
                    "the model was trained with these decays, so they are used.");
        return config with { RetentionDecay = fromBuffer };
    }

    private static string Canonical(string name) =>
        name.StartsWith("decoder.", StringComparison.Ordinal) ? name["decoder.".Length..]
        : name.StartsWith("model.", StringComparison.Ordinal) ? name["model.".Length..]
        : name;

    /// <summary>
    /// torchscale's initialisation, reproducible from <paramref name="seed"/>: q/k/v/g xavier_uniform with gain 2^−2.5,
    /// out_proj with gain 2^−1 (docs/MATH.md §6), the embedding and an untied output projection N(0, d^−1/2) (as
    /// torchscale's language-model wrappers do), the FFN's linears PyTorch's default U(±1/√fan_in), norm weights 1;
    /// with deepnorm, fc1, fc2, out_proj and v_proj then divided by (8·layers)^(1/4).
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
            if (config.Deepnorm && DeepnormScaled(name))
            {
                var divisor = (float)Math.Pow(8.0 * config.Layers, 0.25);
                for (var i = 0; i < data.Length; i++)
                    data[i] /= divisor;
            }
            result.Add(name, new HostTensor(shape, data));
        }
        return result;
    }

    /// <summary>The weights deepnorm's initialisation shrinks: torchscale matches "fc1", "fc2", "out_proj" and
    /// "v_proj" in the parameter name.</summary>
    private static bool DeepnormScaled(string name) =>
        name.EndsWith("ffn.fc1.weight", StringComparison.Ordinal) ||
        name.EndsWith("ffn.fc2.weight", StringComparison.Ordinal) ||
        name.EndsWith("retention.out_proj.weight", StringComparison.Ordinal) ||
        name.EndsWith("retention.v_proj.weight", StringComparison.Ordinal);

    /// <summary>Fills <paramref name="data"/> uniformly from (−bound, bound).</summary>
    internal static void Uniform(Random random, float[] data, double bound)
    {
        for (var i = 0; i < data.Length; i++)
            data[i] = (float)((random.NextDouble() * 2 - 1) * bound);
    }

    /// <summary>Fills <paramref name="data"/> from a normal distribution of mean 0 and deviation
    /// <paramref name="std"/>.</summary>
    internal static void Normal(Random random, float[] data, double std)
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
