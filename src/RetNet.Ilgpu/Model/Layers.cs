using RetNet.Ilgpu.Kernels.Elementwise;
using RetNet.Ilgpu.Kernels.Gemm;
using RetNet.Ilgpu.Kernels.Normalization;
using RetNet.Ilgpu.Kernels.Rotation;
using RetNet.Ilgpu.Retention;
using RetNet.Ilgpu.Tensors;

namespace RetNet.Ilgpu.Model;

/// <summary>
/// A linear layer without bias: y [N, out] = x [N, in] · Wᵀ with W [out, in] (torchscale's layout), and its two
/// gradients. Weight gradients accumulate (+=), as every parameter gradient of the model does.
/// </summary>
internal static class Linear
{
    public static void Apply(Tensor x, Tensor weight, Tensor y) => Gemm.Run(x, weight, y, transposeB: true);

    /// <summary>dx [N, in] = dy [N, out] · W, added to dx's contents when <paramref name="accumulate"/>.</summary>
    public static void BackwardInput(Tensor dy, Tensor weight, Tensor dx, bool accumulate) =>
        Gemm.Run(dy, weight, dx, beta: accumulate ? 1f : 0f);

    /// <summary>dW [out, in] += dyᵀ · x.</summary>
    public static void BackwardWeight(Tensor dy, Tensor x, Tensor dWeight) =>
        Gemm.Run(dy, x, dWeight, transposeA: true, beta: 1f);
}

/// <summary>
/// The FFN's activations. At inference they alias (the activation and the product overwrite <see cref="Hidden"/>);
/// training keeps Hidden and Gate per block and shares one Activated and one Product among all blocks, which the
/// backward pass recomputes from Hidden and Gate.
/// </summary>
/// <param name="Hidden">fc1 x, before the activation [N, ffn].</param>
/// <param name="Gate">gate x [N, ffn].</param>
/// <param name="Activated">act(fc1 x) [N, ffn].</param>
/// <param name="Product">act(fc1 x) ⊙ gate x [N, ffn], fc2's input.</param>
/// <param name="Branch">The FFN's output [N, d].</param>
internal sealed record FeedForwardTensors(Tensor Hidden, Tensor Gate, Tensor Activated, Tensor Product, Tensor Branch);

/// <summary>
/// Multi-scale retention's activations. At inference Y and Z overwrite O and SiLU(g) overwrites G; training keeps
/// Q, K, V, G, O and the head norm's rstd per block and shares one Y, SiluG and Z among all blocks, which the
/// backward pass recomputes (docs/MATH.md §5, §11).
/// </summary>
/// <param name="Q">Rotated queries [N, d].</param>
/// <param name="K">Rotated, scaled keys [N, d].</param>
/// <param name="V">Values [N, value dim].</param>
/// <param name="G">Gate pre-activation [N, value dim].</param>
/// <param name="O">Canonical retention output [N, value dim].</param>
/// <param name="Y">The decay-normalised head norm of O [N, value dim].</param>
/// <param name="SiluG">silu(G) [N, value dim].</param>
/// <param name="Z">silu(G) ⊙ Y [N, value dim], the out projection's input.</param>
/// <param name="HeadRstd">The head norm's reciprocal RMS per row and head [N·H], saved for backward; null at
/// inference.</param>
/// <param name="Branch">The layer's output [N, d].</param>
internal sealed record RetentionTensors(Tensor Q, Tensor K, Tensor V, Tensor G, Tensor O, Tensor Y, Tensor SiluG,
    Tensor Z, Tensor? HeadRstd, Tensor Branch);

/// <summary>
/// The tensors of one residual sublayer (docs/MATH.md §6). Pre-norm: Normed = RMSNorm(In), Residual = α·In + f(Normed),
/// the output. Post-norm: Residual = α·In + f(In), Normed = RMSNorm(Residual), the output. At inference In, Residual
/// (and, post-norm, Normed) are one tensor updated in place.
/// </summary>
internal sealed record SublayerTensors(Tensor In, Tensor Residual, Tensor Normed, Tensor? Rstd)
{
    public Tensor Output(bool preNorm) => preNorm ? Residual : Normed;

    public Tensor BranchInput(bool preNorm) => preNorm ? Normed : In;
}

/// <summary>Everything one block reads and writes.</summary>
internal sealed record BlockTensors(SublayerTensors RetentionSublayer, RetentionTensors Retention,
    SublayerTensors FeedForwardSublayer, FeedForwardTensors FeedForward);

