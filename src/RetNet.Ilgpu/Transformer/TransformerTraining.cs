using RetNet.Ilgpu.Attention;
using RetNet.Ilgpu.Kernels.CrossEntropy;
using RetNet.Ilgpu.Kernels.Elementwise;
using RetNet.Ilgpu.Kernels.Embedding;
using RetNet.Ilgpu.Kernels.Normalization;
using RetNet.Ilgpu.Kernels.Rotation;
using RetNet.Ilgpu.Kernels.ScaledEmbedding;
using RetNet.Ilgpu.Model;
using RetNet.Ilgpu.Tensors;

namespace RetNet.Ilgpu.Transformer;

/// <summary>The gradients of every weight of a <see cref="TransformerModel"/>, by weight name; a training pass adds
/// to them.</summary>
public sealed class TransformerGradients : ParameterGradients
{
    private TransformerGradients(TransformerModel model)
        : base(model.Device, TransformerModel.ExpectedWeights(model.Config)) => Model = model;

    /// <summary>The model whose weights these are gradients of.</summary>
    public TransformerModel Model { get; }

    /// <summary>Zero gradients shaped like <paramref name="model"/>'s weights.</summary>
    public static TransformerGradients Zeros(TransformerModel model)
    {
        ArgumentNullException.ThrowIfNull(model);
        return new TransformerGradients(model);
    }
}

/// <summary>What one block's forward pass keeps for its backward pass (pre-norm): the input, the attention norm's
/// output and rstd, the rotated q, k, v, the attention output and its row log-sum-exp, the residual after attention,
/// the FFN norm's output and rstd, and the FFN's activations.</summary>
internal sealed record TransformerBlockTensors(Tensor In, Tensor Normed, Tensor Rstd, Tensor Q, Tensor K, Tensor V,
    Tensor O, Tensor LogSumExp, Tensor Middle, Tensor FfnNormed, Tensor FfnRstd, FeedForwardTensors FeedForward,
    Tensor Out);

/// <summary>The buffers of one training pass over B windows of T tokens, kept by the model while the shape stays.</summary>
internal sealed class TransformerTrainingWorkspace : IDisposable
{
    private readonly List<Tensor> owned = [];

