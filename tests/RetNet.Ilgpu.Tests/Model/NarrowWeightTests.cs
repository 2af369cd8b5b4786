using RetNet.Ilgpu.IO;
using RetNet.Ilgpu.Model;
using RetNet.Ilgpu.Tensors;
using RetNet.Ilgpu.Tests.Support;

namespace RetNet.Ilgpu.Tests.Model;

/// <summary>
/// Models whose weight matrices are stored in bf16 or fp16: held to the float64 reference run on the weights they
/// actually store (the matrices rounded, the norm weights untouched), in every form and in decoding; checkpoints of
/// either type load without widening and save in their own type.
/// </summary>
[Collection(DeviceCollection.Name)]
public sealed class NarrowWeightTests(DeviceFixture fixture) : IDisposable
{
    private readonly RetNetDevice device = fixture.Device;
    private readonly string folder = Directory.CreateTempSubdirectory("retnet-narrow-").FullName;

    public void Dispose() => Directory.Delete(folder, recursive: true);

    public static TheoryData<TensorDType, bool> Cases => new()
    {
        { TensorDType.BFloat16, false }, { TensorDType.BFloat16, true }, { TensorDType.Float16, false },
    };

    [Theory, MemberData(nameof(Cases))]
    public void Every_form_matches_the_float64_forward_of_the_stored_weights(TensorDType dtype, bool tied)
    {
        var config = ModelTestSupport.Micro(tied: tied);
        var weights = ModelTestSupport.Weights(config, seed: 3);
        var tokens = ModelTestSupport.Tokens(seed: 4, batch: 2, seqLen: 7, config.VocabSize);
        using var model = LanguageModel.FromWeights(device, config, weights, weightType: dtype);

        Assert.Equal(dtype, model.WeightType);
        var expected = ModelReference.Forward(config, ModelTestSupport.Rounded(weights, dtype), tokens);
        ModelTestSupport.AssertEveryFormMatches(model, tokens, expected, $"{dtype} tied={tied}", 3);
        // Negative control: the unrounded weights' logits are not what a 16-bit model computes.
        using var logits = model.Forward(tokens, ForwardMode.Parallel);
        Assert.False(Numerics.Check("fp32 weights", logits.ToHost(), ModelReference.Forward(config, weights, tokens),
            ModelTestSupport.ParityTolerance).Passed);
    }

    [Theory, MemberData(nameof(Cases))]
    public void Decoding_steps_give_the_logits_of_the_forward_pass(TensorDType dtype, bool tied)
    {
        var config = ModelTestSupport.Micro(tied: tied);
        var weights = ModelTestSupport.Weights(config, seed: 5);
        var tokens = ModelTestSupport.Tokens(seed: 6, batch: 1, seqLen: 6, config.VocabSize);
        using var model = LanguageModel.FromWeights(device, config, weights, weightType: dtype);
        var expected = ModelReference.Forward(config, ModelTestSupport.Rounded(weights, dtype), tokens);

        var prefill = model.Prefill([ModelTestSupport.Row(tokens, 0, 3)]);
        using var state = prefill.State;
        var stepped = new List<float>(prefill.Logits[0]);
        for (var t = 3; t < 6; t++)
            stepped = model.Step([tokens[0, t]], state)[0].ToList();
        var last = expected.Skip(5 * config.VocabSize).Take(config.VocabSize).ToArray();
        Numerics.AssertClose("last step", stepped, last, ModelTestSupport.ParityTolerance);
    }

    [Fact]
    public void A_bf16_model_holds_half_the_bytes_and_saves_bf16_matrices_that_load_without_widening()
    {
        var config = ModelTestSupport.Micro();
        var weights = ModelTestSupport.Weights(config, seed: 8);
        using var wide = LanguageModel.FromWeights(device, config, weights);
        using var narrow = LanguageModel.FromWeights(device, config, weights, weightType: TensorDType.BFloat16);
        var vectors = WeightLayout.Expected(config).Where(e => e.Shape.Length == 1).Sum(e => 4L * e.Shape[0]);
        Assert.Equal((wide.WeightBytes - vectors) / 2 + vectors, narrow.WeightBytes);

        narrow.Save(folder);
        var entries = Safetensors.ReadEntries(Path.Combine(folder, "model.safetensors"));
        Assert.All(entries.Where(e => e.Shape.Length >= 2), e => Assert.Equal(SafetensorsDType.BF16, e.DType));
        Assert.All(entries.Where(e => e.Shape.Length < 2), e => Assert.Equal(SafetensorsDType.F32, e.DType));

        using var asStored = LanguageModel.Load(device, folder);
        Assert.Equal(TensorDType.BFloat16, asStored.WeightType);
        Assert.Equal(narrow.WeightBytes, asStored.WeightBytes);
        var saved = narrow.ExportWeights();
        foreach (var (name, tensor) in asStored.ExportWeights())
        {
            Assert.Equal(saved[name].DType, tensor.DType);
            Assert.Equal(saved[name].Bits ?? [], tensor.Bits ?? []);
        }

        // Widening on request is exact: the fp32 model holds the bf16 values.
        using var widened = LanguageModel.Load(device, folder, weightType: TensorDType.Float32);
        Assert.Equal(TensorDType.Float32, widened.WeightType);
        Assert.Equal(saved["layers.0.ffn.fc1.weight"].Data, widened.ExportWeights()["layers.0.ffn.fc1.weight"].Data);
    }

    [Fact]
    public void A_transformer_runs_on_bf16_weights_like_the_fp32_model_of_the_rounded_weights()
    {
        var config = TransformerConfig.Matching(ModelTestSupport.Micro());
        var weights = config.InitialWeights(seed: 2);
        var tokens = ModelTestSupport.Tokens(seed: 3, batch: 2, seqLen: 5, config.VocabSize);
        using var narrow = LanguageModel.FromWeights(device, config, weights, weightType: TensorDType.BFloat16);
        using var rounded = LanguageModel.FromWeights(device, config, ModelTestSupport.Rounded(weights, TensorDType.BFloat16));
        using var narrowLogits = narrow.Forward(tokens);
        using var roundedLogits = rounded.Forward(tokens);
        Numerics.AssertClose("bf16 transformer", narrowLogits.ToHost(), roundedLogits.ToHost().Select(v => (double)v).ToArray());
        Assert.True(narrow.WeightBytes < 0.55 * rounded.WeightBytes);
    }

    [Fact]
    public void An_undefined_weight_type_is_refused()
    {
        var config = ModelTestSupport.Micro();
        var error = Assert.Throws<ArgumentOutOfRangeException>(() =>
            LanguageModel.FromWeights(device, config, ModelTestSupport.Weights(config, 1), weightType: (TensorDType)7));
        Assert.Equal("weightType", error.ParamName);
    }

}
