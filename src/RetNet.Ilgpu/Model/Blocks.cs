using RetNet.Ilgpu.Kernels.Elementwise;
using RetNet.Ilgpu.Kernels.Gemm;
using RetNet.Ilgpu.Kernels.Normalization;
using RetNet.Ilgpu.Tensors;

namespace RetNet.Ilgpu.Model;

/// <summary>
/// A linear layer without bias: y [N, out] = x [N, in] · Wᵀ with W [out, in] (torchscale's layout), and its two
/// gradients. Weight gradients accumulate (+=), as every parameter gradient of the model does.
/// </summary>
internal static class Linear
{
    /// <summary>y = x · Wᵀ by the fastest path for the shape.</summary>
    public static void Apply(Tensor x, Tensor weight, Tensor y) => Gemm.Run(x, weight, y, transposeB: true);

    /// <summary>y = x · Wᵀ in <paramref name="pass"/>: a decoding step's product (<see cref="Step"/>) when it is
    /// one; a prefill's against the k-major copy of W when the model has copies (the step's order, one fused
    /// multiply-add chain per element over k, unpacked up to <see cref="HostGemm.DotRows"/> rows and packed above,
    /// which take the same chain); else <see cref="Apply(Tensor, Tensor, Tensor)"/>.</summary>
    public static void Apply(Tensor x, Tensor weight, Tensor y, Pass pass)
    {
        if (pass.IsStep)
            Step(x, weight, y, pass.DecodeWeights);
        else if (pass.DecodeWeights is not { } copies)
            Apply(x, weight, y);
        else if (x.Dim(0) <= HostGemm.DotRows)
            Gemm.RunBatchInvariant(x, copies.For(weight), y);
        else
            Gemm.Run(x, copies.For(weight), y);
    }

    /// <summary>
    /// y = x · Wᵀ for a decoding step, one row per sequence: each row of y summed in one order whatever the number of
    /// rows (<see cref="Gemm.RunBatchInvariant"/>), so a sequence's result does not depend on the batch it shares;
    /// against the k-major copy of W in <paramref name="kMajor"/> when the model has copies.
    /// </summary>
    public static void Step(Tensor x, Tensor weight, Tensor y, DecodeWeights? kMajor)
    {
        if (kMajor is null)
            Gemm.RunBatchInvariant(x, weight, y, transposeB: true);
        else
            Gemm.RunBatchInvariant(x, kMajor.For(weight), y);
    }

    /// <summary>dx [N, in] = dy [N, out] · W, added to dx's contents when <paramref name="accumulate"/>.</summary>
    public static void BackwardInput(Tensor dy, Tensor weight, Tensor dx, bool accumulate) =>
        Gemm.Run(dy, weight, dx, beta: accumulate ? 1f : 0f);

    /// <summary>dW [out, in] += dyᵀ · x.</summary>
    public static void BackwardWeight(Tensor dy, Tensor x, Tensor dWeight) =>
        Gemm.Run(dy, x, dWeight, transposeA: true, beta: 1f);

    /// <summary>
    /// The backward of several linear layers that read the same input x (a mixer's q, k, v, g; the FFN's fc1 and
    /// gate): each weight's gradient (by name in <paramref name="gradients"/>) += dyᵀ · x, then dx = Σ dy · W.
    /// </summary>
    public static void BackwardShared(Tensor x, Tensor dx, IReadOnlyDictionary<string, Tensor> gradients,
        params ReadOnlySpan<(Tensor Dy, Tensor Weight, string Name)> layers)
    {
        foreach (var (dy, _, name) in layers)
            BackwardWeight(dy, x, gradients[name]);
        for (var i = 0; i < layers.Length; i++)
            BackwardInput(layers[i].Dy, layers[i].Weight, dx, accumulate: i > 0);
    }
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
internal sealed record FeedForwardTensors(Tensor Hidden, Tensor Gate, Tensor Activated, Tensor Product, Tensor Branch)
{
    /// <summary>The buffers of one block: see the type's summary for what <paramref name="keep"/> changes.</summary>
    public static FeedForwardTensors Allocate(WorkspaceAllocator a, int rows, int width, int dim, bool keep)
    {
        var branch = a.Shared("branch", rows, dim);
        if (!keep)
        {
            var hidden = a.Shared("ffn.hidden", rows, width);
            return new(hidden, a.Shared("ffn.gate", rows, width), hidden, hidden, branch);
        }
        return new(a.Make(rows, width), a.Make(rows, width), a.Shared("ffn.activated", rows, width),
            a.Shared("ffn.product", rows, width), branch);
    }

