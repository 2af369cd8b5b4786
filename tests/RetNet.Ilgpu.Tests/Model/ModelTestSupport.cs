using RetNet.Ilgpu.IO;
using RetNet.Ilgpu.Model;
using RetNet.Ilgpu.Tensors;
using RetNet.Ilgpu.Tests.Support;

namespace RetNet.Ilgpu.Tests.Model;

/// <summary>Small configs, perturbed weights and token batches shared by the model tests and properties.</summary>
public static class ModelTestSupport
{
    /// <summary>A config small enough for the CPU accelerator: d 32, value 64, 2 heads (Dk 16, Dv 32), 2 layers.</summary>
    public static RetNetConfig Micro(string activation = "swish", bool tied = false, bool scaleEmbedding = true,
        int heads = 2, int layers = 2) => new()
    {
        EmbedDim = 16 * heads, ValueEmbedDim = 32 * heads, RetentionHeads = heads, FfnEmbedDim = 48,
        Layers = layers, VocabSize = 40, ActivationFn = activation, ShareInputOutputEmbed = tied,
        NoScaleEmbedding = !scaleEmbedding,
    };

    /// <summary>torchscale's initialisation with the norm weights moved off 1, so that they matter in comparisons.</summary>
    public static IReadOnlyDictionary<string, HostTensor> Weights(RetNetConfig config, int seed) =>
        WithNormsOffOne(WeightLayout.Initialize(config, seed), seed);

    /// <summary><paramref name="weights"/> (changed in place) with every norm weight moved off 1 into [0.5, 1.5).</summary>
    public static IReadOnlyDictionary<string, HostTensor> WithNormsOffOne(IReadOnlyDictionary<string, HostTensor> weights,
        int seed)
    {
        var random = new Random(seed + 7);
        foreach (var (_, tensor) in weights)
            if (tensor.Shape.Length == 1)
                for (var i = 0; i < tensor.Data.Length; i++)
                    tensor.Data[i] = (float)(0.5 + random.NextDouble());
        return weights;
    }

    /// <summary>The weights a model whose matrices are stored as <paramref name="dtype"/> holds: matrices rounded,
    /// vectors (norm weights, kept fp32) as they are.</summary>
    public static Dictionary<string, HostTensor> Rounded(IReadOnlyDictionary<string, HostTensor> weights,
        TensorDType dtype) =>
        weights.ToDictionary(kv => kv.Key, kv => kv.Value.Shape.Length >= 2
            ? new HostTensor(kv.Value.Shape, kv.Value.Data.Select(v => TensorDTypes.Round(v, dtype)).ToArray())
            : kv.Value);

    /// <summary>Random token ids [B, T] in [0, V).</summary>
    public static int[,] Tokens(int seed, int batch, int seqLen, int vocab)
    {
        var random = new Random(seed);
        var tokens = new int[batch, seqLen];
        for (var b = 0; b < batch; b++)
        for (var t = 0; t < seqLen; t++)
            tokens[b, t] = random.Next(vocab);
        return tokens;
    }

    /// <summary>Row b of tokens [B, T], or its first <paramref name="length"/> ids.</summary>
    public static int[] Row(int[,] tokens, int b, int length = -1)
    {
        var n = length < 0 ? tokens.GetLength(1) : length;
        var row = new int[n];
        for (var t = 0; t < n; t++)
            row[t] = tokens[b, t];
        return row;
    }

    /// <summary>The three forms the model tests run: parallel, chunkwise with a chunk that does not divide their
    /// lengths, recurrent.</summary>
    public static ForwardMode[] EveryForm(int chunkSize) =>
        [ForwardMode.Parallel, ForwardMode.Chunkwise(chunkSize), ForwardMode.Recurrent];

    /// <summary>The model's acceptance bound: max |Δ| ≤ 2e-4 · max |reference| (fp32 model, float64 reference).</summary>
    public const double ParityTolerance = 2e-4;

    /// <summary>Asserts that the logits of <paramref name="model"/> in every form of <see cref="EveryForm"/> are within
    /// <see cref="ParityTolerance"/> of <paramref name="expected"/> by the project's rule.</summary>
    public static void AssertEveryFormMatches(LanguageModel model, int[,] tokens, IReadOnlyList<double> expected,
        string what, int chunkSize)
    {
        foreach (var mode in EveryForm(chunkSize))
        {
            using var logits = model.Forward(tokens, mode);
            Assert.Equal([tokens.GetLength(0), tokens.GetLength(1), model.VocabSize], logits.ShapeArray);
            Numerics.AssertClose($"{what} {mode}", logits.ToHost(), expected, ParityTolerance);
        }
    }
}
