using RetNet.Ilgpu.Model;
using RetNet.Ilgpu.Tests.Model;
using RetNet.Ilgpu.Tests.Support;
using RetNet.Ilgpu.Tokenizers;
using RetNet.Ilgpu.Training;
using RetNet.Ilgpu.Training.Data;

namespace RetNet.Ilgpu.Tests.Training;

/// <summary>The training loop end to end on a micro model: it learns, it is deterministic, and a stopped run resumed
/// from its checkpoint ends bit-identical to one that was not stopped.</summary>
[Collection(DeviceCollection.Name)]
public sealed class TrainerTests(DeviceFixture fixture) : IDisposable
{
    private readonly RetNetDevice device = fixture.Device;
    private readonly string root = Path.Combine(Path.GetTempPath(), $"retnet-train-{Guid.NewGuid():N}");

    /// <summary>A micro model and a token file of a repeating pattern (learnable: each token predicts the next).</summary>
    private (string Model, TrainingSettings Settings) Setup(int steps, ulong seed = 7)
    {
        var model = Path.Combine(root, "model");
        if (!Directory.Exists(model))
        {
            using var created = LanguageModel.Create(device, ModelTestSupport.Micro(), seed: 3);
            created.Save(model);
            var pattern = Enumerable.Range(0, 600).Select(i => (i * 7 + i / 40) % 40).ToArray();
            TokenDataset.WriteTokenFile(Path.Combine(root, "train.bin"), pattern);
            TokenDataset.WriteTokenFile(Path.Combine(root, "val.bin"), pattern.Take(200).ToArray());
        }
        return (model, new TrainingSettings
        {
            Steps = steps, Batch = 2, SeqLen = 8, LearningRate = 1e-2, Warmup = 2, Clip = 1.0, ChunkSize = 3,
            Seed = seed, Data = [Path.Combine(root, "train.bin")], ValidationData = [Path.Combine(root, "val.bin")],
        });
    }

    private byte[] Train(string output, TrainingSettings settings, string model, int? stopAfter = null)
    {
        using var trainer = Trainer.Start(device, model, settings, output);
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
        Assert.Equal(24 * 8, after.Tokens);
        Assert.Null(after.BitsPerByte);
    }

    [Fact]
    public void The_same_seed_gives_bit_identical_weights_and_another_seed_does_not()
    {
        var (model, settings) = Setup(steps: 4);
        var a = Train(Path.Combine(root, "a"), settings, model);
        var b = Train(Path.Combine(root, "b"), settings, model);
        var c = Train(Path.Combine(root, "c"), settings with { Seed = 8 }, model);
        Assert.Equal(a, b);
        Assert.NotEqual(a, c);
    }

    [Fact]
    public void Twenty_steps_equal_ten_then_a_resume_to_twenty_bit_for_bit()
    {
        var (model, settings) = Setup(steps: 20);
        var straight = Train(Path.Combine(root, "straight"), settings, model);
        var stopped = Path.Combine(root, "stopped");
        var halfway = Train(stopped, settings, model, stopAfter: 10);
        Assert.NotEqual(straight, halfway);
        using (var resumed = Trainer.Resume(device, stopped, Path.Combine(root, "resumed")))
        {
            Assert.Equal(10, resumed.Step);
            while (resumed.Step < settings.Steps)
                resumed.RunStep();
            resumed.Save();
            Assert.Throws<InvalidOperationException>(() => resumed.RunStep());
        }
        Assert.Equal(straight, File.ReadAllBytes(Path.Combine(root, "resumed", "model.safetensors")));
        using var loaded = LanguageModel.Load(device, Path.Combine(root, "resumed"));
        Assert.Empty(loaded.Notices);
    }

