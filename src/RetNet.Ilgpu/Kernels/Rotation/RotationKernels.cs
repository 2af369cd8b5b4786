using ILGPU;
using ILGPU.Algorithms;

namespace RetNet.Ilgpu.Kernels.Rotation;

/// <summary>Sizes of one theta-shift launch over x [B, T, H, Dk].</summary>
internal struct RotationProblem
{
    public int SeqLen;
    public int Heads;
    public int HeadDim;
    public float Scale;

    /// <summary>Where pair i starts in a head row: i·PairStride (2 interleaved, 1 halves).</summary>
    public int PairStride;

    /// <summary>How far pair i's second element is from its first (1 interleaved, Dk/2 halves).</summary>
    public int PairOffset;
}

/// <summary>Device code of the rotation of queries and keys: torchscale's theta shift and GPT-NeoX's rotary
/// embedding, which differ only in which elements form a pair (<see cref="RotaryLayout"/>) and in the angles.</summary>
internal static class RotationKernels
{
    /// <summary>
    /// One thread per pair of a head row, elements (i·PairStride, i·PairStride + PairOffset): with p = starts[b] + t
    /// and a = p·angles[i], (x0, x1) ← scale·(x0 cos a − x1 sin a, x1 cos a + x0 sin a), in place. Index:
    /// ((b·T + t)·H + h)·(Dk/2) + i.
    /// </summary>
    [Kernel(KernelGrouping.Implicit)]
    public static void ThetaShift(Index1D thread, ArrayView<float> x, ArrayView<int> starts, ArrayView<float> angles,
        RotationProblem p, Spread spread)
    {
        // Each item (pair) is handled by exactly one thread; Launch.Spread decides which.
        for (var runStart = spread.First(thread); runStart < spread.Count; runStart += spread.Step)
        {
            var runEnd = spread.End(runStart);
            for (var pair = runStart; pair < runEnd; pair++)
            {
                var half = p.HeadDim / 2;
                var row = pair / half;
                var i = pair - row * half;
                var bt = row / p.Heads;
                var b = bt / p.SeqLen;
                var t = bt - b * p.SeqLen;
                var angle = (starts[b] + t) * angles[i];
                var c = XMath.Cos(angle);
                var s = XMath.Sin(angle);
                var at = row * p.HeadDim + i * p.PairStride;
                var x0 = x[at];
                var x1 = x[at + p.PairOffset];
                x[at] = p.Scale * (x0 * c - x1 * s);
                x[at + p.PairOffset] = p.Scale * (x1 * c + x0 * s);
            }
        }
    }
}
