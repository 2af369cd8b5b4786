using System.Globalization;
using System.Text.Json;
using RetNet.Ilgpu.IO;
using RetNet.Ilgpu.Model;
using RetNet.Ilgpu.Tests.Support;
using Xunit.Sdk;

namespace RetNet.Ilgpu.Tests.Model;

/// <summary>
/// The model against what torchscale's own RetNetDecoder computed (tools/torchscale-fixtures writes the folders under
/// Fixtures/Torchscale): every fixture the manifest lists, loaded from its torchscale state dict, in every retention
/// form, against both torchscale's parallel and its recurrent logits.
/// </summary>
[Collection(DeviceCollection.Name)]
public sealed class ModelTorchscaleFixtureTests(DeviceFixture fixture)
{
    private const string PrefillThenSteps = "prefill+step";

    private static readonly ForwardMode[] ForwardModes =
    [
        ForwardMode.Parallel,
        // T = 12: chunks of 4 tile it, 5 leaves a partial last chunk, 12 is one chunk, 64 is one chunk larger than T.
        ForwardMode.Chunkwise(4), ForwardMode.Chunkwise(5), ForwardMode.Chunkwise(12), ForwardMode.Chunkwise(64),
        ForwardMode.Recurrent,
    ];

    private readonly RetNetDevice device = fixture.Device;

    /// <summary>Every fixture the manifest lists; none when it is missing, which
    /// <see cref="The_manifest_lists_fixtures_and_every_folder_is_complete"/> reports.</summary>
    public static TheoryData<string> Fixtures => new(TorchscaleFixture.Names());

    /// <summary>Every fixture with every way of running the model.</summary>
    public static TheoryData<string, string> FixturesAndModes
    {
        get
        {
            var data = new TheoryData<string, string>();
            foreach (var name in TorchscaleFixture.Names())
            {
                foreach (var mode in ForwardModes)
                    data.Add(name, mode.ToString());
                data.Add(name, PrefillThenSteps);
            }
            return data;
        }
    }

    [Fact]
    public void The_manifest_lists_fixtures_and_every_folder_is_complete()
    {
        Assert.True(File.Exists(TorchscaleFixture.ManifestPath),
            $"No fixture manifest at {TorchscaleFixture.ManifestPath}: the test project must copy Fixtures/ to its " +
            "output.");
        var names = TorchscaleFixture.Names();
        Assert.NotEmpty(names);
        string[] files =
            ["config.json", "model.safetensors", "tokens.txt", "expected.safetensors", "gradients.safetensors"];
        foreach (var name in names)
        foreach (var file in files)
            Assert.True(File.Exists(Path.Combine(TorchscaleFixture.Root, name, file)), $"{name}: {file} is missing.");
    }

    [Theory, MemberData(nameof(Fixtures))]
    public void The_fixture_files_agree_with_each_other(string name)
    {
        var f = TorchscaleFixture.Load(name);
        var config = RetNetConfig.Load(Path.Combine(f.Folder, "config.json"));
        var weights = Safetensors.Read(Path.Combine(f.Folder, "model.safetensors")).Tensors;
        var expected = Safetensors.Read(Path.Combine(f.Folder, "expected.safetensors"));
        var gradients = Safetensors.Read(Path.Combine(f.Folder, "gradients.safetensors"));
        int batch = f.Tokens.GetLength(0), seqLen = f.Tokens.GetLength(1), vocab = config.VocabSize;

        Assert.Equal(name, expected.Metadata["fixture"]);
        Assert.Equal(TorchscaleFixture.Commit(), expected.Metadata["torchscale_commit"]);
        Assert.Equal([batch, seqLen, vocab], f.LogitsParallel.Shape);
        Assert.Equal([batch, seqLen, vocab], f.LogitsRecurrent.Shape);
        Assert.All(f.Tokens.Cast<int>(), id => Assert.InRange(id, 0, vocab - 1));
        Assert.Equal([config.KeyHeadDim], weights["retnet_rel_pos.angle"].Shape);
        Assert.Equal([config.RetentionHeads], weights["retnet_rel_pos.decay"].Shape);

        // One gradient per parameter: the buffers have none, and a tied output projection is the embedding tensor.
        var parameters = weights.Keys.Where(k => !k.StartsWith("retnet_rel_pos.", StringComparison.Ordinal) &&
                                                 !(config.ShareInputOutputEmbed && k == "output_projection.weight"));
        Assert.Equal(parameters.Order(StringComparer.Ordinal), gradients.Tensors.Keys.Order(StringComparer.Ordinal));
        foreach (var (key, gradient) in gradients.Tensors)
            Assert.Equal(weights[key].Shape, gradient.Shape);

        // The loss the gradients belong to is the next-token cross-entropy of the parallel logits: recomputing it
        // from the stored (fp32-rounded) logits ties the two files together.
        var loss = double.Parse(gradients.Metadata["loss"], CultureInfo.InvariantCulture);
        double sum = 0;
        for (var b = 0; b < batch; b++)
        for (var t = 0; t + 1 < seqLen; t++)
        {
            var row = f.LogitsParallel.Data.AsSpan((b * seqLen + t) * vocab, vocab);
            double max = double.NegativeInfinity, exp = 0;
            foreach (var v in row)
                max = Math.Max(max, v);
            foreach (var v in row)
                exp += Math.Exp(v - max);
            sum += max + Math.Log(exp) - row[f.Tokens[b, t + 1]];
        }
        Assert.True(Math.Abs(sum / (batch * (seqLen - 1)) - loss) <= 1e-5,
            $"{name}: cross-entropy of logits_parallel is {sum / (batch * (seqLen - 1)):R}; the gradients' loss is " +
            $"{loss:R}.");
    }

