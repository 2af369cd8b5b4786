using ILGPU;
using RetNet.Ilgpu.Kernels;

namespace RetNet.Ilgpu.Retention;

/// <summary>Sizes of one decay-sum launch over rows [B, T, H].</summary>
internal struct DecaySumProblem
{
    public int SeqLen;
    public int Heads;
}

/// <summary>Device code of the decay normalisation (docs/MATH.md §4).</summary>
internal static class DecayNormalizationKernels
{
    /// <summary>
    /// One thread per row ((b·T + t)·H + h): sums[row] = s_p = Σ_{j=0}^{p} γ_h^j = expm1((p + 1)·log γ_h) / (γ_h − 1)
    /// at the absolute position p = starts[b] + t. decay is the [2, H] table [log γ ; γ − 1], both rows computed in
    /// double on the host, so s_p keeps fp32's relative precision even for γ within 1e-7 of 1 (where 1 − γ^(p+1)
    /// formed directly would cancel).
    /// </summary>
    [Kernel(KernelGrouping.Implicit)]
    public static void RowDecaySums(Index1D thread, ArrayView<int> starts, ArrayView<float> decay,
        ArrayView<float> sums, DecaySumProblem p, Spread spread)
    {
        // Each item (row) is handled by exactly one thread; Launch.Spread decides which.
        for (var runStart = spread.First(thread); runStart < spread.Count; runStart += spread.Step)
        {
            var runEnd = spread.End(runStart);
            for (var row = runStart; row < runEnd; row++)
            {
                var bt = row / p.Heads;
                var h = row - bt * p.Heads;
                var b = bt / p.SeqLen;
                var t = bt - b * p.SeqLen;
                var terms = (float)(starts[b] + t + 1);
                sums[row] = KernelMath.Expm1(terms * decay[h]) / decay[p.Heads + h];
            }
        }
    }
}