    public TransformerTrainingWorkspace(TransformerModel model, int batch, int seqLen)
    {
        var c = model.Config;
        var device = model.Device;
        Batch = batch;
        SeqLen = seqLen;
        var n = batch * seqLen;
        int d = c.EmbedDim, f = c.FfnEmbedDim;
        Tensor Make(params int[] shape)
        {
            var t = Tensor.Uninitialized(device, shape);
            owned.Add(t);
            return t;
        }
        try
        {
            Ids = IndexTensor.Zeros(device, n + batch);
            InputIds = Ids.Slice(0, n);
            Targets = IndexTensor.FromHost(device, new int[n], n);
            var x = Make(n, d);
            Embedded = x;
            var branch = Make(n, d);
            // As in RetNet's training workspace: act(fc1 x) and the FFN product are shared by every block and
            // recomputed by each block's backward pass (GatedFeedForward.Backward).
            Tensor activated = Make(n, f), product = Make(n, f);
            var blocks = new TransformerBlockTensors[c.Layers];
            for (var i = 0; i < blocks.Length; i++)
            {
                var middle = Make(n, d);
                var output = Make(n, d);
                blocks[i] = new TransformerBlockTensors(x, Make(n, d), Make(n), Make(n, d), Make(n, d), Make(n, d),
                    Make(n, d), Make(batch, c.Heads, seqLen), middle, Make(n, d), Make(n),
                    new FeedForwardTensors(Make(n, f), Make(n, f), activated, product, branch), output);
                x = output;
            }
            Blocks = blocks;
            Branch = branch;
            FinalNormed = Make(n, d);
            FinalRstd = Make(n);
            Logits = Make(n, c.VocabSize);
            Loss = Make(1);
            Scratch = new BackwardScratch([Make(n, d), Make(n, d), Make(n, d), Make(n, d)],
                [Make(n, d), Make(n, d), Make(n, d), Make(n, d)], [Make(n, f), Make(n, f)], Make(d));
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    public int Batch { get; }
    public int SeqLen { get; }
    public IndexTensor Ids { get; } = null!;
    public IndexTensor InputIds { get; } = null!;
    public IndexTensor Targets { get; } = null!;
    public Tensor Embedded { get; } = null!;
    public Tensor Branch { get; } = null!;
    public IReadOnlyList<TransformerBlockTensors> Blocks { get; } = null!;
    public Tensor FinalNormed { get; } = null!;
    public Tensor FinalRstd { get; } = null!;
    public Tensor Logits { get; } = null!;
    public Tensor Loss { get; } = null!;
    public BackwardScratch Scratch { get; } = null!;

    /// <summary>Bytes of every buffer of the workspace.</summary>
    public long Bytes => owned.Sum(t => 4L * t.Length);

    public void Dispose()
    {
        foreach (var t in owned)
            t.Dispose();
        Ids?.Dispose();
        Targets?.Dispose();
    }
}

public sealed partial class TransformerModel
{
    private TransformerTrainingWorkspace? trainingWorkspace;

    /// <summary>The weights on the device, by name (what an optimiser updates in place).</summary>
    public IReadOnlyDictionary<string, Tensor> Parameters
    {
        get
        {
            ObjectDisposedException.ThrowIf(disposed, this);
            return parameters;
        }
    }

    /// <summary>
    /// One training pass: the mean next-token cross-entropy of <paramref name="windows"/> [B, T + 1] (tokens 1 … T
    /// predicted from tokens 0 … T − 1, each window from position 0), and its gradient times
    /// <paramref name="gradientScale"/> ADDED to <paramref name="gradients"/>. Every activation the backward pass
    /// reads is kept, except attention's probabilities, which its backward recomputes (no T×T buffer anywhere).
    /// </summary>
    /// <returns>The mean loss in nats per predicted token (unscaled).</returns>
    /// <exception cref="ArgumentException">Fewer than 2 tokens per window, an id outside [0, V), or gradients of
    /// another model.</exception>
    public float ForwardBackward(int[,] windows, TransformerGradients gradients, float gradientScale = 1f)
    {
        ObjectDisposedException.ThrowIf(disposed, this);
        ArgumentNullException.ThrowIfNull(windows);
        ArgumentNullException.ThrowIfNull(gradients);
        if (!ReferenceEquals(gradients.Model, this))
            throw new ArgumentException("Argument 'gradients' belongs to another model.", nameof(gradients));
        if (!float.IsFinite(gradientScale))
            throw new ArgumentOutOfRangeException(nameof(gradientScale), gradientScale, "Expected a finite scale.");
        var (inputs, targets, batch, seqLen) = TokenChecks.Windows(windows, Config.VocabSize, Config.FfnEmbedDim,
            nameof(windows));
        var n = batch * seqLen;

        var w = TrainingWorkspaceFor(batch, seqLen);
        w.Ids.Slice(0, inputs.Length).CopyFromHost(inputs);
        w.Targets.CopyFromHost(targets);
        var g = gradients.Tensors;
        var eps = (float)Config.LayerNormEps;

        ScaledEmbedding.Launch(embedding, w.Ids.Slice(0, n), Config.EmbedScale, w.Embedded);
        for (var i = 0; i < blocks.Length; i++)
            blocks[i].TrainForward(w.Blocks[i], batch, seqLen, w.Ids, n);
        var features = w.Blocks[^1].Out;
        RmsNorm.Forward(features, finalNorm, eps, w.FinalNormed, w.FinalRstd);
        Model.Linear.Apply(w.FinalNormed, outputWeight, w.Logits);
        CrossEntropy.ForwardBackward(w.Logits, w.Targets, w.Logits, w.Loss, gradientScale: gradientScale);

        var scratch = w.Scratch;
        var dX = scratch.Rows[0];
        Model.Linear.BackwardWeight(w.Logits, w.FinalNormed,
            g[Config.ShareInputOutputEmbed ? "embed_tokens.weight" : "output_projection.weight"]);
        Model.Linear.BackwardInput(w.Logits, outputWeight, scratch.Rows[1], accumulate: false);
        RmsNorm.Backward(features, finalNorm, scratch.Rows[1], eps, dX, scratch.NormWeight, w.FinalRstd);
        Elementwise.Add(g["layer_norm.weight"], scratch.NormWeight, g["layer_norm.weight"]);
        for (var i = blocks.Length - 1; i >= 0; i--)
            blocks[i].Backward(w.Blocks[i], batch, seqLen, w.Ids, n, dX, g, scratch);
        if (Config.EmbedScale != 1f)
            Elementwise.Scale(dX, Config.EmbedScale, dX);
        Embedding.Backward(w.InputIds, dX, g["embed_tokens.weight"]);
        return w.Loss.ToHost()[0];
    }

    private TransformerTrainingWorkspace TrainingWorkspaceFor(int batch, int seqLen)
    {
        if (trainingWorkspace is { } w && w.Batch == batch && w.SeqLen == seqLen)
            return w;
        trainingWorkspace?.Dispose();
        trainingWorkspace = null;
        trainingWorkspace = new TransformerTrainingWorkspace(this, batch, seqLen);
        return trainingWorkspace;
    }
}
