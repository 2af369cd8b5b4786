using ILGPU.Runtime;
using RetNet.Ilgpu.IO;
using RetNet.Ilgpu.Kernels.CrossEntropy;
using RetNet.Ilgpu.Kernels.Elementwise;
using RetNet.Ilgpu.Kernels.Embedding;
using RetNet.Ilgpu.Kernels.Normalization;
using RetNet.Ilgpu.Kernels.Rotation;
using RetNet.Ilgpu.Kernels.ScaledEmbedding;
using RetNet.Ilgpu.Retention;
using RetNet.Ilgpu.Tensors;

namespace RetNet.Ilgpu.Model;

/// <summary>
/// The gradient of every parameter of a model, as device tensors named and shaped like the checkpoint's parameters
/// (a tied output projection has none of its own: its gradient is part of embed_tokens.weight's). The one rule of
/// every backward pass: it adds into these tensors (+=), so <see cref="Zero"/> them once per optimiser step and
/// micro-batches accumulate. <see cref="ModelGradients"/> (RetNet) and
/// <see cref="Transformer.TransformerGradients"/> are the two kinds.
/// </summary>
public abstract class ParameterGradients : IDisposable
{
    private readonly Dictionary<string, Tensor> tensors;
    private bool disposed;

    /// <summary>Zero gradients of the given names and shapes on <paramref name="device"/>.</summary>
    private protected ParameterGradients(Devices.RetNetDevice device, IEnumerable<(string Name, int[] Shape)> parameters)
    {
        tensors = new Dictionary<string, Tensor>();
        try
        {
            foreach (var (name, shape) in parameters)
                tensors.Add(name, Tensor.Zeros(device, shape));
        }
        catch
        {
            foreach (var t in tensors.Values)
                t.Dispose();
            throw;
        }
    }

    /// <summary>The gradients by parameter name.</summary>
    public IReadOnlyDictionary<string, Tensor> Tensors
    {
        get
        {
            ObjectDisposedException.ThrowIf(disposed, this);
            return tensors;
        }
    }

    /// <summary>Sets every gradient to zero.</summary>
    public void Zero()
    {
        ObjectDisposedException.ThrowIf(disposed, this);
        foreach (var t in tensors.Values)
            t.View.MemSetToZero(t.Device.Stream);
    }

    /// <summary>The gradients copied to the host, by parameter name.</summary>
    public IReadOnlyDictionary<string, HostTensor> ToHost()
    {
        ObjectDisposedException.ThrowIf(disposed, this);
        return tensors.ToDictionary(kv => kv.Key, kv => HostTensor.From(kv.Value));
    }

    /// <summary>Frees the gradients.</summary>
    public void Dispose()
    {
        if (disposed)
            return;
        disposed = true;
        foreach (var t in tensors.Values)
            t.Dispose();
        GC.SuppressFinalize(this);
    }
}

/// <summary>The gradients of a <see cref="RetNetModel"/>'s parameters, by checkpoint name.</summary>
public sealed class ModelGradients : ParameterGradients
{
    private ModelGradients(RetNetModel model)
        : base(model.Device, WeightLayout.Expected(model.Config)) => Model = model;

    /// <summary>The model these gradients belong to.</summary>
    public RetNetModel Model { get; }

    /// <summary>Zero gradients for every parameter of <paramref name="model"/>.</summary>
    public static ModelGradients Zeros(RetNetModel model)
    {
        ArgumentNullException.ThrowIfNull(model);
        return new ModelGradients(model);
    }
}

/// <summary>
/// What a training pass over B windows of T tokens keeps for its backward pass, allocated once per (B, T) and reused:
/// every block's activations in buffers of their own (nothing is overwritten in place), the logits (their gradient
/// overwrites them), and the scratch of the backward pass. With activation checkpointing only each block's input is
/// kept: the blocks share one set of activation buffers, which the backward pass refills by running each block's
/// forward again from its saved input.
/// </summary>
internal sealed class TrainingWorkspace : IDisposable
{
    private readonly List<Tensor> owned = [];

