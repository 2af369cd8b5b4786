using ILGPU;
using ILGPU.Runtime;
using RetNet.Ilgpu.Kernels.Elementwise;
using RetNet.Ilgpu.Kernels.Gemm;
using RetNet.Ilgpu.Kernels.Normalization;
using RetNet.Ilgpu.Kernels.Rotation;
using RetNet.Ilgpu.Retention;
using RetNet.Ilgpu.Tensors;

namespace RetNet.Ilgpu.Model;

/// <summary>A linear layer without bias: y [N, out] = x [N, in] · Wᵀ with W [out, in] (torchscale's layout).</summary>
internal static class Linear
{
    public static void Apply(Tensor x, Tensor weight, Tensor y) => Gemm.Run(x, weight, y, transposeB: true);
}

/// <summary>The gated FFN: fc2(act(fc1 x) ⊙ gate x), act swish or gelu; no biases.</summary>
internal sealed class GatedFeedForward(Tensor fc1, Tensor gate, Tensor fc2, bool gelu)
{
    /// <summary>rows.Branch = FFN(<paramref name="input"/>), input [N, d].</summary>
    public void Forward(Tensor input, ModelRows rows)
    {
        Linear.Apply(input, fc1, rows.Hidden);
        Linear.Apply(input, gate, rows.Gate);
        if (gelu)
            Elementwise.Gelu(rows.Hidden, rows.Hidden);
        else
            Elementwise.Silu(rows.Hidden, rows.Hidden);
        Elementwise.Multiply(rows.Hidden, rows.Gate, rows.Hidden);
        Linear.Apply(rows.Hidden, fc2, rows.Branch);
    }
}

/// <summary>Per-model constants of retention: the rotation angles [Dk/2], γ per head and its device table [2, H].</summary>
internal sealed class RetentionConstants(RetNetConfig config, Tensor angles, DecaySchedule decay, Tensor decayTable)
    : IDisposable
{
    public RetNetConfig Config { get; } = config;
    public Tensor Angles { get; } = angles;
    public DecaySchedule Decay { get; } = decay;
    public Tensor DecayTable { get; } = decayTable;

    public void Dispose()
    {
        Angles.Dispose();
        DecayTable.Dispose();
    }
}

