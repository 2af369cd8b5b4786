using RetNet.Ilgpu.Model;
using RetNet.Ilgpu.Tensors;
using RetNet.Ilgpu.Verification.Cases;

namespace RetNet.Ilgpu.Verification;

/// <summary>
/// Whole models on a micro config with seeded weights against their float64 references: RetNet's logits in the
/// parallel, chunkwise (a chunk that does not divide T) and recurrent forms (<see cref="ModelReference"/>); the
/// Transformer's logits and a prefill followed by KV-cache steps (<see cref="TransformerReference"/>).
/// </summary>
internal static class ModelVerification
{
    // fp32 models through a dozen operators, against float64: the model tests' parity bound.
    private const double Tolerance = 2e-4;

    public static void RetNet(VerificationContext context)
    {
        var config = new RetNetConfig
        {
            EmbedDim = 32, ValueEmbedDim = 64, RetentionHeads = 2, FfnEmbedDim = 48, Layers = 2, VocabSize = 40,
        };
        var weights = ModelCases.WithNormWeightsOffOne(WeightLayout.Initialize(config, 3), 10);
        var tokens = ModelCases.Tokens(seed: 9, batch: 2, seqLen: 13, config.VocabSize);
        var shape = $"d={config.EmbedDim} H={config.RetentionHeads} L={config.Layers} V={config.VocabSize} B=2 T=13";
        double[]? expected = null;
        foreach (var mode in new[] { ForwardMode.Parallel, ForwardMode.Chunkwise(5), ForwardMode.Recurrent })
            context.Check($"LanguageModel.Forward retnet {mode}", shape, Tolerance, () =>
            {
                using var model = LanguageModel.FromWeights(context.Device, config, weights);
                using var logits = model.Forward(tokens, mode);
                expected ??= ModelReference.Forward(config, weights, tokens);
                return [new CheckedOutput("logits", logits.ToHost(), expected)];
            });
        // bf16 weight matrices: held to the float64 forward of the values they store (matrices rounded, norms not).
        var stored = ModelCases.Rounded(weights, TensorDType.BFloat16);
        context.Check($"LanguageModel.Forward retnet bf16 weights {ForwardMode.Chunkwise(5)}", shape, Tolerance, () =>
        {
            using var model = LanguageModel.FromWeights(context.Device, config, weights, weightType: TensorDType.BFloat16);
            using var logits = model.Forward(tokens, ForwardMode.Chunkwise(5));
            return [new CheckedOutput("logits", logits.ToHost(), ModelReference.Forward(config, stored, tokens))];
        });
    }

    public static void Transformer(VerificationContext context)
    {
        var config = new TransformerConfig { EmbedDim = 32, Heads = 2, FfnEmbedDim = 40, Layers = 2, VocabSize = 40 };
        var weights = ModelCases.WithNormWeightsOffOne(config.InitialWeights(5), 12);
        const int seqLen = 11, prompt = 6;
        var tokens = ModelCases.Tokens(seed: 2, batch: 2, seqLen, config.VocabSize);
        var shape = $"d={config.EmbedDim} H={config.Heads} L={config.Layers} V={config.VocabSize} B=2 T={seqLen}";
        var expected = new Lazy<double[]>(() => TransformerReference.Forward(config, weights, tokens));
        context.Check("LanguageModel.Forward transformer", shape, Tolerance, () =>
        {
            using var model = LanguageModel.FromWeights(context.Device, config, weights);
            using var logits = model.Forward(tokens);
            return [new CheckedOutput("logits", logits.ToHost(), expected.Value)];
        });
        context.Check("LanguageModel.Prefill+Step transformer", $"{shape} prompt {prompt}", Tolerance, () =>
        {
            using var model = LanguageModel.FromWeights(context.Device, config, weights);
            var vocab = config.VocabSize;
            var actual = new List<float>();
            var reference = new List<double>();
            void Collect(int b, int t, float[] row)
            {
                actual.AddRange(row);
                reference.AddRange(expected.Value.AsSpan((b * seqLen + t) * vocab, vocab).ToArray());
            }
            var prompts = new[] { ModelCases.Row(tokens, 0, prompt), ModelCases.Row(tokens, 1, prompt) };
            var (logits, cache) = model.Prefill(prompts);
            using (cache)
            {
                for (var b = 0; b < 2; b++)
                    Collect(b, prompt - 1, logits[b]);
                // Past the prefill's capacity (the longest prompt): the cache grows on the way.
                for (var t = prompt; t < seqLen; t++)
                {
                    var step = model.Step([tokens[0, t], tokens[1, t]], cache);
                    for (var b = 0; b < 2; b++)
                        Collect(b, t, step[b]);
                }
            }
            return [new CheckedOutput("prefill and step logits", actual, reference)];
        });
    }
}
