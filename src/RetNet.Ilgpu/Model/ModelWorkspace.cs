using RetNet.Ilgpu.Tensors;

namespace RetNet.Ilgpu.Model;

/// <summary>
/// What a pass keeps of its activations: the one plan every pass of the decoder shell runs under (forward, prefill,
/// decoding step, training), so that one forward path serves them all and backward reads what the plan kept.
/// </summary>
public enum ActivationPlan
{
    /// <summary>Nothing: every block updates the residual stream in place and intermediates overwrite each other
    /// (inference: forward, prefill, decoding). No backward pass is possible.</summary>
    KeepNothing,

    /// <summary>Each block's input only (activation checkpointing): the blocks share one set of activation buffers,
    /// which the backward pass refills by running each block's forward again from its saved input. Activation memory
    /// of one block instead of all, for about one more forward pass of time; the gradients are bit-identical to
    /// <see cref="KeepEverything"/>.</summary>
    KeepBlockInputs,

    /// <summary>Every activation the backward pass reads, per block (training's default); what backward can recompute
    /// with one cheap elementwise pass (activation functions, products) is shared by the blocks and recomputed.</summary>
    KeepEverything,
}

/// <summary>
/// The buffers of passes over up to <see cref="Capacity"/> token rows of up to <see cref="Sequences"/> sequences,
/// allocated once and reused, under one <see cref="ActivationPlan"/>: a forward pass allocates one, a decoding state
/// keeps one for its steps (so a step allocates nothing on the device), a model keeps one for training while the
/// shape stays. <see cref="Ids"/> holds a pass's token ids, then one start position per sequence, then (for a step)
/// each sequence's length after it: uploaded in one copy, read by every kernel through slices.
/// </summary>
internal sealed class ModelWorkspace : IDisposable
{
    private readonly WorkspaceAllocator allocator;
    private readonly PassBuffers whole;

    /// <summary>An inference workspace (<see cref="ActivationPlan.KeepNothing"/>): <paramref name="capacity"/> rows of
    /// at most <paramref name="sequences"/> sequences, logits for <paramref name="logitRows"/> rows.</summary>
    public static ModelWorkspace ForInference(LanguageModel model, int capacity, int sequences, int logitRows) =>
        new(model, 1, capacity, sequences, logitRows, ActivationPlan.KeepNothing);

    /// <summary>A training workspace: <paramref name="batch"/> sequences of <paramref name="seqLen"/> rows, logits of
    /// every row, the targets, the loss and the backward pass's scratch.</summary>
    public static ModelWorkspace ForTraining(LanguageModel model, int batch, int seqLen, ActivationPlan plan)
    {
        if (plan == ActivationPlan.KeepNothing)
            throw new ArgumentException("Argument 'plan' is KeepNothing; a training pass keeps what its backward reads.",
                nameof(plan));
        return new(model, batch, seqLen, batch, batch * seqLen, plan);
    }

    private ModelWorkspace(LanguageModel model, int batch, int seqLen, int sequences, int logitRows,
        ActivationPlan plan)
    {
        var spec = model.Spec;
        var mixers = model.Mixers;
        Plan = plan;
        Capacity = batch * seqLen;
        Sequences = sequences;
        allocator = new WorkspaceAllocator(model.Device);
        try
        {
            var a = allocator;
            int n = Capacity, d = spec.EmbedDim;
            Ids = a.MakeIndices(n + 2 * sequences);
            var keep = plan != ActivationPlan.KeepNothing;
            // The residual stream: updated in place at inference; at training every block reads its own input.
            var x = keep ? a.Make(n, d) : a.Shared("x", n, d);
            var normed = keep ? null : a.Shared("normed", n, d);
            var embedded = x;
            Tensor? embeddingRstd = null;
            if (spec.EmbeddingNorm && keep)
            {
                (x, embeddingRstd) = (a.Make(n, d), a.Make(n));
            }
            var mixerData = mixers.AllocatePassData(a, n);
            SublayerTensors NewSublayer(Tensor input) => keep
                ? new SublayerTensors(input, a.Make(n, d), a.Make(n, d), a.Make(n))
                : new SublayerTensors(input, input, spec.PreNorm ? normed! : input, null);
            BlockTensors NewBlock(Tensor input)
            {
                var mixerSublayer = NewSublayer(input);
                var mixer = mixers.Allocate(a, batch, seqLen, keep);
                var ffnSublayer = NewSublayer(mixerSublayer.Output(spec.PreNorm));
                return new BlockTensors(mixerSublayer, mixer, ffnSublayer,
                    FeedForwardTensors.Allocate(a, n, spec.FfnDim, d, keep));
            }
            var blocks = new BlockTensors[spec.Layers];
            Tensor features;
            if (plan == ActivationPlan.KeepEverything)
            {
                for (var i = 0; i < blocks.Length; i++)
                {
                    blocks[i] = NewBlock(x);
                    x = blocks[i].Output(spec.PreNorm);
                }
                features = x;
            }
            else
            {
                // One set of block buffers for every block; with checkpointing each block also keeps its input, and
                // the last output is copied aside, since recomputing a block in the backward pass overwrites the set.
                var shared = NewBlock(x);
                for (var i = 0; i < blocks.Length; i++)
                    blocks[i] = plan == ActivationPlan.KeepNothing || i == 0
                        ? shared
                        : shared with { MixerSublayer = shared.MixerSublayer with { In = a.Make(n, d) } };
                features = plan == ActivationPlan.KeepNothing ? shared.Output(spec.PreNorm) : a.Make(n, d);
            }
            (Tensor? finalNormed, Tensor? finalRstd) = !spec.PreNorm ? (null, null)
                : keep ? (a.Make(n, d), a.Make(n)) : (normed, null);
            var logits = logitRows > 0 ? a.Make(logitRows, spec.VocabSize) : null;
            whole = new PassBuffers(Ids.Slice(0, n), embedded, keep && spec.EmbeddingNorm ? blocks[0].MixerSublayer.In : null,
                embeddingRstd, mixerData, blocks, features, finalNormed, finalRstd, logits);
            if (keep)
            {
                Targets = a.MakeIndices(n);
                Loss = a.Make(1);
                Scratch = BackwardScratch.Allocate(a, n, d, mixers.ScratchWidth, spec.FfnDim);
            }
            StepInput = new int[3 * sequences];
        }
        catch
        {
            allocator.Dispose();
            throw;
        }
    }

