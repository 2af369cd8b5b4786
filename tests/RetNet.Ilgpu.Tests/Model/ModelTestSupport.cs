using RetNet.Ilgpu.IO;
using RetNet.Ilgpu.Model;
using RetNet.Ilgpu.Tensors;
using RetNet.Ilgpu.Tests.Support;
using RetNet.Ilgpu.Verification.Cases;

namespace RetNet.Ilgpu.Tests.Model;

/// <summary>Small configs, perturbed weights and token batches shared by the model tests and properties (the
/// generators themselves are <see cref="ModelCases"/>, shared with <c>retnet verify</c>).</summary>
public static class ModelTestSupport
{
    /// <summary>The two architectures by name, for theories over both.</summary>
    public static TheoryData<string> Architectures => ["retnet", "transformer"];

    /// <summary><see cref="Micro"/> for "retnet", a Transformer of about its size for "transformer".</summary>
    public static ModelConfig MicroOf(string architecture) => architecture == "retnet"
        ? Micro()
        : new TransformerConfig { EmbedDim = 32, Heads = 2, FfnEmbedDim = 40, Layers = 2, VocabSize = 40 };

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

    /// <summary><paramref name="weights"/> (changed in place) with every norm weight moved off 1 into [0.5, 1.5)
    /// (<see cref="ModelCases.WithNormWeightsOffOne"/> from seed + 7).</summary>
    public static IReadOnlyDictionary<string, HostTensor> WithNormsOffOne(IReadOnlyDictionary<string, HostTensor> weights,
        int seed) => ModelCases.WithNormWeightsOffOne(weights, seed + 7);

    /// <summary>The weights a model whose matrices are stored as <paramref name="dtype"/> holds: matrices rounded,
    /// vectors (norm weights, kept fp32) as they are.</summary>
    public static Dictionary<string, HostTensor> Rounded(IReadOnlyDictionary<string, HostTensor> weights,
        TensorDType dtype) => ModelCases.Rounded(weights, dtype);

    /// <summary>Random token ids [B, T] in [0, V).</summary>
    public static int[,] Tokens(int seed, int batch, int seqLen, int vocab) =>
        ModelCases.Tokens(seed, batch, seqLen, vocab);

    /// <summary>Row b of tokens [B, T], or its first <paramref name="length"/> ids.</summary>
    public static int[] Row(int[,] tokens, int b, int length = -1) => ModelCases.Row(tokens, b, length);

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