/// <summary>The scratch buffers of a backward pass, shared by every layer (each at least [N, widest]).</summary>
/// <param name="Rows">d-wide buffers [N, d]: four of them.</param>
/// <param name="Value">value-dim-wide buffers [N, value dim]: four of them.</param>
/// <param name="Hidden">FFN-wide buffers [N, ffn]: two of them.</param>
/// <param name="NormWeight">A [d] buffer for a norm weight's gradient before it is added.</param>
internal sealed record BackwardScratch(Tensor[] Rows, Tensor[] Value, Tensor[] Hidden, Tensor NormWeight);

/// <summary>The gated FFN: fc2(act(fc1 x) ⊙ gate x), act swish or gelu; no biases.</summary>
internal sealed class GatedFeedForward(Tensor fc1, Tensor gate, Tensor fc2, bool gelu, string prefix)
{
    /// <summary>t.Branch = FFN(<paramref name="input"/>), input [N, d].</summary>
    public void Forward(Tensor input, FeedForwardTensors t)
    {
        Linear.Apply(input, fc1, t.Hidden);
        Linear.Apply(input, gate, t.Gate);
        if (gelu)
            Elementwise.Gelu(t.Hidden, t.Activated);
        else
            Elementwise.Silu(t.Hidden, t.Activated);
        Elementwise.Multiply(t.Activated, t.Gate, t.Product);
        Linear.Apply(t.Product, fc2, t.Branch);
    }

    /// <summary>
    /// From dBranch [N, d]: writes dInput [N, d] and adds the weight gradients. Reads the activations a training
    /// forward kept in <paramref name="t"/>.
    /// </summary>
    public void Backward(Tensor input, FeedForwardTensors t, Tensor dBranch, Tensor dInput,
        IReadOnlyDictionary<string, Tensor> gradients, BackwardScratch scratch)
    {
        Tensor dProduct = scratch.Hidden[0], dGate = scratch.Hidden[1];
        // Training blocks share one buffer for the activation and one for the product: recompute this block's.
        if (gelu)
            Elementwise.Gelu(t.Hidden, t.Activated);
        else
            Elementwise.Silu(t.Hidden, t.Activated);
        Elementwise.Multiply(t.Activated, t.Gate, t.Product);
        Linear.BackwardWeight(dBranch, t.Product, gradients[prefix + "fc2.weight"]);
        Linear.BackwardInput(dBranch, fc2, dProduct, accumulate: false);
        Elementwise.Multiply(dProduct, t.Activated, dGate);
        Elementwise.Multiply(dProduct, t.Gate, dProduct);
        if (gelu)
            Elementwise.GeluBackward(t.Hidden, dProduct, dProduct);
        else
            Elementwise.SiluBackward(t.Hidden, dProduct, dProduct);
        Linear.BackwardWeight(dProduct, input, gradients[prefix + "fc1.weight"]);
        Linear.BackwardWeight(dGate, input, gradients[prefix + "gate.weight"]);
        Linear.BackwardInput(dProduct, fc1, dInput, accumulate: false);
        Linear.BackwardInput(dGate, gate, dInput, accumulate: true);
    }
}

/// <summary>Per-model constants of retention: the rotation angles [Dk/2] and their negatives (the inverse rotation of
/// the backward pass), γ per head and its device table [2, H].</summary>
internal sealed class RetentionConstants(RetNetConfig config, Tensor angles, Tensor inverseAngles, DecaySchedule decay,
    Tensor decayTable) : IDisposable
{
    public RetNetConfig Config { get; } = config;
    public Tensor Angles { get; } = angles;
    public Tensor InverseAngles { get; } = inverseAngles;
    public DecaySchedule Decay { get; } = decay;
    public Tensor DecayTable { get; } = decayTable;

    private Tensor? chunkStates;

    /// <summary>
    /// The buffer every chunkwise call of the model keeps its chunk states in, at least <paramref name="length"/>
    /// floats: allocated on first use and grown when a longer pass needs more, so that steady-state passes allocate
    /// nothing. Layers run one after another, so one buffer serves them all.
    /// </summary>
    public Tensor ChunkStates(long length)
    {
        if (chunkStates is null || chunkStates.Length < length)
        {
            chunkStates?.Dispose();
            chunkStates = null;
            chunkStates = Tensor.Uninitialized(DecayTable.Device, checked((int)length));
        }
        return chunkStates;
    }

    public void Dispose()
    {
        Angles.Dispose();
        InverseAngles.Dispose();
        DecayTable.Dispose();
        chunkStates?.Dispose();
    }
}

