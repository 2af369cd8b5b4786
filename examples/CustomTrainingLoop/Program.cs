// A training loop written out with the library alone (the steps Trainer.RunStep takes), on text held in memory, for
// a RetNet and its Transformer twin: held-out loss before and after, save, reload, generate. Exit code 0 when the
// held-out loss fell and the reloaded model evaluates identically.
using RetNet.Ilgpu.Devices;
using RetNet.Ilgpu.Generation;
using RetNet.Ilgpu.Model;
using RetNet.Ilgpu.Tokenizers;
using RetNet.Ilgpu.Training;
using RetNet.Ilgpu.Training.Data;

var text = string.Concat(Enumerable.Range(0, 600).Select(i => $"{i % 7} little pigs went {i % 5} times to market. "));
var tokenizer = ByteTokenizer.Instance;
using var device = RetNetDevice.Open();
using var train = TokenDataset.FromText(text[..^4000], tokenizer, tokenizer.VocabularySize);
using var heldOut = TokenDataset.FromText(text[^4000..], tokenizer, tokenizer.VocabularySize);
var retnet = RetNetConfig.Preset("tiny");
const int seqLen = 64;
foreach (var config in new ModelConfig[] { retnet, TransformerConfig.Matching(retnet) })
{
    using var model = LanguageModel.Create(device, config, seed: 1);
    using var gradients = model.CreateGradients();
    using var optimizer = AdamW.For(model);
    var sampler = new WindowSampler(train, seqLen, seed: 1);
    var windows = new int[8, seqLen + 1];
    var before = model.Evaluate(heldOut, seqLen).Loss;
    for (var step = 1; step <= 60; step++)
    {
        gradients.Zero();
        sampler.Next(windows);
        var loss = model.ForwardBackward(windows, gradients);
        var norm = GradientClipping.GlobalNorm([.. gradients.Tensors.Values]);
        optimizer.Step(gradients.Tensors, learningRate: 3e-3, GradientClipping.ClipScale(norm, maxNorm: 1.0));
        if (step % 20 == 0)
            Console.WriteLine($"{model.Architecture} step {step}: loss {loss:F3}, gradient norm {norm:F3}");
    }
    var after = model.Evaluate(heldOut, seqLen).Loss;

    var folder = Path.Combine(Path.GetTempPath(), $"custom-loop-{model.Architecture}-{Environment.ProcessId}");
    model.Save(folder);
    using var reloaded = LanguageModel.Load(device, folder);
    Directory.Delete(folder, recursive: true);
    var same = reloaded.Evaluate(heldOut, seqLen).Loss == after;
    using var decoder = new ModelTokenDecoder(reloaded);
    var sample = string.Concat(TextGenerator.Generate(decoder, tokenizer, "3 little",
        SamplingOptions.Greedy with { MaxTokens = 40 }));
    Console.WriteLine($"{model.Architecture}: held-out loss {before:F3} → {after:F3} nats/byte; reloaded model " +
                      $"{(same ? "identical" : "DIFFERENT")}; \"3 little{sample}\"");
    if (!(after < before - 0.5) || !same)
        return 1;
}
return 0;
