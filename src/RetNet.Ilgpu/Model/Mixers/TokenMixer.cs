using RetNet.Ilgpu.Devices;
using RetNet.Ilgpu.IO;
using RetNet.Ilgpu.Kernels.Rotation;
using RetNet.Ilgpu.Retention;
using RetNet.Ilgpu.Tensors;

namespace RetNet.Ilgpu.Model;

/// <summary>
/// One run of the decoder over <see cref="Batch"/> sequences of <see cref="SeqLen"/> tokens each (rows n = B·T,
/// sequence-major): where each sequence starts, in which retention form, and what the mixers computed once for the
/// whole pass (<see cref="MixerData"/>, e.g. retention's decay sums).
/// </summary>
/// <param name="Batch">B.</param>
/// <param name="SeqLen">T.</param>
/// <param name="Starts">The absolute position of each sequence's first token [B], on the device.</param>
/// <param name="Ends">For a decoding step, each sequence's length after it [B] (what a KV cache's query attends
/// to); null otherwise.</param>
/// <param name="Mode">The retention form; a mixer with one form ignores it.</param>
/// <param name="MixerData">What the mixers computed for the whole pass (<see cref="MixerKind.BeginPass"/>).</param>
/// <param name="Documents">For packed documents, the token bounds [B·T, 2] (<see cref="PackedSequences"/>) and each
/// token's position within its document [B·T]; null when every sequence is one document.</param>
/// <param name="DecodeWeights">For a decoding step or a prefill, the model's k-major weights when it has them
/// (<see cref="Linear.Apply(Tensor, Tensor, Tensor, Pass)"/>); null otherwise (a training pass, a full forward).</param>
internal sealed record Pass(int Batch, int SeqLen, IndexTensor Starts, IndexTensor? Ends, ForwardMode Mode,
    MixerPassData? MixerData, PackedDocuments? Documents = null, DecodeWeights? DecodeWeights = null)
{
    /// <summary>n = B·T.</summary>
    public int Rows => Batch * SeqLen;

    /// <summary>True for a decoding step: one token per sequence after what its state holds.</summary>
    public bool IsStep => Ends is not null;

    /// <summary>The token bounds of packed documents, or null.</summary>
    public IndexTensor? Bounds => Documents?.Bounds;

    /// <summary>
    /// Rotates <paramref name="x"/> [B, T, H, D] in place at each token's position: the sequence's start plus t, or,
    /// packed, the token's position within its document (read as B·T sequences of one token each, so the rotation
    /// kernel needs no second form).
    /// </summary>
    public void Rotate(Tensor x, Tensor angles, float scale, RotaryLayout layout)
    {
        if (Documents is null)
            ThetaShift.Apply(x, Starts, angles, scale, layout);
        else
            ThetaShift.Apply(x.Reshape(Rows, 1, x.Dim(2), x.Dim(3)), Documents.Positions, angles, scale, layout);
    }
}

/// <summary>Packed documents of one pass on the device: token bounds [B·T, 2] and positions [B·T].</summary>
internal sealed record PackedDocuments(IndexTensor Bounds, IndexTensor Positions);

/// <summary>What a mixer computes once per pass for every block (allocated with the workspace).</summary>
internal abstract class MixerPassData
{
    /// <summary>Views of the first <paramref name="rows"/> rows.</summary>
    public abstract MixerPassData Rows(int rows);
}

/// <summary>One block's mixer activations: what its forward writes and, in training, what its backward reads.</summary>
internal abstract class MixerActivations
{
    /// <summary>The mixer's output [n, d], added to the residual stream.</summary>
    public abstract Tensor Branch { get; }

    /// <summary>Views of the first <paramref name="rows"/> rows.</summary>
    public abstract MixerActivations Rows(int rows);
}

/// <summary>
/// The token mixer of one block, bound to its weights: multi-scale retention or causal attention. The only part of a
/// block that differs between the architectures (docs/ARCHITECTURE.md).
/// </summary>
internal abstract class TokenMixer
{
    /// <summary>
    /// a.Branch = mixer(<paramref name="input"/> [n, d]) for the sequences of <paramref name="pass"/>.
    /// <paramref name="state"/> is this block's part of a decoding state, read and advanced past the pass's tokens, or
    /// null (no state: every sequence starts empty and nothing is kept).
    /// </summary>
    public abstract void Forward(Tensor input, MixerActivations a, Pass pass, LayerStateView? state);

    /// <summary>
    /// From dBranch [n, d]: writes dInput [n, d] and adds the gradients of the mixer's weights. Reads what a training
    /// forward kept in <paramref name="a"/>.
    /// </summary>
    public abstract void Backward(Tensor input, MixerActivations a, Pass pass, Tensor dBranch, Tensor dInput,
        IReadOnlyDictionary<string, Tensor> gradients, BackwardScratch scratch);
}