/// <summary>
/// torchscale's multi-scale retention (docs/MATH.md §5): q, k, v, g projections; k·Dk^(−1/2); rotation at absolute
/// positions; canonical retention in the chosen form; the decay-normalised per-head RMSNorm over Dv without weight
/// (§4); silu(g) ⊙ Y; out projection.
/// </summary>
internal sealed class MultiScaleRetention(Tensor q, Tensor k, Tensor v, Tensor g, Tensor output,
    RetentionConstants constants, string prefix)
{
    /// <summary>
    /// t.Branch = MSR(<paramref name="input"/> [N, d]) for <paramref name="batch"/> sequences of
    /// <paramref name="seqLen"/> tokens whose start positions sit in <paramref name="ids"/> at
    /// <paramref name="startsOffset"/>; <paramref name="decaySums"/> [N·H] holds each row's decay sum s_t (computed
    /// once per pass). <paramref name="state"/> [B, H, Dk, Dv] is the state entering the tokens and is advanced past
    /// them; null (parallel or chunkwise only) means zeros and no state kept.
    /// </summary>
    public void Forward(Tensor input, RetentionTensors t, Tensor decaySums, int batch, int seqLen, IndexTensor ids,
        int startsOffset, ForwardMode mode, Tensor? state)
    {
        var c = constants.Config;
        int heads = c.RetentionHeads, dk = c.KeyHeadDim, dv = c.ValueHeadDim;
        Linear.Apply(input, q, t.Q);
        Linear.Apply(input, k, t.K);
        Linear.Apply(input, v, t.V);
        Linear.Apply(input, g, t.G);
        var q4 = t.Q.Reshape(batch, seqLen, heads, dk);
        var k4 = t.K.Reshape(batch, seqLen, heads, dk);
        var v4 = t.V.Reshape(batch, seqLen, heads, dv);
        var o4 = t.O.Reshape(batch, seqLen, heads, dv);
        ThetaShift.Apply(q4, ids.Slice(startsOffset, batch), constants.Angles, 1f);
        ThetaShift.Apply(k4, ids.Slice(startsOffset, batch), constants.Angles, (float)(1 / Math.Sqrt(dk)));
        switch (mode.Form)
        {
            case RetentionForm.Parallel:
                ParallelRetention.Forward(q4, k4, v4, constants.Decay, o4, state, state, launch: null,
                    constants.DecayTable);
                break;
            case RetentionForm.Chunkwise:
                ChunkwiseRetention.Forward(q4, k4, v4, constants.Decay, mode.ChunkSize, o4, state, state, launch: null,
                    constants.DecayTable, ChunkStates(batch, seqLen, mode.ChunkSize));
                break;
            default:
                Recurrent(q4, k4, v4, o4, state ?? throw new InvalidOperationException("The recurrent form needs a state."));
                break;
        }
        // The decay normalisation: (o/√s)/√(mean((o/√s)²) + eps) = o/√(mean(o²) + eps·s), a per-row eps.
        var rows = t.O.Dim(0) * heads;
        RmsNorm.Forward(t.O.Reshape(rows, dv), null, (float)c.LayerNormEps, t.Y.Reshape(rows, dv), t.HeadRstd,
            options: null, decaySums);
        Elementwise.Silu(t.G, t.SiluG);
        Elementwise.Multiply(t.SiluG, t.Y, t.Z);
        Linear.Apply(t.Z, output, t.Branch);
    }

    /// <summary>
    /// From dBranch [N, d]: writes dInput [N, d] and adds the gradients of the five projections. Retention's backward
    /// runs in the form of the forward pass (parallel or chunkwise), the rotation is undone by rotating back, and the
    /// head norm's backward uses the saved per-row rstd.
    /// </summary>
    public void Backward(Tensor input, RetentionTensors t, Tensor decaySums, int batch, int seqLen, IndexTensor ids,
        int startsOffset, ForwardMode mode, Tensor dBranch, Tensor dInput, IReadOnlyDictionary<string, Tensor> gradients,
        BackwardScratch scratch)
    {
        var c = constants.Config;
        int heads = c.RetentionHeads, dk = c.KeyHeadDim, dv = c.ValueHeadDim;
        Tensor dZ = scratch.Value[0], dY = scratch.Value[1], dO = scratch.Value[2], dV = scratch.Value[3];
        Tensor dQ = scratch.Rows[2], dK = scratch.Rows[3];
        // Training blocks share one buffer each for Y, silu(G) and Z: recompute this block's (the same launches as
        // the forward pass, so the same bits).
        var normRows = t.O.Dim(0) * heads;
        RmsNorm.Forward(t.O.Reshape(normRows, dv), null, (float)c.LayerNormEps, t.Y.Reshape(normRows, dv), t.HeadRstd,
            options: null, decaySums);
        Elementwise.Silu(t.G, t.SiluG);
        Elementwise.Multiply(t.SiluG, t.Y, t.Z);
        Linear.BackwardWeight(dBranch, t.Z, gradients[prefix + "out_proj.weight"]);
        Linear.BackwardInput(dBranch, output, dZ, accumulate: false);
        Elementwise.Multiply(dZ, t.SiluG, dY);
        Elementwise.Multiply(dZ, t.Y, dZ);
        Elementwise.SiluBackward(t.G, dZ, dZ);
        var dG = dZ;
        var rows = t.O.Dim(0) * heads;
        RmsNorm.Backward(t.O.Reshape(rows, dv), null, dY.Reshape(rows, dv), (float)c.LayerNormEps,
            dO.Reshape(rows, dv), dWeight: null, t.HeadRstd, options: null, decaySums);
        var q4 = t.Q.Reshape(batch, seqLen, heads, dk);
        var k4 = t.K.Reshape(batch, seqLen, heads, dk);
        var v4 = t.V.Reshape(batch, seqLen, heads, dv);
        var dq4 = dQ.Reshape(batch, seqLen, heads, dk);
        var dk4 = dK.Reshape(batch, seqLen, heads, dk);
        var dv4 = dV.Reshape(batch, seqLen, heads, dv);
        var do4 = dO.Reshape(batch, seqLen, heads, dv);
        if (mode.Form == RetentionForm.Parallel)
            ParallelRetention.Backward(q4, k4, v4, constants.Decay, null, do4, null, dq4, dk4, dv4, null, launch: null,
                constants.DecayTable);
        else
            ChunkwiseRetention.Backward(q4, k4, v4, constants.Decay, mode.ChunkSize, null, do4, null, dq4, dk4, dv4,
                null, launch: null, constants.DecayTable, ChunkStates(batch, seqLen, mode.ChunkSize));
        // The rotation is orthogonal: its transpose, the rotation by −pθ, carries gradients back to q and k.
        ThetaShift.Apply(dq4, ids.Slice(startsOffset, batch), constants.InverseAngles, 1f);
        ThetaShift.Apply(dk4, ids.Slice(startsOffset, batch), constants.InverseAngles, (float)(1 / Math.Sqrt(dk)));
        Linear.BackwardWeight(dQ, input, gradients[prefix + "q_proj.weight"]);
        Linear.BackwardWeight(dK, input, gradients[prefix + "k_proj.weight"]);
        Linear.BackwardWeight(dV, input, gradients[prefix + "v_proj.weight"]);
        Linear.BackwardWeight(dG, input, gradients[prefix + "g_proj.weight"]);
        Linear.BackwardInput(dQ, q, dInput, accumulate: false);
        Linear.BackwardInput(dK, k, dInput, accumulate: true);
        Linear.BackwardInput(dV, v, dInput, accumulate: true);
        Linear.BackwardInput(dG, g, dInput, accumulate: true);
    }

    /// <summary>The model's chunk-state buffer, large enough for B·H·⌈T/C⌉ states of [Dk, Dv].</summary>
    private Tensor ChunkStates(int batch, int seqLen, int chunkSize)
    {
        var c = constants.Config;
        var size = Math.Min(chunkSize, seqLen);
        var chunks = (seqLen + size - 1) / size;
        return constants.ChunkStates((long)batch * c.RetentionHeads * chunks * c.KeyHeadDim * c.ValueHeadDim);
    }

    /// <summary>
    /// The recurrent scan launched directly with the model's decay table, so a decoding step uploads nothing
    /// (<see cref="RecurrentRetention.Forward(Tensor, Tensor, Tensor, DecaySchedule, Tensor, Tensor)"/> uploads the
    /// table on every call) and checks nothing: shapes are the model's own.
    /// </summary>
    private void Recurrent(Tensor q4, Tensor k4, Tensor v4, Tensor o4, Tensor state) =>
        RetentionLaunch.For(q4.Device).Recurrent(
            new RecurrentOperands(q4, k4, v4, constants.DecayTable, state, o4));
}

