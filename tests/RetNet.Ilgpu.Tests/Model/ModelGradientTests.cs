using System.Globalization;
using RetNet.Ilgpu.IO;
using RetNet.Ilgpu.Model;
using RetNet.Ilgpu.Tests.Support;

namespace RetNet.Ilgpu.Tests.Model;

/// <summary>
/// The model's backward pass against torchscale's own autograd: the mean next-token cross-entropy and the gradient of
/// every parameter that tools/torchscale-fixtures wrote for each fixture, in both training forms.
/// </summary>
[Collection(DeviceCollection.Name)]
public sealed class ModelGradientTests(DeviceFixture fixture)
{
    /// <summary>Each gradient is held to 1e-3 of its own largest magnitude (fp32 against float64, through every
    /// layer's backward); the loss to 1e-5 relative.</summary>
    private const double GradientTolerance = 1e-3, LossTolerance = 1e-5;

    private readonly RetNetDevice device = fixture.Device;

    public static TheoryData<string, string> FixturesAndForms
    {
        get
        {
            var data = new TheoryData<string, string>();
            foreach (var name in TorchscaleFixture.Names())
                foreach (var form in new[] { "parallel", "chunkwise(4)", "chunkwise(5)" })
                    data.Add(name, form);
            return data;
        }
    }

    private static ForwardMode Mode(string form) => form switch
    {
        "parallel" => ForwardMode.Parallel,
        "chunkwise(4)" => ForwardMode.Chunkwise(4),
        _ => ForwardMode.Chunkwise(5),
    };

    [Theory, MemberData(nameof(FixturesAndForms))]
    public void Loss_and_every_gradient_match_torchscales_autograd(string name, string form)
    {
        var f = TorchscaleFixture.Load(name);
        var expected = Safetensors.Read(Path.Combine(f.Folder, "gradients.safetensors"));
        var expectedLoss = double.Parse(expected.Metadata["loss"], CultureInfo.InvariantCulture);
        using var model = LanguageModel.Load(device, f.Folder);
        using var gradients = ModelGradients.Zeros(model);

        var loss = model.ForwardBackward(f.Tokens, gradients, Mode(form));

        Assert.True(Math.Abs(loss - expectedLoss) <= LossTolerance * Math.Abs(expectedLoss),
            $"{name} {form}: loss {loss:R}, torchscale {expectedLoss:R}");
        var actual = gradients.ToHost();
        Assert.Equal(expected.Tensors.Keys.Order(StringComparer.Ordinal), actual.Keys.Order(StringComparer.Ordinal));
        foreach (var (parameter, reference) in expected.Tensors)
            Numerics.AssertClose($"{name} {form} d{parameter}", actual[parameter].Data,
                reference.Data.Select(v => (double)v).ToArray(), GradientTolerance);
    }

    [Fact]
    public void Gradients_accumulate_and_the_check_rejects_doubled_zeroed_or_shifted_gradients()
    {
        var f = TorchscaleFixture.Load(TorchscaleFixture.Names()[0]);
        var expected = Safetensors.Read(Path.Combine(f.Folder, "gradients.safetensors")).Tensors;
        using var model = LanguageModel.Load(device, f.Folder);
        using var gradients = ModelGradients.Zeros(model);
        const string probe = "layers.0.retention.q_proj.weight";
        var reference = expected[probe].Data.Select(v => (double)v).ToArray();

        model.ForwardBackward(f.Tokens, gradients, ForwardMode.Chunkwise(4));
        model.ForwardBackward(f.Tokens, gradients, ForwardMode.Parallel);
        var twice = gradients.ToHost()[probe].Data;
        Numerics.AssertClose("two passes add up", twice, reference.Select(v => 2 * v).ToArray(), GradientTolerance);
        Numerics.AssertRejected(Numerics.Check("doubled", twice, reference, GradientTolerance));

        gradients.Zero();
        Numerics.AssertRejected(Numerics.Check("zeroed", gradients.ToHost()[probe].Data, reference, GradientTolerance));

        // Windows one token later predict other targets: a loss off by one position gives other gradients.
        var shifted = new int[f.Tokens.GetLength(0), f.Tokens.GetLength(1) - 1];
        for (var b = 0; b < shifted.GetLength(0); b++)
        for (var t = 0; t < shifted.GetLength(1); t++)
            shifted[b, t] = f.Tokens[b, t + 1];
        model.ForwardBackward(shifted, gradients, ForwardMode.Parallel);
        Numerics.AssertRejected(Numerics.Check("shifted", gradients.ToHost()[probe].Data, reference, GradientTolerance));
    }