/// <summary>What both mixers start with: per-head queries, keys and values of the input.</summary>
internal static class HeadProjections
{
    /// <summary>
    /// q, k, v = input · Wᵀ (<paramref name="weights"/>) into <paramref name="outputs"/> [n, ·], returned as [B, T, H, ·]
    /// views, with q and k rotated at the pass's absolute positions by <paramref name="angles"/> and k
    /// multiplied by <paramref name="keyScale"/>.
    /// </summary>
    public static (Tensor Q, Tensor K, Tensor V) Rotated(Tensor input, (Tensor Q, Tensor K, Tensor V) weights,
        (Tensor Q, Tensor K, Tensor V) outputs, Pass pass, int heads, Tensor angles, float keyScale,
        RotaryLayout layout)
    {
        Linear.Apply(input, weights.Q, outputs.Q, pass);
        Linear.Apply(input, weights.K, outputs.K, pass);
        Linear.Apply(input, weights.V, outputs.V, pass);
        var q4 = outputs.Q.Reshape(pass.Batch, pass.SeqLen, heads, -1);
        var k4 = outputs.K.Reshape(pass.Batch, pass.SeqLen, heads, -1);
        pass.Rotate(q4, angles, 1f, layout);
        pass.Rotate(k4, angles, keyScale, layout);
        return (q4, k4, outputs.V.Reshape(pass.Batch, pass.SeqLen, heads, -1));
    }
}

/// <summary>
/// The mixers of one model on its device: the constants every block shares, and the factories of a block's mixer,
/// its activations, the per-pass data and the decoding state.
/// </summary>
internal abstract class MixerKind : IDisposable
{
    /// <summary>The mixer bound to one block's weights; <paramref name="weight"/> resolves a suffix of
    /// <see cref="MixerSpec.LayerWeights"/> to the tensor the passes read, <paramref name="gradientPrefix"/> names its
    /// gradients.</summary>
    public abstract TokenMixer Bind(Func<string, Tensor> weight, string gradientPrefix);

    /// <summary>
    /// One block's activations for <paramref name="batch"/> sequences of <paramref name="seqLen"/> rows. With
    /// <paramref name="keep"/> (training) everything the backward pass reads gets a buffer of its own from
    /// <see cref="WorkspaceAllocator.Make"/>, and what it can recompute cheaply a buffer shared by every block
    /// (<see cref="WorkspaceAllocator.Shared"/>); without, intermediates overwrite each other in place.
    /// </summary>
    public abstract MixerActivations Allocate(WorkspaceAllocator allocator, int batch, int seqLen, bool keep);

    /// <summary>The width of the backward scratch buffers <see cref="BackwardScratch.Value"/>.</summary>
    public abstract int ScratchWidth { get; }

    /// <summary>What the mixers compute once per pass, allocated for <paramref name="rows"/> rows; null when
    /// nothing.</summary>
    public virtual MixerPassData? AllocatePassData(WorkspaceAllocator allocator, int rows) => null;

    /// <summary>Computes the pass data of <paramref name="pass"/> (before the first block runs).</summary>
    public virtual void BeginPass(Pass pass) { }

    /// <summary>Whether a pass over whole sequences in <paramref name="mode"/> needs a state (the recurrent form of
    /// retention scans a state even when nothing is kept).</summary>
    public abstract bool NeedsState(ForwardMode mode);

    /// <summary>Whether a state holding tokens can be continued by more than one token per pass (retention: chunkwise
    /// from the state; attention: token by token only, its cache has no chunk kernel).</summary>
    public abstract bool ContinuesInChunks { get; }

    /// <summary>Whether the mixer keeps packed documents apart (<see cref="Pass.Documents"/>): retention does;
    /// attention has no document mask yet.</summary>
    public virtual bool PacksDocuments => false;

    /// <summary>Whether the state can forget its last tokens (<see cref="DecodingState.Truncate"/>).</summary>
    public abstract bool CanTruncate { get; }

    /// <summary>The <c>format</c> of a saved decoding state of this mixer.</summary>
    public abstract string StateFormat { get; }

    /// <summary>Zero state for <paramref name="batch"/> sequences, with room for <paramref name="capacity"/> positions
    /// where that means something (a KV cache).</summary>
    public abstract LayerState CreateState(int batch, int capacity);

    /// <summary>The tensors a saved state of one block holds, by name within <paramref name="prefix"/>, and their
    /// shapes for <paramref name="batch"/> sequences whose longest holds <paramref name="longest"/> positions.</summary>
    public abstract IReadOnlyList<(string Name, int[] Shape)> SavedState(string prefix, int batch, int longest);

    /// <summary>A state of one block from saved tensors (checked against <see cref="SavedState"/>).</summary>
    public abstract LayerState LoadState(IReadOnlyDictionary<string, HostTensor> tensors, string prefix, int batch,
        int longest, int capacity);