/// <summary>
/// torchscale's multi-scale retention (docs/MATH.md §5): q, k, v, g projections; k·Dk^(−1/2); rotation at absolute
/// positions; canonical retention in the chosen form; the decay-normalised per-head RMSNorm over Dv without weight
/// (§4); silu(g) ⊙ Y; out projection.
/// </summary>
internal sealed class MultiScaleRetention(Tensor q, Tensor k, Tensor v, Tensor g, Tensor output,
    RetentionConstants constants)
{
    /// <summary>
    /// rows.Branch = MSR(<paramref name="input"/> [N, d]) for <paramref name="batch"/> sequences of
    /// <paramref name="seqLen"/> tokens whose start positions sit in <paramref name="ids"/> at
    /// <paramref name="startsOffset"/>; rows.DecaySums must hold each row's decay sum s_t (computed once per pass).
    /// <paramref name="state"/> [B, H, Dk, Dv] is the state entering the tokens and is advanced past them; null
    /// (parallel or chunkwise only) means zeros and no state kept.
    /// </summary>
    public void Forward(Tensor input, ModelRows rows, int batch, int seqLen, DeviceInts ids, int startsOffset,
        ForwardMode mode, Tensor? state)
    {
        var c = constants.Config;
        int heads = c.RetentionHeads, dk = c.KeyHeadDim, dv = c.ValueHeadDim;
        Linear.Apply(input, q, rows.Q);
        Linear.Apply(input, k, rows.K);
        Linear.Apply(input, v, rows.V);
        Linear.Apply(input, g, rows.G);
        var q4 = rows.Q.Reshape(batch, seqLen, heads, dk);
        var k4 = rows.K.Reshape(batch, seqLen, heads, dk);
        var v4 = rows.V.Reshape(batch, seqLen, heads, dv);
        var o4 = rows.O.Reshape(batch, seqLen, heads, dv);
        ThetaShift.Apply(q4, ids, startsOffset, constants.Angles, 1f);
        ThetaShift.Apply(k4, ids, startsOffset, constants.Angles, (float)(1 / Math.Sqrt(dk)));
        switch (mode.Form)
        {
            case RetentionForm.Parallel:
                ParallelRetention.Forward(q4, k4, v4, constants.Decay, o4, state, state);
                break;
            case RetentionForm.Chunkwise:
                ChunkwiseRetention.Forward(q4, k4, v4, constants.Decay, mode.ChunkSize, o4, state, state);
                break;
            default:
                Recurrent(q4, k4, v4, o4, state ?? throw new InvalidOperationException("The recurrent form needs a state."));
                break;
        }
        // The decay normalisation: (o/√s)/√(mean((o/√s)²) + eps) = o/√(mean(o²) + eps·s), a per-row eps.
        var perHead = rows.O.Reshape(rows.Count * heads, dv);
        RmsNorm.Forward(perHead, null, (float)c.LayerNormEps, perHead, rstd: null, options: null, rows.DecaySums);
        Elementwise.Silu(rows.G, rows.G);
        Elementwise.Multiply(rows.G, rows.O, rows.O);
        Linear.Apply(rows.O, output, rows.Branch);
    }

    /// <summary>
    /// The recurrent scan launched directly with the model's decay table, so a decoding step uploads nothing
    /// (<see cref="RecurrentRetention.Forward"/> uploads the table on every call). Shapes are the model's own.
    /// </summary>
    private void Recurrent(Tensor q4, Tensor k4, Tensor v4, Tensor o4, Tensor state)
    {
        var device = q4.Device;
        var problem = new RecurrentProblem
        {
            Heads = q4.Dim(2),
            SeqLen = q4.Dim(1),
            KeyDim = q4.Dim(3),
            ValueDim = v4.Dim(3),
        };
        var kernel = device.Kernel(RetentionKernels.RecurrentScan, accelerator =>
            accelerator.LoadAutoGroupedKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>,
                ArrayView<float>, ArrayView<float>, ArrayView<float>, RecurrentProblem>(RetentionKernels.RecurrentScan));
        kernel(device.Stream, q4.Dim(0) * problem.Heads * problem.ValueDim, q4.View, k4.View, v4.View,
            constants.DecayTable.View, state.View, o4.View, problem);
    }
}

/// <summary>
/// A block (docs/MATH.md §6). Pre-norm: x = α·x + MSR(RMSNorm(x)); x = α·x + FFN(RMSNorm(x)). Post-norm:
/// x = RMSNorm(α·x + MSR(x)); x = RMSNorm(α·x + FFN(x)). α is deepnorm's residual scale (1 without it).
/// </summary>
internal sealed class RetNetBlock(Tensor retentionNorm, MultiScaleRetention retention, Tensor finalNorm,
    GatedFeedForward ffn, RetNetConfig config)
{
    private readonly float eps = (float)config.LayerNormEps;
    private readonly float alpha = config.ResidualScale;

    public void Forward(ModelRows rows, int batch, int seqLen, DeviceInts ids, int startsOffset, ForwardMode mode,
        Tensor? state)
    {
        if (config.NormalizeBefore)
        {
            RmsNorm.Forward(rows.X, retentionNorm, eps, rows.Normed);
            retention.Forward(rows.Normed, rows, batch, seqLen, ids, startsOffset, mode, state);
            Elementwise.ScaleAdd(rows.X, alpha, rows.Branch, rows.X);
            RmsNorm.Forward(rows.X, finalNorm, eps, rows.Normed);
            ffn.Forward(rows.Normed, rows);
            Elementwise.ScaleAdd(rows.X, alpha, rows.Branch, rows.X);
        }
        else
        {
            retention.Forward(rows.X, rows, batch, seqLen, ids, startsOffset, mode, state);
            Elementwise.ScaleAdd(rows.X, alpha, rows.Branch, rows.X);
            RmsNorm.Forward(rows.X, retentionNorm, eps, rows.X);
            ffn.Forward(rows.X, rows);
            Elementwise.ScaleAdd(rows.X, alpha, rows.Branch, rows.X);
            RmsNorm.Forward(rows.X, finalNorm, eps, rows.X);
        }
    }
}