    /// <summary>What the passes keep.</summary>
    public ActivationPlan Plan { get; }

    /// <summary>The most rows a pass may have.</summary>
    public int Capacity { get; }

    /// <summary>The most sequences a pass may have.</summary>
    public int Sequences { get; }

    /// <summary>Token ids, then start positions, then (a step) lengths after the step.</summary>
    public IndexTensor Ids { get; } = null!;

    /// <summary>The targets of a training pass [n].</summary>
    public IndexTensor? Targets { get; }

    /// <summary>The mean loss of a training pass [1].</summary>
    public Tensor? Loss { get; }

    /// <summary>The backward pass's scratch.</summary>
    public BackwardScratch? Scratch { get; }

    /// <summary>The host buffer a step's ids, positions and lengths are gathered in before their one upload ([3·B]),
    /// kept so that a step allocates nothing.</summary>
    public int[] StepInput { get; }

    /// <summary>Bytes of every buffer.</summary>
    public long Bytes => allocator.Bytes;

    /// <summary>The buffers of a pass over the first <paramref name="rows"/> rows (views; every buffer at a training
    /// workspace's full size).</summary>
    public PassBuffers Rows(int rows) => rows == Capacity ? whole : whole.Rows(rows);

    /// <summary>Frees every buffer.</summary>
    public void Dispose() => allocator.Dispose();
}

/// <summary>
/// The buffers one pass reads and writes.
/// </summary>
/// <param name="Ids">The token ids [n].</param>
/// <param name="Embedded">The scaled embeddings [n, d] (at inference: the residual stream itself).</param>
/// <param name="EmbeddingNormed">The embedding norm's output [n, d] in training (the first block's input); null
/// otherwise (inference normalises in place).</param>
/// <param name="EmbeddingRstd">The embedding norm's rstd [n] in training.</param>
/// <param name="MixerData">What the mixers compute once per pass.</param>
/// <param name="Blocks">Each block's tensors (one set shared by every block unless everything is kept).</param>
/// <param name="Features">The last block's output [n, d].</param>
/// <param name="FinalNormed">The final norm's output [n, d] (pre-norm models).</param>
/// <param name="FinalRstd">The final norm's rstd [n] in training.</param>
/// <param name="Logits">The logits buffer, where the pass writes them to the workspace.</param>
internal sealed record PassBuffers(IndexTensor Ids, Tensor Embedded, Tensor? EmbeddingNormed, Tensor? EmbeddingRstd,
    MixerPassData? MixerData, BlockTensors[] Blocks, Tensor Features, Tensor? FinalNormed, Tensor? FinalRstd,
    Tensor? Logits)
{
    /// <summary>Views of the first <paramref name="rows"/> rows (an inference workspace's blocks are one shared set).</summary>
    public PassBuffers Rows(int rows)
    {
        var block = Blocks[0].Rows(rows);
        return new PassBuffers(Ids.Slice(0, rows), Embedded.Slice(0, rows), EmbeddingNormed?.Slice(0, rows),
            EmbeddingRstd?.Slice(0, rows), MixerData?.Rows(rows), Enumerable.Repeat(block, Blocks.Length).ToArray(),
            Features.Slice(0, rows), FinalNormed?.Slice(0, rows), FinalRstd?.Slice(0, rows), Logits);
    }
}
