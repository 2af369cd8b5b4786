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
}

/// <summary>Device code of torchscale's rotation ("theta shift").</summary>
internal static class RotationKernels
{
    /// <summary>
    /// One thread per interleaved pair (2i, 2i+1) of a head row: with p = starts[b] + t and a = p·angles[i],
    /// (x0, x1) ← scale·(x0 cos a − x1 sin a, x1 cos a + x0 sin a), in place. Index: ((b·T + t)·H + h)·(Dk/2) + i.
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
                var at = row * p.HeadDim + 2 * i;
                var x0 = x[at];
                var x1 = x[at + 1];
                x[at] = p.Scale * (x0 * c - x1 * s);
                x[at + 1] = p.Scale * (x1 * c + x0 * s);
            }
        }
    }
}
