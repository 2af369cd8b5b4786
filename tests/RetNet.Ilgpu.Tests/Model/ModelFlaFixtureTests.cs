using System.Globalization;
using System.Text.Json;
using RetNet.Ilgpu.IO;
using RetNet.Ilgpu.Kernels.Rotation;
using RetNet.Ilgpu.Model;
using RetNet.Ilgpu.Tests.Support;
using Xunit.Sdk;

namespace RetNet.Ilgpu.Tests.Model;

/// <summary>
/// The model against what fla's own RetNetForCausalLM computed (tools/fla-fixtures writes the folders under
/// Fixtures/Fla, in fla's Hugging Face layout): every fixture loaded as a model folder, in every retention form and
/// decoding, against fla's parallel logits; loss and gradients against fla's autograd; and the negative controls that
/// the same checks reject torchscale's choices where fla differs (interleaved rotation, decay normalisation) and a
/// head norm without its weight.
/// </summary>
[Collection(DeviceCollection.Name)]
public sealed class ModelFlaFixtureTests(DeviceFixture fixture)
{
    private const string PrefillThenSteps = "prefill7+steps";

    // The fixtures' gradients are float64 autograd; the model's are fp32 (the torchscale fixtures' bound).
    private const double GradientTolerance = 1e-3, LossTolerance = 1e-5;

    private static readonly ForwardMode[] ForwardModes =
    [
        ForwardMode.Parallel,
        // T = 16: chunks of 4 tile it, 5 leaves a partial last chunk, 64 is one chunk larger than T.
        ForwardMode.Chunkwise(4), ForwardMode.Chunkwise(5), ForwardMode.Chunkwise(64), ForwardMode.Recurrent,
    ];

    private readonly RetNetDevice device = fixture.Device;

    public static TheoryData<string> Fixtures => new(FlaFixture.Names());

    public static TheoryData<string, string> FixturesAndModes
    {
        get
        {
            var data = new TheoryData<string, string>();
            foreach (var name in FlaFixture.Names())
            {
                foreach (var mode in ForwardModes)
                    data.Add(name, mode.ToString());
                data.Add(name, PrefillThenSteps);
            }
            return data;
        }
    }

    public static TheoryData<string, string> FixturesAndTrainingForms
    {
        get
        {
            var data = new TheoryData<string, string>();
            foreach (var name in FlaFixture.Names())
            {
                data.Add(name, ForwardMode.Parallel.ToString());
                data.Add(name, ForwardMode.Chunkwise(4).ToString());
            }
            return data;
        }
    }

    [Fact]
    public void The_manifest_lists_every_case_the_issue_asks_for()
    {
        Assert.True(File.Exists(FlaFixture.ManifestPath), $"No fixture manifest at {FlaFixture.ManifestPath}.");
        var names = FlaFixture.Names();
        Assert.Contains(names, n => n.StartsWith("bf16-", StringComparison.Ordinal));
        Assert.Contains(names, n => n.Contains("tied", StringComparison.Ordinal) && !n.Contains("untied", StringComparison.Ordinal));
        Assert.Contains(names, n => n.Contains("gqa", StringComparison.Ordinal));
        Assert.Contains(names, n => n.Contains("sharded", StringComparison.Ordinal));
        Assert.Contains(names, n => n.Contains("ffn80", StringComparison.Ordinal));
        foreach (var name in names)
        {
            var folder = Path.Combine(FlaFixture.Root, name);
            foreach (var file in new[] { "config.json", "tokens.txt", "expected.safetensors", "gradients.safetensors" })
                Assert.True(File.Exists(Path.Combine(folder, file)), $"{name}: {file} is missing.");
            Assert.True(File.Exists(Path.Combine(folder, "model.safetensors")) ||
                        File.Exists(Path.Combine(folder, ShardedSafetensors.IndexFile)), $"{name}: no weights.");
        }
    }

    [Theory, MemberData(nameof(Fixtures))]
    public void The_folder_loads_as_fla_convention_with_the_files_dtype(string name)
    {
        var f = FlaFixture.Load(name);
        using var model = LanguageModel.Load(device, f.Folder);
        Assert.Equal("fla", model.Config.Convention);
        var expected = name.StartsWith("bf16-", StringComparison.Ordinal) ? TensorDType.BFloat16 : TensorDType.Float32;
        Assert.Equal(expected, model.WeightType);
    }

    [Theory, MemberData(nameof(FixturesAndModes))]
    public void Logits_match_fla_in_every_form_and_in_decoding(string name, string mode)
    {
        var f = FlaFixture.Load(name);
        using var model = LanguageModel.Load(device, f.Folder);
        var logits = Run(model, f.Tokens, mode);
        FlaLogitCheck.AssertMatches(name, mode, "parallel", logits, f.Expected["logits_parallel"]);
        FlaLogitCheck.AssertMatches(name, mode, "recurrent", logits, f.Expected["logits_recurrent"]);
    }