    [Theory, MemberData(nameof(FixturesAndModes))]
    public void Logits_match_torchscale_parallel_and_recurrent_logits(string name, string mode)
    {
        var f = TorchscaleFixture.Load(name);
        using var model = LanguageModel.Load(device, f.Folder);
        var logits = Run(model, f.Tokens, mode);
        TorchscaleLogitCheck.AssertMatches(name, mode, "parallel", logits, f.LogitsParallel);
        TorchscaleLogitCheck.AssertMatches(name, mode, "recurrent", logits, f.LogitsRecurrent);
    }

    [Theory, MemberData(nameof(Fixtures))]
    public void The_check_rejects_zero_logits_and_the_logits_of_the_next_position(string name)
    {
        var f = TorchscaleFixture.Load(name);
        var reference = f.LogitsParallel;
        // The check itself must pass on torchscale's own logits, or rejecting is no evidence.
        TorchscaleLogitCheck.AssertMatches(name, "torchscale recurrent", "parallel", f.LogitsRecurrent.Data, reference);

        AssertRejected(name, () => TorchscaleLogitCheck.AssertMatches(name, "all zeros", "parallel",
            new float[reference.Data.Length], reference));

        // What a model off by one position would give: at t the logits torchscale gives at t + 1.
        int batch = reference.Shape[0], seqLen = reference.Shape[1], vocab = reference.Shape[2];
        var shifted = new float[reference.Data.Length];
        for (var b = 0; b < batch; b++)
        for (var t = 0; t < seqLen; t++)
            reference.Data.AsSpan((b * seqLen + Math.Min(t + 1, seqLen - 1)) * vocab, vocab)
                .CopyTo(shifted.AsSpan((b * seqLen + t) * vocab, vocab));
        AssertRejected(name, () => TorchscaleLogitCheck.AssertMatches(name, "shifted by one token", "parallel",
            shifted, reference));
    }

    [Fact]
    public void The_check_rejects_trained_decays_loaded_without_their_decay_buffer()
    {
        const string name = "trained-decays-h2";
        var f = TorchscaleFixture.Load(name);
        // Without the buffer the model falls back to its configured schedule, which is not what torchscale ran.
        var weights = Safetensors.Read(Path.Combine(f.Folder, "model.safetensors")).Tensors
            .Where(kv => kv.Key != "retnet_rel_pos.decay")
            .ToDictionary(kv => kv.Key, kv => kv.Value);
        using var model = LanguageModel.FromWeights(device, RetNetConfig.Load(Path.Combine(f.Folder, "config.json")),
            weights);
        using var logits = model.Forward(f.Tokens, ForwardMode.Parallel);
        AssertRejected(name, () => TorchscaleLogitCheck.AssertMatches(name, "parallel without the decay buffer",
            "parallel", logits.ToHost(), f.LogitsParallel));
    }

    [Theory, MemberData(nameof(Fixtures))]
    public void A_checkpoint_with_a_decoder_prefix_on_every_key_loads(string name)
    {
        var f = TorchscaleFixture.Load(name);
        var folder = Directory.CreateTempSubdirectory("retnet-torchscale-prefix-").FullName;
        try
        {
            // As torchscale's fairseq language model saves it: the decoder's state dict under "decoder.".
            var weights = Safetensors.Read(Path.Combine(f.Folder, "model.safetensors")).Tensors;
            Safetensors.Write(Path.Combine(folder, "model.safetensors"),
                weights.ToDictionary(kv => "decoder." + kv.Key, kv => kv.Value),
                new Dictionary<string, string> { ["format"] = "pt" });
            File.Copy(Path.Combine(f.Folder, "config.json"), Path.Combine(folder, "config.json"));

            using var model = LanguageModel.Load(device, folder);
            using var logits = model.Forward(f.Tokens, ForwardMode.Parallel);
            TorchscaleLogitCheck.AssertMatches(name, "parallel, decoder. prefix", "parallel", logits.ToHost(),
                f.LogitsParallel);
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }

    private static void AssertRejected(string name, Action check)
    {
        var error = Assert.ThrowsAny<XunitException>(check);
        Assert.Contains(name, error.Message);
    }

    private static float[] Run(LanguageModel model, int[,] tokens, string mode)
    {
        if (mode == PrefillThenSteps)
            return PrefillThenStep(model, tokens);
        using var logits = model.Forward(tokens, ForwardModes.Single(m => m.ToString() == mode));
        return logits.ToHost();
    }

    /// <summary>Decoding as a generator does: a prefill of the first token, then one step per further token; the
    /// logits of every position gathered into [B, T, V].</summary>
    private static float[] PrefillThenStep(LanguageModel model, int[,] tokens)
    {
        int batch = tokens.GetLength(0), seqLen = tokens.GetLength(1), vocab = model.VocabSize;
        var result = new float[batch * seqLen * vocab];
        void Put(int t, float[][] rows)
        {
            for (var b = 0; b < batch; b++)
                rows[b].CopyTo(result, (b * seqLen + t) * vocab);
        }

        var prefill = model.Prefill(Enumerable.Range(0, batch).Select(b => new[] { tokens[b, 0] }).ToArray());
        using var state = prefill.State;
        Put(0, prefill.Logits);
        for (var t = 1; t < seqLen; t++)
        {
            var step = new int[batch];
            for (var b = 0; b < batch; b++)
                step[b] = tokens[b, t];
            Put(t, model.Step(step, state));
        }
        return result;
    }
}

/// <summary>The acceptance check against torchscale's logits: the project's rule (<see cref="Numerics.Check"/>),
/// max |Δ| ≤ 2e-4 · max |reference| over the whole [B, T, V] tensor.</summary>
public static class TorchscaleLogitCheck
{
    /// <summary>The largest accepted max |Δ| / max |reference|: fp32 arithmetic against a float64 reference.</summary>
    public const double Tolerance = 2e-4;

