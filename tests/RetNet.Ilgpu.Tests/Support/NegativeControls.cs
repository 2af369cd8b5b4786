namespace RetNet.Ilgpu.Tests.Support;

/// <summary>
/// Wrong results made from right ones, for the negative controls that pair each tolerance: a check is worth what it
/// can reject (see <see cref="Numerics.AssertRejected"/>).
/// </summary>
public static class NegativeControls
{
    /// <summary>
    /// A [B, T, …] array read one position late: position t holds position t − 1 (position 0 keeps its own), the
    /// result of an index off by one. <paramref name="rowLength"/> is the number of values per position (H · D, or
    /// the vocabulary for logits).
    /// </summary>
    public static float[] OnePositionLate(IReadOnlyList<float> x, int batch, int seqLen, int rowLength)
    {
        ArgumentNullException.ThrowIfNull(x);
        if (x.Count != batch * seqLen * rowLength)
            throw new ArgumentException(
                $"Argument 'x' has {x.Count} values; expected {batch}·{seqLen}·{rowLength}.", nameof(x));
        var result = x.ToArray();
        for (var b = 0; b < batch; b++)
        for (var t = 1; t < seqLen; t++)
        for (var i = 0; i < rowLength; i++)
            result[(b * seqLen + t) * rowLength + i] = x[(b * seqLen + t - 1) * rowLength + i];
        return result;
    }

    /// <summary>Every entry read one place on (the last reads the first): an index off by one.</summary>
    public static float[] OneEntryOff(IReadOnlyList<float> x)
    {
        ArgumentNullException.ThrowIfNull(x);
        return x.Select((_, i) => x[(i + 1) % x.Count]).ToArray();
    }

    /// <summary>A double result rounded to fp32, as a kernel computing the same wrong thing would write it.</summary>
    public static float[] ToFloat(IReadOnlyList<double> values)
    {
        ArgumentNullException.ThrowIfNull(values);
        return values.Select(v => (float)v).ToArray();
    }

    /// <summary>
    /// Asserts that at least one of the comparisons of a result with several parts (dq, dk, dv, …) rejects it: the
    /// wrong result as a whole is refused.
    /// </summary>
    public static void AssertAnyRejected(IReadOnlyList<Closeness> checks)
    {
        ArgumentNullException.ThrowIfNull(checks);
        Assert.False(checks.All(c => c.Passed),
            $"the check accepted what it must reject: {string.Join(" ", checks.Select(c => c.Message))}");
    }
}
