using RetNet.Ilgpu.Tensors;

namespace RetNet.Ilgpu.Verification.Cases;

/// <summary>
/// The random inputs every check draws, the same in <c>retnet verify</c>, the tests and the properties: a seed names
/// an input exactly.
/// </summary>
public static class CaseInputs
{
    /// <summary>Uniform values in [−scale, scale), reproducible from the seed.</summary>
    public static float[] Uniform(int seed, int count, float scale = 1f)
    {
        var random = new Random(seed);
        var values = new float[count];
        for (var i = 0; i < count; i++)
            values[i] = (float)((random.NextDouble() * 2 - 1) * scale);
        return values;
    }

    /// <summary>The values a tensor of <paramref name="dtype"/> stores for <paramref name="values"/> (rounded the way
    /// the upload rounds): what a product over 16-bit operands is held to.</summary>
    public static float[] Rounded(IEnumerable<float> values, TensorDType dtype) =>
        values.Select(v => TensorDTypes.Round(v, dtype)).ToArray();

    /// <summary>The values as doubles, for the references that take them.</summary>
    public static double[] ToDouble(IEnumerable<float> values) => values.Select(v => (double)v).ToArray();
}