    /// <summary>Fails, naming the fixture, the mode, the reference and the worst element, unless
    /// max |actual − expected| ≤ <see cref="Tolerance"/> · max |expected|. NaN anywhere fails.</summary>
    public static void AssertMatches(string fixture, string mode, string reference, IReadOnlyList<float> actual,
        HostTensor expected)
    {
        ArgumentNullException.ThrowIfNull(actual);
        ArgumentNullException.ThrowIfNull(expected);
        Numerics.AssertClose(
            $"{fixture}, {mode} vs torchscale's {reference} logits [{string.Join(", ", expected.Shape)}]", actual,
            expected.Data, Tolerance);
    }
}

/// <summary>One folder written by tools/torchscale-fixtures/make_fixtures.py, as copied to the test output.</summary>
/// <param name="Name">The fixture's name, also its folder's.</param>
/// <param name="Folder">The folder: a model folder LanguageModel.Load reads, plus tokens and expected outputs.</param>
/// <param name="Tokens">The token ids [B, T].</param>
/// <param name="LogitsParallel">torchscale's parallel-form logits [B, T, V].</param>
/// <param name="LogitsRecurrent">torchscale's token-by-token logits [B, T, V].</param>
public sealed record TorchscaleFixture(string Name, string Folder, int[,] Tokens, HostTensor LogitsParallel,
    HostTensor LogitsRecurrent)
{
    /// <summary>Where the test project copies the fixtures.</summary>
    public static string Root { get; } = Path.Combine(AppContext.BaseDirectory, "Fixtures", "Torchscale");

    /// <summary>The manifest that lists the fixtures.</summary>
    public static string ManifestPath { get; } = Path.Combine(Root, "manifest.json");

    /// <summary>The fixture names the manifest lists; none when there is no manifest.</summary>
    public static IReadOnlyList<string> Names()
    {
        if (!File.Exists(ManifestPath))
            return [];
        using var manifest = JsonDocument.Parse(File.ReadAllText(ManifestPath));
        return manifest.RootElement.GetProperty("fixtures").EnumerateArray()
            .Select(f => f.GetProperty("name").GetString()!)
            .ToList();
    }

    /// <summary>The torchscale commit the manifest says the fixtures come from.</summary>
    public static string Commit()
    {
        using var manifest = JsonDocument.Parse(File.ReadAllText(ManifestPath));
        return manifest.RootElement.GetProperty("torchscale_commit").GetString()!;
    }

    /// <summary>Reads the tokens and the expected logits of fixture <paramref name="name"/>.</summary>
    public static TorchscaleFixture Load(string name)
    {
        var folder = Path.Combine(Root, name);
        var tokens = ReadTokens(Path.Combine(folder, "tokens.txt"));
        var expected = Safetensors.Read(Path.Combine(folder, "expected.safetensors")).Tensors;
        return new TorchscaleFixture(name, folder, tokens, expected["logits_parallel"], expected["logits_recurrent"]);
    }

    /// <summary>A fixture's tokens.txt: one sequence per line, ids separated by spaces, all lines the same length.</summary>
    internal static int[,] ReadTokens(string path)
    {
        var rows = File.ReadAllLines(path)
            .Where(line => line.Trim().Length > 0)
            .Select(line => line.Trim().Split(' ')
                .Select(id => int.Parse(id, CultureInfo.InvariantCulture)).ToArray())
            .ToArray();
        var tokens = new int[rows.Length, rows[0].Length];
        for (var b = 0; b < rows.Length; b++)
        {
            Assert.True(rows[b].Length == rows[0].Length, $"{path}: rows differ in length.");
            for (var t = 0; t < rows[b].Length; t++)
                tokens[b, t] = rows[b][t];
        }
        return tokens;
    }
}