/// <summary>
/// A block (docs/MATH.md §6). Pre-norm: x = α·x + MSR(RMSNorm(x)); x = α·x + FFN(RMSNorm(x)). Post-norm:
/// x = RMSNorm(α·x + MSR(x)); x = RMSNorm(α·x + FFN(x)). α is deepnorm's residual scale (1 without it).
/// </summary>
internal sealed class RetNetBlock(Tensor retentionNorm, MultiScaleRetention retention, Tensor finalNorm,
    GatedFeedForward ffn, RetNetConfig config, string prefix)
{
    private readonly float eps = (float)config.LayerNormEps;
    private readonly float alpha = config.ResidualScale;
    private readonly bool preNorm = config.NormalizeBefore;

    /// <summary>Runs the block over <paramref name="t"/> (its retention sublayer's In is the block input, its FFN
    /// sublayer's output the block output).</summary>
    public void Forward(BlockTensors t, Tensor decaySums, int batch, int seqLen, IndexTensor ids, int startsOffset,
        ForwardMode mode, Tensor? state)
    {
        Sublayer(t.RetentionSublayer, retentionNorm,
            input => retention.Forward(input, t.Retention, decaySums, batch, seqLen, ids, startsOffset, mode, state),
            t.Retention.Branch);
        Sublayer(t.FeedForwardSublayer, finalNorm, input => ffn.Forward(input, t.FeedForward), t.FeedForward.Branch);
    }

    /// <summary>
    /// Backward through the block: <paramref name="gradient"/> holds the gradient of the block's output on entry and
    /// that of its input on return; every parameter gradient of the block is added. <paramref name="gradient"/> is
    /// scratch.Rows[0] or [1]; the other d-wide scratch buffers are used inside.
    /// </summary>
    public void Backward(BlockTensors t, Tensor decaySums, int batch, int seqLen, IndexTensor ids, int startsOffset,
        ForwardMode mode, Tensor gradient, IReadOnlyDictionary<string, Tensor> gradients, BackwardScratch scratch)
    {
        var other = ReferenceEquals(gradient, scratch.Rows[0]) ? scratch.Rows[1] : scratch.Rows[0];
        SublayerBackward(t.FeedForwardSublayer, finalNorm, prefix + "final_layer_norm.weight",
            (input, dBranch, dIn) => ffn.Backward(input, t.FeedForward, dBranch, dIn, gradients, scratch),
            gradient, other, gradients, scratch);
        SublayerBackward(t.RetentionSublayer, retentionNorm, prefix + "retention_layer_norm.weight",
            (input, dBranch, dIn) => retention.Backward(input, t.Retention, decaySums, batch, seqLen, ids, startsOffset,
                mode, dBranch, dIn, gradients, scratch),
            other, gradient, gradients, scratch);
    }

    private void Sublayer(SublayerTensors s, Tensor normWeight, Action<Tensor> branch, Tensor branchOutput)
    {
        if (preNorm)
        {
            RmsNorm.Forward(s.In, normWeight, eps, s.Normed, s.Rstd);
            branch(s.Normed);
            Elementwise.ScaleAdd(s.In, alpha, branchOutput, s.Residual);
        }
        else
        {
            branch(s.In);
            Elementwise.ScaleAdd(s.In, alpha, branchOutput, s.Residual);
            RmsNorm.Forward(s.Residual, normWeight, eps, s.Normed, s.Rstd);
        }
    }

    /// <summary>
    /// dIn from dOut for one sublayer, both d-wide scratch buffers (dOut's contents are consumed). Pre-norm:
    /// dIn = α·dOut + RMSNorm′(f′(dOut)). Post-norm: with dR = RMSNorm′(dOut), dIn = α·dR + f′(dR).
    /// </summary>
    private void SublayerBackward(SublayerTensors s, Tensor normWeight, string normName,
        Action<Tensor, Tensor, Tensor> branchBackward, Tensor dOut, Tensor dIn,
        IReadOnlyDictionary<string, Tensor> gradients, BackwardScratch scratch)
    {
        var normGradient = gradients[normName];
        if (preNorm)
        {
            branchBackward(s.Normed, dOut, dIn);
            var dNormIn = scratch.Rows[2];
            RmsNorm.Backward(s.In, normWeight, dIn, eps, dNormIn, scratch.NormWeight, s.Rstd);
            Elementwise.Add(normGradient, scratch.NormWeight, normGradient);
            Elementwise.ScaleAdd(dOut, alpha, dNormIn, dIn);
        }
        else
        {
            RmsNorm.Backward(s.Residual, normWeight, dOut, eps, dIn, scratch.NormWeight, s.Rstd);
            Elementwise.Add(normGradient, scratch.NormWeight, normGradient);
            branchBackward(s.In, dIn, dOut);
            Elementwise.ScaleAdd(dIn, alpha, dOut, dIn);
        }
    }
}