    [Fact]
    public void A_cancelled_step_changes_nothing_and_the_saved_run_resumes_bit_for_bit()
    {
        var (model, settings) = Setup(steps: 6);
        var straight = Train(Path.Combine(root, "straight"), settings, model);
        var stopped = Path.Combine(root, "cancelled");
        using (var source = new CancellationTokenSource())
        using (var trainer = Trainer.Start(device, model, settings, stopped))
        {
            while (trainer.Step < 3)
                trainer.RunStep(source.Token);
            source.Cancel();
            Assert.Throws<OperationCanceledException>(() => trainer.RunStep(source.Token));
            Assert.Equal(3, trainer.Step);
            trainer.Save();
        }
        using (var resumed = Trainer.Resume(device, stopped))
        {
            Assert.Equal(3, resumed.Step);
            while (resumed.Step < settings.Steps)
                resumed.RunStep();
            resumed.Save();
        }
        Assert.Equal(straight, File.ReadAllBytes(Path.Combine(stopped, "model.safetensors")));
    }

    [Fact]
    public void Bad_settings_and_checkpoints_are_rejected_clearly()
    {
        var (model, settings) = Setup(steps: 2);
        var error = Assert.Throws<ArgumentException>(() =>
            Trainer.Start(device, model, settings with { Steps = 0, Warmup = 5, Form = RetentionForm.Recurrent }, root));
        Assert.Contains("Steps (--steps) is 0", error.Message);
        Assert.Contains("Form (--form) is recurrent", error.Message);
        Assert.Throws<FileNotFoundException>(() => Trainer.Resume(device, model));
        Assert.Throws<ArgumentException>(() =>
            Trainer.Start(device, model, settings with { SeqLen = 1000 }, Path.Combine(root, "x")));
    }

    [Fact]
    public void A_loop_written_out_with_the_library_equals_the_trainer_on_data_in_memory_bit_for_bit()
    {
        var (_, settings) = Setup(steps: 6);
        settings = settings with { Data = [], ValidationData = [], GradAccum = 2 };
        var pattern = Enumerable.Range(0, 600).Select(i => (i * 7 + i / 40) % 40).ToArray();
        using var data = TokenDataset.FromIds(pattern, 40);
        var config = ModelTestSupport.Micro();

        using var trained = LanguageModel.Create(device, config, seed: 3);
        using (var trainer = Trainer.Start(trained, new TrainingData(data), settings, Path.Combine(root, "memory")))
            trainer.Run();

        // The same steps, written out: zero, micro-batches of forward+backward, clip, AdamW at the schedule's rate.
        using var model = LanguageModel.Create(device, config, seed: 3);
        using var gradients = model.CreateGradients();
        using var optimizer = AdamW.For(model, settings.Optimizer);
        var sampler = new WindowSampler(data, settings.SeqLen, settings.Seed);
        var windows = new int[settings.Batch, settings.SeqLen + 1];
        for (var step = 1; step <= settings.Steps; step++)
        {
            gradients.Zero();
            for (var micro = 0; micro < settings.GradAccum; micro++)
            {
                sampler.Next(windows);
                model.ForwardBackward(windows, gradients, settings.Mode, 1f / settings.GradAccum);
            }
            var norm = GradientClipping.GlobalNorm([.. gradients.Tensors.Values]);
            optimizer.Step(gradients.Tensors, settings.LearningRates.At(step),
                GradientClipping.ClipScale(norm, settings.Clip));
        }
        var expected = trained.ExportWeights();
        foreach (var (name, tensor) in model.ExportWeights())
            Assert.True(tensor.Data.AsSpan().SequenceEqual(expected[name].Data), name);
        // Negative control: one step fewer differs.
        using var initial = LanguageModel.Create(device, config, seed: 3);
        Assert.False(initial.ExportWeights()["layers.0.ffn.fc1.weight"].Data.AsSpan()
            .SequenceEqual(expected["layers.0.ffn.fc1.weight"].Data));
    }