    [Theory, MemberData(nameof(FixturesAndTrainingForms))]
    public void Loss_and_every_gradient_match_flas_autograd(string name, string form)
    {
        var f = FlaFixture.Load(name);
        var expected = Float64Safetensors.Read(Path.Combine(f.Folder, "gradients.safetensors"));
        var expectedLoss = double.Parse(expected.Metadata["loss"], CultureInfo.InvariantCulture);
        // Training runs on fp32 weights: a bf16 checkpoint is widened (exactly) for it.
        using var model = LanguageModel.Load(device, f.Folder, weightType: TensorDType.Float32);
        using var gradients = ModelGradients.Zeros(model);

        var loss = model.ForwardBackward(f.Tokens, gradients, ForwardModes.Single(m => m.ToString() == form));

        Assert.True(Math.Abs(loss - expectedLoss) <= LossTolerance * Math.Abs(expectedLoss),
            $"{name} {form}: loss {loss:R}, fla {expectedLoss:R}");
        var actual = gradients.ToHost();
        Assert.Equal(expected.Tensors.Keys.Order(StringComparer.Ordinal), actual.Keys.Order(StringComparer.Ordinal));
        foreach (var (parameter, reference) in expected.Tensors)
            Numerics.AssertClose($"{name} {form} d{parameter}", actual[parameter].Data, reference.Data, GradientTolerance);
    }

    /// <summary>The convention's three choices where it differs from torchscale, each undone in turn: the logit check
    /// must reject every one (and pass the model as it is, or rejecting proves nothing).</summary>
    [Theory]
    [InlineData("interleaved rotation")]
    [InlineData("unit gated-norm weight")]
    public void The_check_rejects_torchscales_choices_and_a_missing_norm_weight(string variant)
    {
        const string name = "fp32-untied-h2";
        var f = FlaFixture.Load(name);
        var config = FlaRetNetConfig.Load(Path.Combine(f.Folder, "config.json"));
        var weights = ModelFolder.Read(f.Folder).Weights.Tensors;
        var reference = f.Expected["logits_parallel"];
        using (var faithful = LanguageModel.FromWeights(device, config, weights))
        using (var logits = faithful.Forward(f.Tokens, ForwardMode.Parallel))
            FlaLogitCheck.AssertMatches(name, "parallel", "parallel", logits.ToHost(), reference);

        switch (variant)
        {
            case "interleaved rotation":
                config = config with { Rotary = RotaryLayout.Interleaved };
                break;
            default:
                weights = weights.ToDictionary(p => p.Key, p => p.Key.EndsWith("g_norm_swish_gate.weight", StringComparison.Ordinal)
                    ? new HostTensor(p.Value.Shape, Enumerable.Repeat(1f, p.Value.Length).ToArray())
                    : p.Value);
                break;
        }
        using var model = LanguageModel.FromWeights(device, config, weights);
        foreach (var mode in new[] { ForwardMode.Parallel, ForwardMode.Chunkwise(4), ForwardMode.Recurrent })
        {
            using var logits = model.Forward(f.Tokens, mode);
            var error = Assert.ThrowsAny<XunitException>(() =>
                FlaLogitCheck.AssertMatches(name, $"{mode} with {variant}", "parallel", logits.ToHost(), reference));
            Assert.Contains(name, error.Message);
        }
    }

    /// <summary>
    /// torchscale's decay normalisation divides each retention row by a positive number; the head's RMSNorm is
    /// scale-invariant, so what survives is only its eps, scaled per row by the decay sum (docs/MATH.md §4). Switched
    /// on in fla's convention it must therefore change the logits, but by less than the check's tolerance at fla's
    /// eps of 1e-6: no logit check can reject it, and this test measures that instead of pretending to.
    /// </summary>
    [Fact]
    public void Torchscales_decay_normalisation_changes_fla_only_through_the_head_norms_eps()
    {
        const string name = "fp32-untied-h2";
        var f = FlaFixture.Load(name);
        var config = FlaRetNetConfig.Load(Path.Combine(f.Folder, "config.json"));
        var weights = ModelFolder.Read(f.Folder).Weights.Tensors;
        using var faithful = LanguageModel.FromWeights(device, config, weights);
        using var normalised = LanguageModel.FromWeights(device, config with { DecayNormalized = true }, weights);
        using var a = faithful.Forward(f.Tokens, ForwardMode.Parallel);
        using var b = normalised.Forward(f.Tokens, ForwardMode.Parallel);
        float[] x = a.ToHost(), y = b.ToHost();
        var scale = x.Max(Math.Abs);
        var difference = x.Zip(y, (p, q) => Math.Abs(p - q)).Max() / scale;
        Assert.True(difference > 0, "decay normalisation switched on changed nothing: the switch is not wired");
        Assert.True(difference < FlaLogitCheck.Tolerance,
            $"decay normalisation changed the logits by {difference:G3} of max|logit|: more than eps alone can");
    }

