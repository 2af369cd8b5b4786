using ILGPU;
using ILGPU.Algorithms;

namespace RetNet.Ilgpu.Kernels.Optimizer;

/// <summary>
/// The scalars of one AdamW update of one tensor. Every derived value (1 − β, 1 − lr·wd, lr / bc1, √bc2) is formed in
/// double on the host and rounded once, so the device does the same fp32 operations PyTorch's AdamW does.
/// </summary>
internal struct AdamWStep
{
    /// <summary>Multiplies each gradient before use (loss scaling, clipping).</summary>
    public float GradientScale;

    /// <summary>1 − β1, the weight of the new gradient in the first moment.</summary>
    public float Beta1Complement;

    /// <summary>β2.</summary>
    public float Beta2;

    /// <summary>1 − β2.</summary>
    public float Beta2Complement;

    /// <summary>1 − lr·wd for decayed tensors, exactly 1 otherwise.</summary>
    public float DecayFactor;

    /// <summary>lr / (1 − β1^t).</summary>
    public float StepSize;

    /// <summary>√(1 − β2^t).</summary>
    public float BiasCorrection2Sqrt;

    /// <summary>ε, added to the bias-corrected √v.</summary>
    public float Epsilon;
}

/// <summary>Device code of the AdamW optimiser.</summary>
internal static class AdamWKernels
{
    /// <summary>
    /// One fused AdamW update over this thread's elements of the <see cref="Spread"/> (grid-strided on GPUs, where
    /// consecutive threads touch consecutive elements; one contiguous range a thread on the CPU accelerator). In PyTorch's
    /// order: p ← p·(1 − lr·wd); m ← lerp(m, g, 1 − β1); v ← β2·v + (1 − β2)·g²; p ← p − (lr / bc1)·m / (√v / √bc2 + ε), with t = the step number counted from 1.
    /// Each element is read and written by one thread only, so the result is bit-identical run to run.
    /// </summary>
    [Kernel(KernelGrouping.Implicit)]
    public static void Update(Index1D thread, ArrayView<float> parameter, ArrayView<float> gradient,
        ArrayView<float> expAvg, ArrayView<float> expAvgSq, AdamWStep s, Spread spread)
    {
        for (var runStart = spread.First(thread); runStart < spread.Count; runStart += spread.Step)
        {
            var runEnd = spread.End(runStart);
            for (var i = runStart; i < runEnd; i++)
            {
                var g = s.GradientScale * gradient[i];
                var p = parameter[i] * s.DecayFactor;
                var m = expAvg[i];
                // torch's lerp_ for weights below ½: m + w·(g − m), which equals β1·m + (1 − β1)·g.
                m += s.Beta1Complement * (g - m);
                var v = s.Beta2 * expAvgSq[i] + s.Beta2Complement * (g * g);
                var denominator = XMath.Sqrt(v) / s.BiasCorrection2Sqrt + s.Epsilon;
                expAvg[i] = m;
                expAvgSq[i] = v;
                // addcdiv_'s order: (value · m) / denominator.
                parameter[i] = p - s.StepSize * m / denominator;
            }
        }
    }
}