    public TrainingWorkspace(RetNetModel model, int batch, int seqLen, bool checkpointed)
    {
        var c = model.Config;
        var device = model.Device;
        Batch = batch;
        SeqLen = seqLen;
        Checkpointed = checkpointed;
        var n = batch * seqLen;
        int d = c.EmbedDim, dv = c.ValueEmbedDim, ffn = c.FfnEmbedDim;
        try
        {
            Ids = IndexTensor.Zeros(device, n + batch);
            InputIds = Ids.Slice(0, n);
            Targets = IndexTensor.FromHost(device, new int[n], n);
            Embedded = Make(n, d);
            (EmbeddingNormed, EmbeddingRstd) = c.LayerNormEmbedding ? (Make(n, d), Make(n)) : (null, null);
            DecaySums = Make(n * c.RetentionHeads);
            var branch = Make(n, d);
            // What the backward pass can recompute with one cheap elementwise or norm pass (docs/MATH.md §11): the
            // head norm's output Y, silu(G), Z = silu(G) ⊙ Y, act(fc1 x) and the FFN product. Every block writes
            // these into one shared set, and its backward recomputes them before reading them.
            Tensor y = Make(n, dv), siluG = Make(n, dv), z = Make(n, dv);
            Tensor activated = Make(n, ffn), product = Make(n, ffn);
            var x = EmbeddingNormed ?? Embedded;
            BlockTensors NewBlock(Tensor input)
            {
                var retentionSublayer = new SublayerTensors(input, Make(n, d), Make(n, d), Make(n));
                var retention = new RetentionTensors(Make(n, d), Make(n, d), Make(n, dv), Make(n, dv), Make(n, dv),
                    y, siluG, z, Make(n * c.RetentionHeads), branch);
                var ffnSublayer = new SublayerTensors(retentionSublayer.Output(c.NormalizeBefore), Make(n, d),
                    Make(n, d), Make(n));
                var feedForward = new FeedForwardTensors(Make(n, ffn), Make(n, ffn), activated, product, branch);
                return new BlockTensors(retentionSublayer, retention, ffnSublayer, feedForward);
            }
            var blocks = new BlockTensors[c.Layers];
            if (checkpointed)
            {
                var shared = NewBlock(x);
                for (var i = 0; i < blocks.Length; i++)
                    blocks[i] = shared with { RetentionSublayer = shared.RetentionSublayer with { In = i == 0 ? x : Make(n, d) } };
                Features = Make(n, d);
            }
            else
            {
                for (var i = 0; i < blocks.Length; i++)
                {
                    blocks[i] = NewBlock(x);
                    x = blocks[i].FeedForwardSublayer.Output(c.NormalizeBefore);
                }
                Features = x;
            }
            Blocks = blocks;
            (FinalNormed, FinalRstd) = c.NormalizeBefore ? (Make(n, d), Make(n)) : (null, null);
            Logits = Make(n, c.VocabSize);
            Loss = Make(1);
            Scratch = new BackwardScratch([Make(n, d), Make(n, d), Make(n, d), Make(n, d)],
                [Make(n, dv), Make(n, dv), Make(n, dv), Make(n, dv)], [Make(n, ffn), Make(n, ffn)], Make(d));
        }
        catch
        {
            Dispose();
            throw;
        }

        Tensor Make(params int[] shape)
        {
            var t = Tensor.Uninitialized(device, shape);
            owned.Add(t);
            return t;
        }
    }

    public int Batch { get; }
    public int SeqLen { get; }

    /// <summary>Whether the blocks share their activations and keep only their inputs.</summary>
    public bool Checkpointed { get; }

    /// <summary>Input ids [N] then one start position (0) per sequence.</summary>
    public IndexTensor Ids { get; }
    public IndexTensor InputIds { get; }
    public IndexTensor Targets { get; }
    public Tensor Embedded { get; }
    public Tensor? EmbeddingNormed { get; }
    public Tensor? EmbeddingRstd { get; }
    public Tensor DecaySums { get; }
    public IReadOnlyList<BlockTensors> Blocks { get; }

    /// <summary>The last block's output [N, d].</summary>
    public Tensor Features { get; }
    public Tensor? FinalNormed { get; }
    public Tensor? FinalRstd { get; }
    public Tensor Logits { get; }
    public Tensor Loss { get; }
    public BackwardScratch Scratch { get; }

    public void Dispose()
    {
        foreach (var t in owned)
            t.Dispose();
        owned.Clear();
        Ids?.Dispose();
        Targets?.Dispose();
    }
}

public sealed partial class RetNetModel
{
    private TrainingWorkspace? trainingWorkspace;