    [Fact]
    public void A_non_finite_step_stops_training_naming_the_step_or_is_skipped_when_asked()
    {
        var (_, settings) = Setup(steps: 3);
        settings = settings with { Data = [], ValidationData = [] };
        var config = ModelTestSupport.Micro();
        using var data = TokenDataset.FromIds(Enumerable.Range(0, 200).Select(i => i % 40).ToArray(), 40);
        var weights = ModelTestSupport.Weights(config, seed: 3).ToDictionary();
        // Finite weights whose logits overflow: the loss and the gradients are not finite from the first step.
        Array.Fill(weights["output_projection.weight"].Data, 3e38f);
        using (var model = LanguageModel.FromWeights(device, config, weights))
        {
            using var trainer = Trainer.Start(model, new TrainingData(data), settings, Path.Combine(root, "stop"));
            var before = model.ExportWeights();
            var error = Assert.Throws<NonFiniteValuesException>(() => trainer.RunStep());
            Assert.StartsWith("Step 1:", error.Message);
            Assert.Contains("--on-non-finite skip", error.Message);
            Assert.Equal(0, trainer.Step);
            foreach (var (name, tensor) in model.ExportWeights())
                Assert.True(tensor.Data.AsSpan().SequenceEqual(before[name].Data), name);
        }
        using (var model = LanguageModel.FromWeights(device, config, weights))
        {
            using var trainer = Trainer.Start(model, new TrainingData(data),
                settings with { OnNonFinite = NonFiniteStepPolicy.Skip }, Path.Combine(root, "skip"));
            var before = model.ExportWeights();
            var steps = new List<TrainingStep>();
            trainer.Run(onStep: steps.Add);
            Assert.All(steps, s => Assert.True(s.Skipped));
            Assert.Equal(3, trainer.SkippedSteps);
            Assert.Equal(3, trainer.Step);
            foreach (var (name, tensor) in model.ExportWeights())
                Assert.True(tensor.Data.AsSpan().SequenceEqual(before[name].Data), name);
        }
        // Negative control: the same run with finite logits takes its steps.
        using var fine = LanguageModel.Create(device, config, seed: 3);
        using var fineTrainer = Trainer.Start(fine, new TrainingData(data),
            settings with { OnNonFinite = NonFiniteStepPolicy.Skip }, Path.Combine(root, "fine"));
        Assert.False(fineTrainer.RunStep().Skipped);
    }

    [Fact]
    public void A_model_folders_sentencepiece_tokenizer_reads_text_data_and_travels_into_the_checkpoint()
    {
        var model = Path.Combine(root, "llama-like");
        using (var created = LanguageModel.Create(device, ModelTestSupport.Micro() with { VocabSize = 500 }, seed: 3))
            created.Save(model);
        var fixture = Path.Combine(AppContext.BaseDirectory, "Fixtures", "SentencePiece", SentencePieceTokenizer.FileName);
        File.Copy(fixture, Path.Combine(model, SentencePieceTokenizer.FileName));
        File.WriteAllText(Path.Combine(model, "tokenizer_config.json"), """{ "add_bos_token": false }""");
        var text = Path.Combine(root, "train.txt");
        File.WriteAllText(text, string.Concat(Enumerable.Repeat("The model reads the text one token at a time.\n", 20)));
        var settings = new TrainingSettings { Steps = 2, Batch = 2, SeqLen = 8, Data = [text] };
        // One chunk of text, encoded as one text: no <s> (the folder's config says so), the dummy prefix once.
        long tokens = SentencePieceTokenizer.FromModelFolder(model).Encode(File.ReadAllText(text)).Count;

        var output = Path.Combine(root, "sentencepiece-run");
        using (var trainer = Trainer.Start(device, model, settings, output))
        {
            Assert.Equal(tokens, trainer.TrainingTokens);
            trainer.RunStep();
            trainer.Save();
        }
        Assert.Equal(File.ReadAllBytes(fixture), File.ReadAllBytes(Path.Combine(output, SentencePieceTokenizer.FileName)));
        Assert.False(SentencePieceTokenizer.FromModelFolder(output).AddBeginningOfText);
        using var resumed = Trainer.Resume(device, output);
        Assert.Equal(1, resumed.Step);
        Assert.Equal(tokens, resumed.TrainingTokens);
    }

    public void Dispose()
    {
        if (Directory.Exists(root))
            Directory.Delete(root, recursive: true);
    }
}