    /// <summary>Frees the constants.</summary>
    public abstract void Dispose();
}

/// <summary>
/// One block's part of a decoding state for a batch of sequences: retention's state [B, H, Dk, Dv], or a KV cache.
/// Every tensor is batch-major, so reordering a batch is one gather of each.
/// </summary>
internal abstract class LayerState : IDisposable
{
    /// <summary>The tensors, by name within the block (what <see cref="Export"/> saves).</summary>
    public abstract IEnumerable<(string Name, Tensor Tensor)> Tensors { get; }

    /// <summary>The sequences the storage has room for: the decoding state's batch, or more where it keeps free slots
    /// (<see cref="DecodingState.ReserveSequences"/>); rows past the batch are never read.</summary>
    public abstract int Rows { get; }

    /// <summary>A new state whose sequence i is a copy of this one's sequence <paramref name="indices"/>[i].</summary>
    public abstract LayerState Gather(IReadOnlyList<int> indices);

    /// <summary>New storage with room for <paramref name="rows"/> sequences (and, where it grows, for
    /// <paramref name="positions"/> positions each at least), its first <paramref name="keep"/> sequences copied from
    /// this one's.</summary>
    public abstract LayerState Resized(int rows, int keep, int positions);

    /// <summary>
    /// Copies sequences [<paramref name="sourceFirst"/>, + <paramref name="count"/>) of <paramref name="source"/> (a
    /// state of this kind from the same model, possibly this one) into sequences [<paramref name="to"/>, + count) of
    /// this one; each sequence's first <paramref name="positions"/> positions where the state has positions (this one
    /// must have room for them). Sequence by sequence, so a copy within one state never overlaps itself.
    /// </summary>
    public abstract void CopySequences(LayerState source, int sourceFirst, int to, int count, int positions);

    /// <summary>Makes room for <paramref name="positions"/> positions per sequence (a KV cache grows; retention's state
    /// has no positions): exactly that many, or with <paramref name="amortized"/> at least twice the current room, so
    /// that decoding token by token grows it O(log n) times.</summary>
    public virtual void Reserve(int positions, bool amortized) { }

    /// <summary>The positions each sequence can hold before <see cref="Reserve"/> must grow it; null when unbounded.</summary>
    public virtual int? Capacity => null;

    /// <summary>The tensors of the first <paramref name="rows"/> sequences to save when the longest holds
    /// <paramref name="longest"/> positions.</summary>
    public abstract IEnumerable<(string Name, HostTensor Tensor)> Export(int longest, int rows);

    /// <summary>Sequences [<paramref name="first"/>, <paramref name="first"/> + <paramref name="count"/>).</summary>
    public LayerStateView View(int first, int count) => new(this, first, count);

    /// <summary>Frees the tensors.</summary>
    public abstract void Dispose();
}

/// <summary>Sequences [First, First + Count) of one block's state: what one pass reads and advances.</summary>
internal readonly record struct LayerStateView(LayerState State, int First, int Count);

/// <summary>
/// Hands out a workspace's buffers: <see cref="Make"/> a buffer of its own, <see cref="Shared"/> one buffer per key for
/// every caller (what every block overwrites and its backward recomputes). Owns them all.
/// </summary>
internal sealed class WorkspaceAllocator(RetNetDevice device) : IDisposable
{
    private readonly List<IDisposable> owned = [];
    private readonly Dictionary<string, Tensor> shared = [];

    /// <summary>The device the buffers live on.</summary>
    public RetNetDevice Device { get; } = device;

    /// <summary>A new fp32 buffer of <paramref name="shape"/>.</summary>
    public Tensor Make(params int[] shape)
    {
        var t = Tensor.Uninitialized(Device, shape);
        owned.Add(t);
        return t;
    }

    /// <summary>The buffer of <paramref name="key"/>, made on first use with <paramref name="shape"/>.</summary>
    public Tensor Shared(string key, params int[] shape)
    {
        if (!shared.TryGetValue(key, out var t))
            shared.Add(key, t = Make(shape));
        return t;
    }

    /// <summary>A new int buffer of <paramref name="length"/> zeros.</summary>
    public IndexTensor MakeIndices(int length)
    {
        var t = IndexTensor.Zeros(Device, length);
        owned.Add(t);
        return t;
    }

    /// <summary>Bytes of every buffer made.</summary>
    public long Bytes => owned.OfType<Tensor>().Sum(t => t.Bytes) + owned.OfType<IndexTensor>().Sum(t => 4L * t.Length);

    /// <summary>Frees every buffer.</summary>
    public void Dispose()
    {
        foreach (var t in owned)
            t.Dispose();
        owned.Clear();
        shared.Clear();
    }
}
