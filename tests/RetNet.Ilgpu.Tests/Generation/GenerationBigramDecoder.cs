using RetNet.Ilgpu.Generation;

namespace RetNet.Ilgpu.Tests.Generation;

/// <summary>
/// A deterministic stand-in for a model: the logits after a token depend only on that token (a bigram table), so
/// generation can be tested without a network. Records every call.
/// </summary>
public sealed class GenerationBigramDecoder(float[][] table) : ITokenDecoder
{
    private int[] last = [];

    /// <summary>A table in which token t is followed, greedily, by (t + 1) mod V, less strongly by others.</summary>
    public static GenerationBigramDecoder Successor(int vocabulary)
    {
        var table = new float[vocabulary][];
        for (var t = 0; t < vocabulary; t++)
        {
            table[t] = new float[vocabulary];
            for (var u = 0; u < vocabulary; u++)
                table[t][u] = -0.1f * ((u - t - 1 + vocabulary) % vocabulary);
            table[t][(t + 1) % vocabulary] = 3f;
        }
        return new GenerationBigramDecoder(table);
    }

    public int VocabularySize => table.Length;

    public int PrefillCalls { get; private set; }

    public int StepCalls { get; private set; }

    public List<int[]> StepInputs { get; } = [];

    public float[][] Prefill(IReadOnlyList<IReadOnlyList<int>> prompts)
    {
        PrefillCalls++;
        last = prompts.Select(p => p[^1]).ToArray();
        return Logits();
    }

    public float[][] Step(IReadOnlyList<int> nextTokens)
    {
        Assert.Equal(last.Length, nextTokens.Count);
        StepCalls++;
        StepInputs.Add(nextTokens.ToArray());
        last = nextTokens.ToArray();
        return Logits();
    }

    private float[][] Logits() => last.Select(t => (float[])table[t].Clone()).ToArray();
}
