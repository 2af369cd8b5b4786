using RetNet.Ilgpu.IO;
using RetNet.Ilgpu.Tensors;

namespace RetNet.Ilgpu.Verification.Cases;

/// <summary>
/// The weights and token batches <c>retnet verify</c>'s model checks and the model tests and properties run: any
/// model's initialisation with its norm weights moved off 1, the same weights as a 16-bit model stores them, and
/// random token ids.
/// </summary>
public static class ModelCases
{
    /// <summary>
    /// <paramref name="weights"/> with every vector (the norm weights, which initialise to 1) redrawn uniformly in
    /// [0.5, 1.5) from <paramref name="seed"/>, in the dictionary's order, so that a norm applied wrongly shows.
    /// Changes the vectors in place and returns the same dictionary.
    /// </summary>
    public static IReadOnlyDictionary<string, HostTensor> WithNormWeightsOffOne(
        IReadOnlyDictionary<string, HostTensor> weights, int seed)
    {
        ArgumentNullException.ThrowIfNull(weights);
        var random = new Random(seed);
        foreach (var (_, tensor) in weights)
            if (tensor.Shape.Length == 1)
                for (var i = 0; i < tensor.Data.Length; i++)
                    tensor.Data[i] = (float)(0.5 + random.NextDouble());
        return weights;
    }

    /// <summary>The weights a model whose matrices are stored as <paramref name="dtype"/> holds: matrices rounded,
    /// vectors (norm weights, kept fp32) as they are.</summary>
    public static Dictionary<string, HostTensor> Rounded(IReadOnlyDictionary<string, HostTensor> weights,
        TensorDType dtype)
    {
        ArgumentNullException.ThrowIfNull(weights);
        return weights.ToDictionary(kv => kv.Key, kv => kv.Value.Shape.Length >= 2
            ? new HostTensor(kv.Value.Shape, CaseInputs.Rounded(kv.Value.Data, dtype))
            : kv.Value);
    }

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
        ArgumentNullException.ThrowIfNull(tokens);
        var n = length < 0 ? tokens.GetLength(1) : length;
        var row = new int[n];
        for (var t = 0; t < n; t++)
            row[t] = tokens[b, t];
        return row;
    }
}