    public static TheoryData<string> Layouts => ["prenorm-tied", "postnorm-deepnorm", "prenorm-embedding-norm-gelu"];

    private static RetNetConfig Layout(string name) => name switch
    {
        "prenorm-tied" => ModelTestSupport.Micro(tied: true) with { LayerNormEps = 1e-5 },
        "postnorm-deepnorm" => ModelTestSupport.Micro("gelu", heads: 1) with { NormalizeBefore = false, Deepnorm = true },
        _ => ModelTestSupport.Micro("gelu", scaleEmbedding: false) with { LayerNormEmbedding = true },
    };

    [Theory, MemberData(nameof(Layouts))]
    public void Gradients_match_central_differences_of_the_float64_reference_for_every_parameter(string layout)
    {
        var config = Layout(layout);
        var weights = ModelTestSupport.Weights(config, seed: 17);
        var windows = ModelTestSupport.Tokens(seed: 4, batch: 2, seqLen: 7, config.VocabSize);
        using var model = LanguageModel.FromWeights(device, config, weights);
        using var gradients = ModelGradients.Zeros(model);
        var loss = model.ForwardBackward(windows, gradients, ForwardMode.Chunkwise(3));
        Assert.True(Math.Abs(loss - ModelReference.Loss(config, weights, windows)) <= LossTolerance * loss,
            $"{layout}: loss {loss} vs the float64 reference");

        foreach (var (name, gradient) in gradients.ToHost())
            GradientCheck.Measure(weights[name].Data, () => ModelReference.Loss(config, weights, windows))
                .AssertAgreesAndRejectsWrongGradients($"{layout} d{name}", gradient.Data, 2e-3);
    }

    [Theory, MemberData(nameof(Layouts))]
    public void Checkpointed_activations_give_bit_identical_gradients_in_less_memory(string layout)
    {
        var config = Layout(layout) with { Layers = 3 };
        var windows = ModelTestSupport.Tokens(seed: 6, batch: 2, seqLen: 17, config.VocabSize);
        IReadOnlyDictionary<string, HostTensor> Run(bool checkpoint, out long workspaceBytes)
        {
            using var model = LanguageModel.FromWeights(device, config, ModelTestSupport.Weights(config, seed: 19));
            using var gradients = ModelGradients.Zeros(model);
            var before = device.Memory.CurrentBytes;
            model.ForwardBackward(windows, gradients, ForwardMode.Chunkwise(5),
                keep: checkpoint ? ActivationPlan.KeepBlockInputs : ActivationPlan.KeepEverything);
            workspaceBytes = device.Memory.CurrentBytes - before;
            return gradients.ToHost();
        }
        var full = Run(false, out var fullBytes);
        var checkpointed = Run(true, out var checkpointedBytes);
        foreach (var (name, gradient) in full)
            Assert.True(gradient.Data.AsSpan().SequenceEqual(checkpointed[name].Data), $"{layout} d{name} differs");
        // Three blocks: checkpointing keeps one block's activations (plus three block inputs) instead of three. The
        // recomputable ones are shared across blocks either way, so the saving is about a third.
        Assert.True(checkpointedBytes < 0.75 * fullBytes,
            $"{layout}: checkpointed workspace {checkpointedBytes} bytes vs {fullBytes} without");
    }

    [Fact]
    public void Bad_training_arguments_are_rejected_by_name()
    {
        var config = ModelTestSupport.Micro();
        using var model = LanguageModel.Create(device, config, seed: 1);
        using var other = LanguageModel.Create(device, config, seed: 2);
        using var gradients = ModelGradients.Zeros(model);
        using var foreign = ModelGradients.Zeros(other);
        var windows = ModelTestSupport.Tokens(seed: 1, batch: 2, seqLen: 5, config.VocabSize);
        Assert.Equal("mode", Assert.Throws<ArgumentException>(
            () => model.ForwardBackward(windows, gradients, ForwardMode.Recurrent)).ParamName);
        Assert.Equal("gradients", Assert.Throws<ArgumentException>(
            () => model.ForwardBackward(windows, foreign, ForwardMode.Parallel)).ParamName);
        Assert.Equal("windows", Assert.Throws<ArgumentException>(
            () => model.ForwardBackward(new int[2, 1], gradients, ForwardMode.Parallel)).ParamName);
        windows[1, 3] = config.VocabSize;
        Assert.Equal("windows", Assert.Throws<ArgumentException>(
            () => model.ForwardBackward(windows, gradients, ForwardMode.Parallel)).ParamName);
    }
}
