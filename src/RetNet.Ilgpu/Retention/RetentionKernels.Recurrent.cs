using ILGPU;
using ILGPU.Algorithms;
using RetNet.Ilgpu.Kernels;

namespace RetNet.Ilgpu.Retention;

internal static partial class RetentionKernels
{
    /// <summary>
    /// The recurrent form: one thread per state column (b, h, e) walks the tokens, S[:, e] ← γ S[:, e] + k_t v_t[e]
    /// and o_t[e] = q_t · S[:, e], updating the state in place. Columns are independent, so no thread waits for
    /// another; with T = 1 this is the decoding step, O(Dk·Dv) per head whatever the position.
    /// Index: (b·H + h)·Dv + e.
    /// </summary>
    [Kernel(KernelGrouping.Implicit)]
    public static void RecurrentScan(Index1D thread, ArrayView<float> q, ArrayView<float> k, ArrayView<float> v,
        ArrayView<float> decay, ArrayView<float> state, ArrayView<float> output, ArrayView<int> bounds,
        RecurrentProblem p, Spread spread)
    {
        // Each item (state column) is handled by exactly one thread; Launch.Spread decides which.
        for (var runStart = spread.First(thread); runStart < spread.Count; runStart += spread.Step)
        {
            var runEnd = spread.End(runStart);
            for (var column = runStart; column < runEnd; column++)
            {
                var bh = column / p.ValueDim;
                var e = column - bh * p.ValueDim;
                var b = bh / p.Heads;
                var h = bh - b * p.Heads;
                // γ from log γ: exact to fp32 rounding for every γ in (0, 1). Forming γ·S as S + (γ − 1)·S instead
                // cancels catastrophically for small γ (1e-5: ~1e-3 relative), and gains nothing near 1, where both
                // round the same way.
                var gamma = XMath.Exp(decay[h]);
                var stateColumn = bh * p.KeyDim * p.ValueDim + e;
                var firstRow = b * p.SeqLen * p.Heads + h;
                for (var t = 0; t < p.SeqLen; t++)
                {
                    var row = firstRow + t * p.Heads;
                    var value = v[row * p.ValueDim + e];
                    // A packed document after the row's first starts from zeros; the first continues the given state.
                    var restarts = t > 0 && DocumentStart(bounds, p.HasBounds, b * p.SeqLen + t) == t;
                    var sum = 0f;
                    for (var i = 0; i < p.KeyDim; i++)
                    {
                        var cell = stateColumn + i * p.ValueDim;
                        var s = restarts ? 0f : state[cell];
                        s = gamma * s + k[row * p.KeyDim + i] * value;
                        state[cell] = s;
                        sum += q[row * p.KeyDim + i] * s;
                    }
                    output[row * p.ValueDim + e] = sum;
                }
            }
        }
    }
}
