using RetNet.Ilgpu.Model;
using RetNet.Ilgpu.Tests.Support;
using RetNet.Ilgpu.Training;
using RetNet.Ilgpu.Training.Data;

namespace RetNet.Ilgpu.Tests.Transformer;

/// <summary>The trainer drives the baseline Transformer like RetNet: it learns, and a resumed run ends bit-identical
/// to one that was not stopped.</summary>
[Collection(DeviceCollection.Name)]
public sealed class TransformerTrainingTests(DeviceFixture fixture) : IDisposable
{
    private readonly RetNetDevice device = fixture.Device;
    private readonly string root = Path.Combine(Path.GetTempPath(), $"retnet-transformer-train-{Guid.NewGuid():N}");

    private (string Model, TrainingSettings Settings) Setup(int steps)
    {
        var model = Path.Combine(root, "model");
        if (!Directory.Exists(model))
        {
            var config = new TransformerConfig
            {
                EmbedDim = 32, Heads = 2, FfnEmbedDim = 40, Layers = 2, VocabSize = 40,
            };
            using var created = LanguageModel.Create(device, config, seed: 3);
            created.Save(model);
            var pattern = Enumerable.Range(0, 600).Select(i => (i * 7 + i / 40) % 40).ToArray();
            TokenDataset.WriteTokenFile(Path.Combine(root, "train.bin"), pattern);
            TokenDataset.WriteTokenFile(Path.Combine(root, "val.bin"), pattern.Take(200).ToArray());
        }
        return (model, new TrainingSettings
        {
            Steps = steps, Batch = 2, SeqLen = 8, LearningRate = 1e-2, Warmup = 2, Clip = 1.0, Seed = 7,
            Data = [Path.Combine(root, "train.bin")], ValidationData = [Path.Combine(root, "val.bin")],
        });
    }

    private byte[] Train(string output, TrainingSettings settings, string model, int? stopAfter = null)
    {
        using var trainer = Trainer.Start(device, model, settings, output);
        Assert.IsType<LanguageModel>(trainer.Model);
        while (trainer.Step < (stopAfter ?? settings.Steps))
            trainer.RunStep();
        trainer.Save();
        return File.ReadAllBytes(Path.Combine(output, "model.safetensors"));
    }

    [Fact]
    public void The_loss_falls_on_learnable_data_and_validation_loss_follows()
    {
        var (model, settings) = Setup(steps: 40);
        using var trainer = Trainer.Start(device, model, settings, Path.Combine(root, "run"));
        var before = trainer.EvaluateValidation();
        var losses = new List<double>();
        while (trainer.Step < settings.Steps)
            losses.Add(trainer.RunStep().Loss);
        var after = trainer.EvaluateValidation();
        Assert.True(losses.TakeLast(5).Average() < 0.5 * losses.Take(5).Average(),
            $"training loss {losses.Take(5).Average():F3} → {losses.TakeLast(5).Average():F3}");
        Assert.True(after.Loss < 0.5 * before.Loss, $"validation loss {before.Loss:F3} → {after.Loss:F3}");
    }

    [Fact]
    public void Ten_steps_equal_five_then_a_resume_to_ten_bit_for_bit()
    {
        var (model, settings) = Setup(steps: 10);
        var straight = Train(Path.Combine(root, "straight"), settings, model);
        var stopped = Path.Combine(root, "stopped");
        var halfway = Train(stopped, settings, model, stopAfter: 5);
        Assert.NotEqual(straight, halfway);
        using (var resumed = Trainer.Resume(device, stopped, Path.Combine(root, "resumed")))
        {
            Assert.IsType<LanguageModel>(resumed.Model);
            Assert.Equal(5, resumed.Step);
            while (resumed.Step < settings.Steps)
                resumed.RunStep();
            resumed.Save();
        }
        Assert.Equal(straight, File.ReadAllBytes(Path.Combine(root, "resumed", "model.safetensors")));
        using var loaded = LanguageModel.Load(device, Path.Combine(root, "resumed"));
        Assert.Equal("transformer", loaded.Architecture);
    }

    public void Dispose()
    {
        if (Directory.Exists(root))
            Directory.Delete(root, recursive: true);
    }
}