    /// <summary>Views of the first <paramref name="rows"/> rows.</summary>
    public FeedForwardTensors Rows(int rows) => new(Hidden.Slice(0, rows), Gate.Slice(0, rows),
        Activated.Slice(0, rows), Product.Slice(0, rows), Branch.Slice(0, rows));
}

/// <summary>
/// The tensors of one residual sublayer (docs/MATH.md §6). Pre-norm: Normed = RMSNorm(In), Residual = α·In + f(Normed),
/// the output. Post-norm: Residual = α·In + f(In), Normed = RMSNorm(Residual), the output. At inference In, Residual
/// (and, post-norm, Normed) are one tensor updated in place.
/// </summary>
internal sealed record SublayerTensors(Tensor In, Tensor Residual, Tensor Normed, Tensor? Rstd)
{
    public Tensor Output(bool preNorm) => preNorm ? Residual : Normed;

    /// <summary>Views of the first <paramref name="rows"/> rows.</summary>
    public SublayerTensors Rows(int rows) =>
        new(In.Slice(0, rows), Residual.Slice(0, rows), Normed.Slice(0, rows), Rstd?.Slice(0, rows));
}

/// <summary>Everything one block reads and writes: its two sublayers, the mixer's and the FFN's activations.</summary>
internal sealed record BlockTensors(SublayerTensors MixerSublayer, MixerActivations Mixer,
    SublayerTensors FeedForwardSublayer, FeedForwardTensors FeedForward)
{
    /// <summary>The block's output.</summary>
    public Tensor Output(bool preNorm) => FeedForwardSublayer.Output(preNorm);

    /// <summary>Views of the first <paramref name="rows"/> rows.</summary>
    public BlockTensors Rows(int rows) => new(MixerSublayer.Rows(rows), Mixer.Rows(rows),
        FeedForwardSublayer.Rows(rows), FeedForward.Rows(rows));
}

/// <summary>The scratch buffers of a backward pass, shared by every layer (each at least [N, widest]).</summary>
/// <param name="Rows">d-wide buffers [N, d]: four of them. [0] and [1] carry the residual stream's gradient between
/// blocks; a mixer's backward may use [2] and [3].</param>
/// <param name="Value">Mixer-wide buffers [N, <see cref="MixerKind.ScratchWidth"/>]: five of them.</param>
/// <param name="Hidden">FFN-wide buffers [N, ffn]: two of them.</param>
/// <param name="NormWeight">A [d] buffer for a norm weight's gradient before it is added.</param>
internal sealed record BackwardScratch(Tensor[] Rows, Tensor[] Value, Tensor[] Hidden, Tensor NormWeight)
{
    /// <summary>Allocates the scratch of a pass over <paramref name="rows"/> rows.</summary>
    public static BackwardScratch Allocate(WorkspaceAllocator a, int rows, int dim, int mixerWidth, int ffnWidth) =>
        new([a.Make(rows, dim), a.Make(rows, dim), a.Make(rows, dim), a.Make(rows, dim)],
            [.. Enumerable.Range(0, 5).Select(_ => a.Make(rows, mixerWidth))],
            [a.Make(rows, ffnWidth), a.Make(rows, ffnWidth)], a.Make(dim));
}

/// <summary>The gated FFN: fc2(act(fc1 x) ⊙ gate x), act swish or gelu; no biases.</summary>
internal sealed class GatedFeedForward(Tensor fc1, Tensor gate, Tensor fc2, bool gelu, string fc1Name, string gateName,
    string fc2Name)
{
    /// <summary>t.Branch = FFN(<paramref name="input"/>), input [N, d], in <paramref name="pass"/> (a decoding step's
    /// products are <see cref="Linear.Step"/>'s).</summary>
    public void Forward(Tensor input, FeedForwardTensors t, Pass pass)
    {
        Linear.Apply(input, fc1, t.Hidden, pass);
        Linear.Apply(input, gate, t.Gate, pass);
        Activate(t);
        Linear.Apply(t.Product, fc2, t.Branch, pass);
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
        Activate(t);
        Linear.BackwardWeight(dBranch, t.Product, gradients[fc2Name]);
        Linear.BackwardInput(dBranch, fc2, dProduct, accumulate: false);
        Elementwise.Multiply(dProduct, t.Activated, dGate);
        Elementwise.Multiply(dProduct, t.Gate, dProduct);
        if (gelu)
            Elementwise.GeluBackward(t.Hidden, dProduct, dProduct);
        else
            Elementwise.SiluBackward(t.Hidden, dProduct, dProduct);
        Linear.BackwardShared(input, dInput, gradients, (dProduct, fc1, fc1Name), (dGate, gate, gateName));
    }

    private void Activate(FeedForwardTensors t)
    {
        if (gelu)
            Elementwise.Gelu(t.Hidden, t.Activated);
        else
            Elementwise.Silu(t.Hidden, t.Activated);
        Elementwise.Multiply(t.Activated, t.Gate, t.Product);
    }
}

/// <summary>
/// A block of the decoder shell (docs/MATH.md §6): a token-mixer sublayer, then an FFN sublayer. Pre-norm:
/// x = α·x + f(RMSNorm(x)). Post-norm: x = RMSNorm(α·x + f(x)). α is deepnorm's residual scale (1 without it).
/// </summary>
internal sealed class DecoderBlock(Tensor mixerNorm, TokenMixer mixer, Tensor ffnNorm, GatedFeedForward ffn,
    DecoderSpec spec, string mixerNormName, string ffnNormName)
{
    private readonly float eps = (float)spec.LayerNormEps;
    private readonly float alpha = spec.ResidualScale;
    private readonly bool preNorm = spec.PreNorm;

    /// <summary>Runs the block over <paramref name="t"/> (its mixer sublayer's In is the block input, its FFN
    /// sublayer's output the block output), advancing <paramref name="state"/> when given.</summary>
    public void Forward(BlockTensors t, Pass pass, LayerStateView? state)
    {
        Sublayer(t.MixerSublayer, mixerNorm, input => mixer.Forward(input, t.Mixer, pass, state), t.Mixer.Branch);
        Sublayer(t.FeedForwardSublayer, ffnNorm, input => ffn.Forward(input, t.FeedForward, pass),
            t.FeedForward.Branch);
    }

    /// <summary>
    /// Backward through the block: <paramref name="gradient"/> holds the gradient of the block's output on entry and
    /// that of its input on return; every parameter gradient of the block is added. <paramref name="gradient"/> is
    /// scratch.Rows[0] or [1]; the other d-wide scratch buffers are used inside.
    /// </summary>
    public void Backward(BlockTensors t, Pass pass, Tensor gradient, IReadOnlyDictionary<string, Tensor> gradients,
        BackwardScratch scratch)
    {
        var other = ReferenceEquals(gradient, scratch.Rows[0]) ? scratch.Rows[1] : scratch.Rows[0];
        SublayerBackward(t.FeedForwardSublayer, ffnNorm, ffnNormName,
            (input, dBranch, dIn) => ffn.Backward(input, t.FeedForward, dBranch, dIn, gradients, scratch),
            gradient, other, gradients, scratch);
        SublayerBackward(t.MixerSublayer, mixerNorm, mixerNormName,
            (input, dBranch, dIn) => mixer.Backward(input, t.Mixer, pass, dBranch, dIn, gradients, scratch),
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