    private static float[] Run(LanguageModel model, int[,] tokens, string mode)
    {
        if (mode != PrefillThenSteps)
        {
            using var logits = model.Forward(tokens, ForwardModes.Single(m => m.ToString() == mode));
            return logits.ToHost();
        }
        // As fla's fixture decodes: the first 7 tokens in one prefill, then one step per token.
        const int prefill = 7;
        int batch = tokens.GetLength(0), seqLen = tokens.GetLength(1), vocab = model.VocabSize;
        var result = new float[batch * seqLen * vocab];
        var prompts = Enumerable.Range(0, batch)
            .Select(b => Enumerable.Range(0, prefill).Select(t => tokens[b, t]).ToArray()).ToArray();
        // Prefill returns the last position's logits; the earlier ones come from a forward pass of the prompt.
        using (var head = model.Forward(Slice(tokens, prefill), ForwardMode.Chunkwise(4)))
        {
            var host = head.ToHost();
            for (var b = 0; b < batch; b++)
                host.AsSpan(b * prefill * vocab, (prefill - 1) * vocab).CopyTo(result.AsSpan(b * seqLen * vocab));
        }
        var started = model.Prefill(prompts);
        using var state = started.State;
        for (var b = 0; b < batch; b++)
            started.Logits[b].CopyTo(result, (b * seqLen + prefill - 1) * vocab);
        for (var t = prefill; t < seqLen; t++)
        {
            var step = Enumerable.Range(0, batch).Select(b => tokens[b, t]).ToArray();
            var rows = model.Step(step, state);
            for (var b = 0; b < batch; b++)
                rows[b].CopyTo(result, (b * seqLen + t) * vocab);
        }
        return result;
    }

    private static int[,] Slice(int[,] tokens, int length)
    {
        var result = new int[tokens.GetLength(0), length];
        for (var b = 0; b < tokens.GetLength(0); b++)
        for (var t = 0; t < length; t++)
            result[b, t] = tokens[b, t];
        return result;
    }
}

/// <summary>The acceptance check against fla's logits: max |Δ| ≤ 2e-4 · max |reference| over [B, T, V].</summary>
public static class FlaLogitCheck
{
    public const double Tolerance = 2e-4;

    public static void AssertMatches(string fixture, string mode, string reference, IReadOnlyList<float> actual,
        Float64Tensor expected) =>
        Numerics.AssertClose($"{fixture}, {mode} vs fla's {reference} logits [{string.Join(", ", expected.Shape)}]",
            actual, expected.Data, Tolerance);
}

/// <summary>One folder written by tools/fla-fixtures/make_fixtures.py, as copied to the test output.</summary>
public sealed record FlaFixture(string Name, string Folder, int[,] Tokens, IReadOnlyDictionary<string, Float64Tensor> Expected)
{
    public static string Root { get; } = Path.Combine(AppContext.BaseDirectory, "Fixtures", "Fla");

    public static string ManifestPath { get; } = Path.Combine(Root, "manifest.json");

    public static IReadOnlyList<string> Names()
    {
        if (!File.Exists(ManifestPath))
            return [];
        using var manifest = JsonDocument.Parse(File.ReadAllText(ManifestPath));
        return manifest.RootElement.GetProperty("fixtures").EnumerateArray()
            .Select(f => f.GetProperty("name").GetString()!).ToList();
    }

    public static FlaFixture Load(string name)
    {
        var folder = Path.Combine(Root, name);
        var tokens = TorchscaleFixture.ReadTokens(Path.Combine(folder, "tokens.txt"));
        return new FlaFixture(name, folder, tokens, Float64Safetensors.Read(Path.Combine(folder, "expected.safetensors")).Tensors);
    }
}

/// <summary>A float64 tensor of a fixture file.</summary>
public sealed record Float64Tensor(int[] Shape, double[] Data);

/// <summary>
/// Reads the F64 safetensors files fla's fixtures are written in (references and gradients keep float64, which the
/// library's reader, made for weights, does not take): the header's entries in order, little-endian doubles.
/// </summary>
public static class Float64Safetensors
{
    public static (IReadOnlyDictionary<string, Float64Tensor> Tensors, IReadOnlyDictionary<string, string> Metadata)
        Read(string path)
    {
        var bytes = File.ReadAllBytes(path);
        var headerLength = (int)BitConverter.ToUInt64(bytes, 0);
        using var header = JsonDocument.Parse(bytes.AsMemory(8, headerLength));
        var tensors = new Dictionary<string, Float64Tensor>(StringComparer.Ordinal);
        var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var entry in header.RootElement.EnumerateObject())
        {
            if (entry.Name == "__metadata__")
            {
                foreach (var m in entry.Value.EnumerateObject())
                    metadata[m.Name] = m.Value.GetString()!;
                continue;
            }
            Assert.Equal("F64", entry.Value.GetProperty("dtype").GetString());
            var shape = entry.Value.GetProperty("shape").EnumerateArray().Select(d => d.GetInt32()).ToArray();
            var offsets = entry.Value.GetProperty("data_offsets").EnumerateArray().Select(o => o.GetInt64()).ToArray();
            var data = new double[(offsets[1] - offsets[0]) / 8];
            Buffer.BlockCopy(bytes, 8 + headerLength + (int)offsets[0], data, 0, data.Length * 8);
            Assert.Equal(shape.Aggregate(1, (a, b) => a * b), data.Length);
            tensors[entry.Name] = new Float64Tensor(shape, data);
        }
        return (tensors, metadata);
    }
}
