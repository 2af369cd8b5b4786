using RetNet.Ilgpu.IO;
using RetNet.Ilgpu.Model;
using RetNet.Ilgpu.Tensors;
using RetNet.Ilgpu.Tests.Model;
using RetNet.Ilgpu.Tests.Support;
using RetNet.Ilgpu.Training;
using RetNet.Ilgpu.Training.Data;

namespace RetNet.Ilgpu.Tests.Training;

/// <summary>
/// Mixed precision: the passes read 16-bit copies of fp32 master weights, gradients and the optimiser stay fp32. The
/// gradients must be those of a model whose weights are the rounded masters, and the masters must keep their fp32
/// updates (never rounded themselves).
/// </summary>
[Collection(DeviceCollection.Name)]
public sealed class MixedPrecisionTests(DeviceFixture fixture) : IDisposable
{
    private readonly RetNetDevice device = fixture.Device;
    private readonly string root = Directory.CreateTempSubdirectory("retnet-mixed-").FullName;

    public void Dispose() => Directory.Delete(root, recursive: true);

    public static TheoryData<TensorDType> Types => [TensorDType.BFloat16, TensorDType.Float16];

    [Theory, MemberData(nameof(Types))]
    public void Gradients_are_those_of_the_model_of_the_rounded_weights(TensorDType dtype)
    {
        var config = ModelTestSupport.Micro();
        var weights = ModelTestSupport.Weights(config, seed: 9);
        var windows = ModelTestSupport.Tokens(seed: 10, batch: 2, seqLen: 7, config.VocabSize);
        using var mixed = LanguageModel.FromWeights(device, config, weights);
        mixed.UseComputeType(dtype);
        Assert.Equal(dtype, mixed.ComputeType);
        Assert.Equal(TensorDType.Float32, mixed.WeightType);
        using var rounded = LanguageModel.FromWeights(device, config, ModelTestSupport.Rounded(weights, dtype));
        using var plain = LanguageModel.FromWeights(device, config, weights);
        using var gMixed = ModelGradients.Zeros(mixed);
        using var gRounded = ModelGradients.Zeros(rounded);
        using var gPlain = ModelGradients.Zeros(plain);

        var lossMixed = mixed.ForwardBackward(windows, gMixed, ForwardMode.Chunkwise(3));
        var lossRounded = rounded.ForwardBackward(windows, gRounded, ForwardMode.Chunkwise(3));
        plain.ForwardBackward(windows, gPlain, ForwardMode.Chunkwise(3));

        Assert.Equal(lossRounded, lossMixed, 4);
        var differsFromPlain = false;
        foreach (var (name, expected) in gRounded.Tensors)
        {
            var actual = gMixed.Tensors[name].ToHost();
            Numerics.AssertClose(name, actual, expected.ToHost().Select(v => (double)v).ToArray(), 1e-4);
            differsFromPlain |= !Numerics.Check(name, actual, gPlain.Tensors[name].ToHost().Select(v => (double)v).ToArray(),
                1e-4).Passed;
        }
        // Negative control: the fp32 weights' gradients are not what the 16-bit copies give.
        Assert.True(differsFromPlain);
        Assert.True(mixed.ComputeWeightBytes > 0);
        // Back to fp32: the passes read the masters again, and the copies are gone.
        mixed.UseComputeType(TensorDType.Float32);
        Assert.Equal(0, mixed.ComputeWeightBytes);
    }

    [Fact]
    public void A_transformer_trains_on_bf16_copies_too()
    {
        var config = TransformerConfig.Matching(ModelTestSupport.Micro());
        var weights = config.InitialWeights(seed: 4);
        var windows = ModelTestSupport.Tokens(seed: 5, batch: 2, seqLen: 6, config.VocabSize);
        using var mixed = LanguageModel.FromWeights(device, config, weights);
        mixed.UseComputeType(TensorDType.BFloat16);
        using var rounded = LanguageModel.FromWeights(device, config, ModelTestSupport.Rounded(weights, TensorDType.BFloat16));
        using var gMixed = ModelGradients.Zeros(mixed);
        using var gRounded = ModelGradients.Zeros(rounded);
        mixed.ForwardBackward(windows, gMixed);
        rounded.ForwardBackward(windows, gRounded);
        foreach (var (name, expected) in gRounded.Tensors)
            Numerics.AssertClose(name, gMixed.Tensors[name].ToHost(), expected.ToHost().Select(v => (double)v).ToArray(), 1e-4);
    }

    [Fact]
    public void The_trainer_keeps_fp32_masters_that_move_by_less_than_a_bf16_step()
    {
        var model = Path.Combine(root, "model");
        using (var created = LanguageModel.Create(device, ModelTestSupport.Micro(), seed: 3))
            created.Save(model);
        var pattern = Enumerable.Range(0, 400).Select(i => (i * 7 + i / 40) % 40).ToArray();
        TokenDataset.WriteTokenFile(Path.Combine(root, "train.bin"), pattern);
        var settings = new TrainingSettings
        {
            Steps = 3, Batch = 2, SeqLen = 8, LearningRate = 1e-4, ChunkSize = 3, ComputeType = TensorDType.BFloat16,
            Data = [Path.Combine(root, "train.bin")],
        };
        using var trainer = Trainer.Start(device, model, settings, Path.Combine(root, "run"));
        var before = trainer.Model.ExportWeights()["layers.0.ffn.fc1.weight"].Data;
        while (trainer.Step < settings.Steps)
            Assert.True(double.IsFinite(trainer.RunStep().Loss));
        trainer.Save();
        var after = Safetensors.Read(Path.Combine(root, "run", "model.safetensors")).Tensors["layers.0.ffn.fc1.weight"];
        Assert.Equal(TensorDType.Float32, after.DType);
        // A learning rate of 1e-4 moves weights by far less than bf16's spacing (2^-8 relative): masters rounded to
        // bf16 after each update would not move at all, fp32 masters do, and not onto the bf16 grid.
        var moved = after.Data.Zip(before).Count(p => p.First != p.Second);
        Assert.True(moved > after.Data.Length / 2, $"{moved} of {after.Data.Length} weights moved");
        Assert.Contains(after.Data, v => TensorDTypes.Round(v, TensorDType.BFloat16) != v);
    }

    [Fact]
    public void Copies_of_16_bit_masters_and_an_unknown_type_are_refused()
    {
        var config = ModelTestSupport.Micro();
        using var narrow = LanguageModel.FromWeights(device, config, ModelTestSupport.Weights(config, 1),
            weightType: TensorDType.BFloat16);
        var error = Assert.Throws<ArgumentException>(() => narrow.UseComputeType(TensorDType.Float16));
        Assert.Contains("fp32 master", error.Message);
        // Typed settings hold no unknown type; the one place text becomes a type is where settings are read.
        var json = new TrainingSettings { Steps = 1 }.ToJson().Replace("\"fp32\"", "\"int8\"", StringComparison.Ordinal);
        Assert.Contains("int8", Assert.Throws<InvalidDataException>(() => TrainingSettings.FromJson(json)).Message);
        Assert.Equal(TensorDType.BFloat16, TrainingSettings.FromJson(json.Replace("int8", "bf16")).ComputeType);
    }

}
