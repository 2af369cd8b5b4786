using ILGPU;
using ILGPU.Runtime;
using RetNet.Ilgpu.Kernels;
using RetNet.Ilgpu.Tensors;

namespace RetNet.Ilgpu.Retention;

/// <summary>
/// The decay normalisation of RetNet (paper §2.2, torchscale): row t of head h of the retention output is divided by
/// √s_t, s_t = Σ_{j=0}^{t} γ_h^j, t the absolute position. Followed by the per-head RMSNorm with eps, that is
/// y / √(mean(y²) + eps·s_t) (docs/MATH.md §4), so the model computes s_t for every row once per pass and hands it to
/// the head norm as a per-row eps scale. It depends only on head and position, which keeps the three retention forms
/// identical.
/// </summary>
public static class DecayNormalization
{
    /// <summary>
    /// Writes sums [B, T, H] with sums[b, t, h] = Σ_{j=0}^{p} γ_h^j at the absolute position
    /// p = startPositions[b] + t.
    /// </summary>
    /// <exception cref="ArgumentException">sums is not rank 3, H differs from the schedule's heads, the start count is
    /// not B, or a start is negative.</exception>
    public static void RowSums(Tensor sums, IReadOnlyList<int> startPositions, DecaySchedule decay)
    {
        ArgumentNullException.ThrowIfNull(sums);
        ArgumentNullException.ThrowIfNull(startPositions);
        ArgumentNullException.ThrowIfNull(decay);
        ShapeCheck.Rank(sums, nameof(sums), 3);
        if (sums.Dim(2) != decay.Heads)
            throw new ArgumentException(
                $"Argument 'sums' has shape {ShapeCheck.Format(sums.Shape)}; expected H = {decay.Heads}, the " +
                "schedule's heads, as its last dimension.", nameof(sums));
        if (startPositions.Count != sums.Dim(0))
            throw new ArgumentException(
                $"Argument 'startPositions' has {startPositions.Count} values; expected one per sequence ({sums.Dim(0)}).",
                nameof(startPositions));
        if (startPositions.Any(s => s < 0))
            throw new ArgumentException("Argument 'startPositions' holds a negative position.", nameof(startPositions));
        using var table = decay.Upload(sums.Device);
        using var starts = IndexTensor.FromHost(sums.Device, startPositions.ToArray(), startPositions.Count);
        Launch(starts, table, sums.Dim(1), sums.Reshape(sums.Length));
        sums.Device.Synchronize();
    }

    /// <summary>The model's launch: one start position per sequence in <paramref name="starts"/> [B], the [2, H] table
    /// of <see cref="DecaySchedule"/>, sums [B·T·H].</summary>
    internal static void Launch(IndexTensor starts, Tensor decayTable, int seqLen, Tensor sums)
    {
        var batch = starts.Length;
        var heads = decayTable.Dim(1);
        ShapeCheck.Expect(sums, nameof(sums), batch * seqLen * heads);
        if (sums.Length == 0)
            return;
        var device = sums.Device;
        var problem = new DecaySumProblem { SeqLen = seqLen, Heads = heads };
        var kernel = device.Kernel(DecayNormalizationKernels.RowDecaySums, accelerator =>
            accelerator.LoadAutoGroupedKernel<Index1D, ArrayView<int>, ArrayView<float>, ArrayView<float>,
                DecaySumProblem, Spread>(DecayNormalizationKernels.RowDecaySums));
        var spread = Kernels.Launch.Spread(device, sums.Length);
        kernel(device.Stream, spread.Threads, starts.View, decayTable.View, sums.View, problem, spread);
    }
}