    /// <summary>The parameters on the device, by checkpoint name (what an optimiser updates in place).</summary>
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
    /// predicted from tokens 0 … T − 1, every sequence starting at position 0), and its gradient times
    /// <paramref name="gradientScale"/> ADDED to <paramref name="gradients"/> (zero them first; accumulate
    /// micro-batches by calling again). Retention runs parallel or chunkwise (<paramref name="mode"/>); every
    /// activation the backward pass reads is kept from the forward pass (docs/MATH.md §11).
    /// </summary>
    /// <param name="windows">Token windows [B, T + 1].</param>
    /// <param name="gradients">The gradients to add to.</param>
    /// <param name="mode">Parallel or chunkwise retention.</param>
    /// <param name="gradientScale">The factor of the gradient (1/A for A micro-batches).</param>
    /// <param name="checkpointActivations">Keep only each block's input and run each block's forward again during the
    /// backward pass: activation memory of one block instead of all, for about one more forward pass of time. The
    /// gradients are bit-identical either way.</param>
    /// <returns>The mean loss in nats per predicted token (unscaled).</returns>
    /// <exception cref="ArgumentException">Fewer than 2 tokens per window, an id outside [0, V), a recurrent mode,
    /// gradients of another model, or a chunk size &lt; 1.</exception>
    public float ForwardBackward(int[,] windows, ModelGradients gradients, ForwardMode mode,
        float gradientScale = 1f, bool checkpointActivations = false)
    {
        ObjectDisposedException.ThrowIf(disposed, this);
        ArgumentNullException.ThrowIfNull(windows);
        ArgumentNullException.ThrowIfNull(gradients);
        if (!ReferenceEquals(gradients.Model, this))
            throw new ArgumentException("Argument 'gradients' belongs to another model.", nameof(gradients));
        CheckMode(mode);
        if (mode.Form == RetentionForm.Recurrent)
            throw new ArgumentException(
                "Argument 'mode' is recurrent; expected parallel or chunkwise (the recurrent form is for decoding and " +
                "has no backward).", nameof(mode));
        if (!float.IsFinite(gradientScale))
            throw new ArgumentOutOfRangeException(nameof(gradientScale), gradientScale, "Expected a finite scale.");
        var (inputs, targets, batch, seqLen) = TokenChecks.Windows(windows, Config.VocabSize,
            Math.Max(Config.FfnEmbedDim, Config.ValueEmbedDim), nameof(windows));
        var n = batch * seqLen;

        var w = TrainingWorkspaceFor(batch, seqLen, checkpointActivations);
        w.Ids.Slice(0, inputs.Length).CopyFromHost(inputs);
        w.Targets.CopyFromHost(targets);
        var g = gradients.Tensors;
        var eps = (float)Config.LayerNormEps;

        ScaledEmbedding.Launch(embedding, w.Ids.Slice(0, n), Config.EmbedScale, w.Embedded);
        if (embeddingNorm is not null)
            RmsNorm.Forward(w.Embedded, embeddingNorm, eps, w.EmbeddingNormed!, w.EmbeddingRstd);
        DecayNormalization.Launch(w.Ids.Slice(n, batch), constants.DecayTable, seqLen, w.DecaySums);
        for (var i = 0; i < blocks.Length; i++)
        {
            blocks[i].Forward(w.Blocks[i], w.DecaySums, batch, seqLen, w.Ids, n, mode, state: null);
            if (w.Checkpointed)
                Elementwise.Scale(w.Blocks[i].FeedForwardSublayer.Output(Config.NormalizeBefore), 1f,
                    i + 1 < blocks.Length ? w.Blocks[i + 1].RetentionSublayer.In : w.Features);
        }
        var features = w.Features;
        if (finalNorm is not null)
        {
            RmsNorm.Forward(w.Features, finalNorm, eps, w.FinalNormed!, w.FinalRstd);
            features = w.FinalNormed!;
        }
        Linear.Apply(features, outputWeight, w.Logits);
        CrossEntropy.ForwardBackward(w.Logits, w.Targets, w.Logits, w.Loss, gradientScale: gradientScale);

        var scratch = w.Scratch;
        var dX = scratch.Rows[0];
        Linear.BackwardWeight(w.Logits, features,
            g[Config.ShareInputOutputEmbed ? "embed_tokens.weight" : "output_projection.weight"]);
        if (finalNorm is not null)
        {
            Linear.BackwardInput(w.Logits, outputWeight, scratch.Rows[1], accumulate: false);
            RmsNorm.Backward(w.Features, finalNorm, scratch.Rows[1], eps, dX, scratch.NormWeight, w.FinalRstd);
            Elementwise.Add(g["layer_norm.weight"], scratch.NormWeight, g["layer_norm.weight"]);
        }
        else
        {
            Linear.BackwardInput(w.Logits, outputWeight, dX, accumulate: false);
        }
        for (var i = blocks.Length - 1; i >= 0; i--)
        {
            if (w.Checkpointed)
                blocks[i].Forward(w.Blocks[i], w.DecaySums, batch, seqLen, w.Ids, n, mode, state: null);
            blocks[i].Backward(w.Blocks[i], w.DecaySums, batch, seqLen, w.Ids, n, mode, dX, g, scratch);
        }
        if (embeddingNorm is not null)
        {
            RmsNorm.Backward(w.Embedded, embeddingNorm, dX, eps, scratch.Rows[1], scratch.NormWeight, w.EmbeddingRstd);
            Elementwise.Add(g["layernorm_embedding.weight"], scratch.NormWeight, g["layernorm_embedding.weight"]);
            dX = scratch.Rows[1];
        }
        if (Config.EmbedScale != 1f)
            Elementwise.Scale(dX, Config.EmbedScale, dX);
        Embedding.Backward(w.InputIds, dX, g["embed_tokens.weight"]);
        return w.Loss.ToHost()[0];
    }

    private TrainingWorkspace TrainingWorkspaceFor(int batch, int seqLen, bool checkpointed)
    {
        if (trainingWorkspace is { } w && w.Batch == batch && w.SeqLen == seqLen && w.Checkpointed == checkpointed)
            return w;
        trainingWorkspace?.Dispose();
        trainingWorkspace = null;
        trainingWorkspace = new TrainingWorkspace(this, batch, seqLen, checkpointed);
        return trainingWorkspace;
    }
}
