using RetNet.Ilgpu.Attention;
using RetNet.Ilgpu.Kernels.Elementwise;
using RetNet.Ilgpu.Kernels.Normalization;
using RetNet.Ilgpu.Kernels.Rotation;
using RetNet.Ilgpu.Model;
using RetNet.Ilgpu.Tensors;

namespace RetNet.Ilgpu.Transformer;

/// <summary>
/// The activations of one pass over up to a capacity of token rows, allocated once: X the residual stream,
/// Normed, Q, K, V, O [N, d], Branch [N, d], the FFN's Hidden and Gate [N, ffn], Logits [logit rows, V], and Ids
/// (token ids, then one start position per sequence). Views of the first rows share the storage.
/// </summary>
internal sealed class TransformerRows : IDisposable
{
    private readonly List<Tensor> owned = [];
    private readonly IndexTensor? ownedIds;

    public TransformerRows(TransformerModel model, int capacity, int sequences = 1, int logitRows = 0)
    {
        var c = model.Config;
        var device = model.Device;
        Tensor Make(params int[] shape)
        {
            var t = Tensor.Uninitialized(device, shape);
            owned.Add(t);
            return t;
        }
        try
        {
            X = Make(capacity, c.EmbedDim);
            Normed = Make(capacity, c.EmbedDim);
            Q = Make(capacity, c.EmbedDim);
            K = Make(capacity, c.EmbedDim);
            V = Make(capacity, c.EmbedDim);
            O = Make(capacity, c.EmbedDim);
            Branch = Make(capacity, c.EmbedDim);
            Hidden = Make(capacity, c.FfnEmbedDim);
            Gate = Make(capacity, c.FfnEmbedDim);
            Logits = Make(Math.Max(Math.Max(logitRows, sequences), 1), c.VocabSize);
            Ids = ownedIds = IndexTensor.Zeros(device, capacity + sequences);
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    private TransformerRows(TransformerRows whole, int rows)
    {
        X = whole.X.Slice(0, rows);
        Normed = whole.Normed.Slice(0, rows);
        Q = whole.Q.Slice(0, rows);
        K = whole.K.Slice(0, rows);
        V = whole.V.Slice(0, rows);
        O = whole.O.Slice(0, rows);
        Branch = whole.Branch.Slice(0, rows);
        Hidden = whole.Hidden.Slice(0, rows);
        Gate = whole.Gate.Slice(0, rows);
        Logits = whole.Logits;
        Ids = whole.Ids;
    }

    public Tensor X { get; } = null!;
    public Tensor Normed { get; } = null!;
    public Tensor Q { get; } = null!;
    public Tensor K { get; } = null!;
    public Tensor V { get; } = null!;
    public Tensor O { get; } = null!;
    public Tensor Branch { get; } = null!;
    public Tensor Hidden { get; } = null!;
    public Tensor Gate { get; } = null!;
    public Tensor Logits { get; } = null!;
    public IndexTensor Ids { get; } = null!;

    /// <summary>The FFN's tensors at inference: the activation and the product overwrite Hidden.</summary>
    public FeedForwardTensors FeedForward => new(Hidden, Gate, Hidden, Hidden, Branch);

    /// <summary>Views of the first <paramref name="rows"/> rows (same Ids and Logits).</summary>
    public TransformerRows First(int rows) => new(this, rows);

    public void Dispose()
    {
        foreach (var t in owned)
            t.Dispose();
        ownedIds?.Dispose();
    }
}

/// <summary>
/// A pre-norm block: x = x + Attention(RMSNorm(x)); x = x + FFN(RMSNorm(x)). Attention: q, k, v projections, the
/// rotation of q and k at absolute positions (the same as RetNet's), causal softmax attention with scale 1/√(d/H),
/// the out projection.
/// </summary>
internal sealed class TransformerBlock(Tensor attentionNorm, Tensor q, Tensor k, Tensor v, Tensor output,
    Tensor ffnNorm, GatedFeedForward ffn, TransformerConfig config, Tensor angles, Tensor inverseAngles, string prefix)
{
    private readonly float eps = (float)config.LayerNormEps;
    private readonly float scale = (float)(1 / Math.Sqrt(config.HeadDim));

    /// <summary>
    /// Runs the block in place on rows.X for <paramref name="batch"/> sequences of <paramref name="seqLen"/> tokens
    /// whose start positions sit in rows.Ids at <paramref name="startsOffset"/>. Without a cache the sequences start at
    /// position 0 and attend among their own tokens. With a one-sequence cache (prefill) the same, and the keys and
    /// values are written to the cache. With a batch cache (a step, T = 1) each token's key and value are appended at
    /// its sequence's length and its query attends to every cached position.
    /// </summary>
    public void Forward(TransformerRows rows, int batch, int seqLen, int startsOffset, KvCache.View? cache, int layer)
    {
        int heads = config.Heads, dh = config.HeadDim;
        RmsNorm.Forward(rows.X, attentionNorm, eps, rows.Normed);
        Linear.Apply(rows.Normed, q, rows.Q);
        Linear.Apply(rows.Normed, k, rows.K);
        Linear.Apply(rows.Normed, v, rows.V);
        var q4 = rows.Q.Reshape(batch, seqLen, heads, dh);
        var k4 = rows.K.Reshape(batch, seqLen, heads, dh);
        var v4 = rows.V.Reshape(batch, seqLen, heads, dh);
        var o4 = rows.O.Reshape(batch, seqLen, heads, dh);
        ThetaShift.Apply(q4, rows.Ids.Slice(startsOffset, batch), angles, 1f);
        ThetaShift.Apply(k4, rows.Ids.Slice(startsOffset, batch), angles, 1f);
        if (cache is null)
        {
            CausalAttention.Forward(q4, k4, v4, scale, o4);
        }
        else if (cache.IsPrefill)
        {
            CausalAttention.Forward(q4, k4, v4, scale, o4);
            cache.Append(layer, k4, v4);
        }
        else
        {
            cache.Append(layer, k4, v4);
            cache.Attend(layer, q4, scale, o4);
        }
        Linear.Apply(rows.O, output, rows.Branch);
        Elementwise.Add(rows.X, rows.Branch, rows.X);
        RmsNorm.Forward(rows.X, ffnNorm, eps, rows.Normed);
        ffn.Forward(rows.Normed, rows.FeedForward);
        Elementwise.Add(rows.X, rows.Branch, rows.X);
    }

    /// <summary>
    /// The training forward pass: as <see cref="Forward"/> without a cache, keeping in <paramref name="t"/> every
    /// activation <see cref="Backward"/> reads; t.In is the block input, t.Out its output.
    /// </summary>
    public void TrainForward(TransformerBlockTensors t, int batch, int seqLen, IndexTensor ids, int startsOffset)
    {
        int heads = config.Heads, dh = config.HeadDim;
        RmsNorm.Forward(t.In, attentionNorm, eps, t.Normed, t.Rstd);
        Linear.Apply(t.Normed, q, t.Q);
        Linear.Apply(t.Normed, k, t.K);
        Linear.Apply(t.Normed, v, t.V);
        var q4 = t.Q.Reshape(batch, seqLen, heads, dh);
        var k4 = t.K.Reshape(batch, seqLen, heads, dh);
        ThetaShift.Apply(q4, ids.Slice(startsOffset, batch), angles, 1f);
        ThetaShift.Apply(k4, ids.Slice(startsOffset, batch), angles, 1f);
        CausalAttention.Forward(q4, k4, t.V.Reshape(batch, seqLen, heads, dh), scale,
            t.O.Reshape(batch, seqLen, heads, dh), t.LogSumExp);
        var branch = t.FeedForward.Branch;
        Linear.Apply(t.O, output, branch);
        Elementwise.Add(t.In, branch, t.Middle);
        RmsNorm.Forward(t.Middle, ffnNorm, eps, t.FfnNormed, t.FfnRstd);
        ffn.Forward(t.FfnNormed, t.FeedForward);
        Elementwise.Add(t.Middle, branch, t.Out);
    }

    /// <summary>
    /// Backward through the block: <paramref name="gradient"/> (scratch.Rows[0] or [1]) holds the gradient of the
    /// block's output on entry and that of its input on return; every weight gradient of the block is added.
    /// Attention's backward recomputes its probabilities from q, k and the saved log-sum-exp.
    /// </summary>
    public void Backward(TransformerBlockTensors t, int batch, int seqLen, IndexTensor ids, int startsOffset,
        Tensor gradient, IReadOnlyDictionary<string, Tensor> gradients, BackwardScratch scratch)
    {
        int heads = config.Heads, dh = config.HeadDim;
        var other = ReferenceEquals(gradient, scratch.Rows[0]) ? scratch.Rows[1] : scratch.Rows[0];
        var dNormed = scratch.Rows[2];
        var dNormIn = scratch.Rows[3];

        // FFN sublayer: Out = Middle + FFN(RMSNorm(Middle)).
        ffn.Backward(t.FfnNormed, t.FeedForward, gradient, dNormed, gradients, scratch);
        RmsNorm.Backward(t.Middle, ffnNorm, dNormed, eps, dNormIn, scratch.NormWeight, t.FfnRstd);
        AddTo(gradients[prefix + "final_layer_norm.weight"], scratch.NormWeight);
        Elementwise.Add(gradient, dNormIn, other);

        // Attention sublayer: Middle = In + out_proj(Attention(rot(q), rot(k), v)).
        Tensor dO = scratch.Value[0], dQ = scratch.Value[1], dK = scratch.Value[2], dV = scratch.Value[3];
        Linear.BackwardWeight(other, t.O, gradients[prefix + "attention.out_proj.weight"]);
        Linear.BackwardInput(other, output, dO, accumulate: false);
        var dq4 = dQ.Reshape(batch, seqLen, heads, dh);
        var dk4 = dK.Reshape(batch, seqLen, heads, dh);
        CausalAttention.Backward(t.Q.Reshape(batch, seqLen, heads, dh), t.K.Reshape(batch, seqLen, heads, dh),
            t.V.Reshape(batch, seqLen, heads, dh), scale, t.O.Reshape(batch, seqLen, heads, dh), t.LogSumExp,
            dO.Reshape(batch, seqLen, heads, dh), dq4, dk4, dV.Reshape(batch, seqLen, heads, dh));
        // The rotation is orthogonal: rotating by −pθ carries the gradients back to the projections.
        ThetaShift.Apply(dq4, ids.Slice(startsOffset, batch), inverseAngles, 1f);
        ThetaShift.Apply(dk4, ids.Slice(startsOffset, batch), inverseAngles, 1f);
        Linear.BackwardWeight(dQ, t.Normed, gradients[prefix + "attention.q_proj.weight"]);
        Linear.BackwardWeight(dK, t.Normed, gradients[prefix + "attention.k_proj.weight"]);
        Linear.BackwardWeight(dV, t.Normed, gradients[prefix + "attention.v_proj.weight"]);
        Linear.BackwardInput(dQ, q, dNormed, accumulate: false);
        Linear.BackwardInput(dK, k, dNormed, accumulate: true);
        Linear.BackwardInput(dV, v, dNormed, accumulate: true);
        RmsNorm.Backward(t.In, attentionNorm, dNormed, eps, dNormIn, scratch.NormWeight, t.Rstd);
        AddTo(gradients[prefix + "attention_layer_norm.weight"], scratch.NormWeight);
        Elementwise.Add(other, dNormIn, gradient);
    }

    private static void AddTo(Tensor gradient, Tensor value) => Elementwise.Add(gradient, value, gradient);
}
