using RetNet.Ilgpu.Attention;
using RetNet.Ilgpu.Devices;
using RetNet.Ilgpu.IO;
using RetNet.Ilgpu.Kernels.Rotation;
using RetNet.Ilgpu.Tensors;

namespace RetNet.Ilgpu.Model;

/// <summary>
/// Causal multi-head softmax attention as a mixer of the decoder shell (docs/TRANSFORMER.md): q, k, v and out
/// projections [d, d], H heads of width d/H, the rotation RetNet uses for q and k, scale 1/√(d/H).
/// </summary>
internal sealed class AttentionSpec(int embedDim, int heads) : MixerSpec
{
    public override string Name => "attention";

    public override int WidestRow => embedDim;

    public override IEnumerable<(string Suffix, int[] Shape)> LayerWeights() =>
    [
        ("q_proj.weight", [embedDim, embedDim]), ("k_proj.weight", [embedDim, embedDim]),
        ("v_proj.weight", [embedDim, embedDim]), ("out_proj.weight", [embedDim, embedDim]),
    ];

    public override MixerKind Open(RetNetDevice device) => new AttentionKind(device, heads, embedDim / heads);
}

/// <summary>
/// Attention's activations: the rotated q, k, v and the output [N, d] per block, and in training the row log-sum-exp
/// [B, H, T] that lets the backward pass recompute the probabilities (no T×T buffer anywhere).
/// </summary>
internal sealed class AttentionActivations(Tensor q, Tensor k, Tensor v, Tensor o, Tensor? logSumExp, Tensor branch)
    : MixerActivations
{
    public Tensor Q { get; } = q;
    public Tensor K { get; } = k;
    public Tensor V { get; } = v;
    public Tensor O { get; } = o;
    public Tensor? LogSumExp { get; } = logSumExp;

    public override Tensor Branch { get; } = branch;

    public override MixerActivations Rows(int rows) => LogSumExp is null
        ? new AttentionActivations(Q.Slice(0, rows), K.Slice(0, rows), V.Slice(0, rows), O.Slice(0, rows), null,
            Branch.Slice(0, rows))
        : throw new InvalidOperationException("A training pass's attention activations are not sliced.");
}

/// <summary>
/// One block's KV cache: the keys and values of every position each sequence has seen, [B, H, capacity, d/H] each.
/// Unlike retention's state it grows with the position: 2 · B · position · d · 4 bytes per block. How many positions
/// each sequence holds is the decoding state's positions.
/// </summary>
internal sealed class KeyValueCache(Tensor keys, Tensor values) : LayerState
{
    public const string KeysName = "keys", ValuesName = "values";

    public Tensor Keys { get; private set; } = keys;
    public Tensor Values { get; private set; } = values;

    public override IEnumerable<(string Name, Tensor Tensor)> Tensors => [(KeysName, Keys), (ValuesName, Values)];

    public override int? Capacity => Keys.Dim(2);

    public override LayerState Gather(IReadOnlyList<int> indices)
    {
        Tensor? keys = null;
        try
        {
            keys = GatherRows(Keys, indices);
            return new KeyValueCache(keys, GatherRows(Values, indices));
        }
        catch
        {
            keys?.Dispose();
            throw;
        }
    }

    public override int Rows => Keys.Dim(0);

    public override LayerState Resized(int rows, int keep, int positions)
    {
        int heads = Keys.Dim(1), dh = Keys.Dim(3), capacity = Math.Max(Keys.Dim(2), positions);
        KeyValueCache? result = null;
        Tensor? keys = null;
        try
        {
            keys = Tensor.Zeros(Keys.Device, rows, heads, capacity, dh);
            result = new KeyValueCache(keys, Tensor.Zeros(Keys.Device, rows, heads, capacity, dh));
            keys = null;
            if (keep > 0)
                result.CopySequences(this, 0, 0, keep, Keys.Dim(2));
            return result;
        }
        catch
        {
            keys?.Dispose();
            result?.Dispose();
            throw;
        }
    }

    public override void CopySequences(LayerState source, int sourceFirst, int to, int count, int positions)
    {
        var from = (KeyValueCache)source;
        if (positions > Keys.Dim(2))
            throw new ArgumentOutOfRangeException(nameof(positions), positions,
                $"The cache holds {Keys.Dim(2)} positions per sequence; {positions} do not fit.");
        CopyRows(from.Keys, sourceFirst, Keys, to, count, positions);
        CopyRows(from.Values, sourceFirst, Values, to, count, positions);
    }

    /// <summary>Sequences [first, + count) of <paramref name="from"/> into [to, + count) of <paramref name="into"/>,
    /// positions [0, <paramref name="positions"/>) of every head: a whole sequence at once where both are as wide.</summary>
    private static void CopyRows(Tensor from, int first, Tensor into, int to, int count, int positions)
    {
        int heads = into.Dim(1), dh = into.Dim(3), had = from.Dim(2), room = into.Dim(2);
        var same = ReferenceEquals(from, into);
        if (had == room && !same)
        {
            into.Slice(to, count).CopyFrom(from.Slice(first, count));
            return;
        }
        var used = Math.Min(positions, had) * dh;
        for (var b = 0; b < count; b++)
        {
            if (same && first + b == to + b)
                continue;
            if (had == room)
            {
                into.Slice(to + b, 1).CopyFrom(from.Slice(first + b, 1));
                continue;
            }
            var source = from.Slice(first + b, 1).Reshape(heads, had * dh);
            var target = into.Slice(to + b, 1).Reshape(heads, room * dh);
            for (var h = 0; h < heads && used > 0; h++)
                target.Slice(h, 1).Reshape(room * dh).Slice(0, used)
                    .CopyFrom(source.Slice(h, 1).Reshape(had * dh).Slice(0, used));
        }
    }

    private static Tensor GatherRows(Tensor layer, IReadOnlyList<int> indices)
    {
        var shape = layer.ShapeArray;
        shape[0] = indices.Count;
        var result = Tensor.Uninitialized(layer.Device, shape);
        for (var i = 0; i < indices.Count; i++)
            result.Slice(i, 1).CopyFrom(layer.Slice(indices[i], 1));
        return result;
    }

    /// <summary>Grows the storage to <paramref name="positions"/> per sequence (with <paramref name="amortized"/> to
    /// twice the current capacity at least), keeping what is cached.</summary>
    public override void Reserve(int positions, bool amortized)
    {
        var capacity = Keys.Dim(2);
        if (positions <= capacity)
            return;
        var grown = amortized ? (int)Math.Min(int.MaxValue, Math.Max(positions, 2L * capacity)) : positions;
        Tensor? keys = null;
        try
        {
            keys = Grow(Keys, grown);
            var values = Grow(Values, grown);
            Keys.Dispose();
            Values.Dispose();
            (Keys, Values) = (keys, values);
        }
        catch
        {
            keys?.Dispose();
            throw;
        }
    }

    private static Tensor Grow(Tensor old, int capacity)
    {
        int batch = old.Dim(0), heads = old.Dim(1), had = old.Dim(2), dh = old.Dim(3);
        var result = Tensor.Zeros(old.Device, batch, heads, capacity, dh);
        var from = old.Reshape(batch * heads, had * dh);
        var to = result.Reshape(batch * heads, capacity * dh);
        for (var row = 0; row < batch * heads; row++)
            to.Slice(row, 1).Reshape(capacity * dh).Slice(0, had * dh).CopyFrom(from.Slice(row, 1).Reshape(had * dh));
        return result;
    }

    /// <summary>Positions [0, longest) of every (sequence, head): positions past a sequence's own length are zeros or
    /// stale and never read.</summary>
    public override IEnumerable<(string Name, HostTensor Tensor)> Export(int longest, int rows) =>
        [(KeysName, Prefix(Keys.Slice(0, rows), longest)), (ValuesName, Prefix(Values.Slice(0, rows), longest))];

    private static HostTensor Prefix(Tensor layer, int count)
    {
        int rows = layer.Dim(0) * layer.Dim(1), capacity = layer.Dim(2), dh = layer.Dim(3);
        var all = layer.ToHost();
        var data = new float[rows * count * dh];
        for (var r = 0; r < rows; r++)
            Array.Copy(all, (long)r * capacity * dh, data, (long)r * count * dh, count * dh);
        return new HostTensor([layer.Dim(0), layer.Dim(1), count, dh], data);
    }

    /// <summary>Writes a saved prefix of <paramref name="count"/> positions into the first positions of
    /// <paramref name="layer"/>.</summary>
    public static void Fill(Tensor layer, HostTensor prefix, int count)
    {
        int rows = layer.Dim(0) * layer.Dim(1), capacity = layer.Dim(2), dh = layer.Dim(3);
        var data = new float[layer.Length];
        for (var r = 0; r < rows; r++)
            Array.Copy(prefix.Data, (long)r * count * dh, data, (long)r * capacity * dh, count * dh);
        layer.CopyFromHost(data);
    }

    public override void Dispose()
    {
        Keys.Dispose();
        Values.Dispose();
    }
}

/// <summary>The attention mixers of one model: the rotation angles [d/H/2] and their negatives.</summary>
internal sealed class AttentionKind : MixerKind
{
    /// <summary>The positions a new KV cache holds before it first grows.</summary>
    public const int InitialCapacity = 16;

    private readonly RetNetDevice device;
    private readonly Tensor angles, inverseAngles;

    public AttentionKind(RetNetDevice device, int heads, int headDim)
    {
        this.device = device;
        Heads = heads;
        HeadDim = headDim;
        Scale = (float)(1 / Math.Sqrt(headDim));
        var theta = ThetaShift.Angles(headDim);
        angles = Tensor.FromHost(device, theta, theta.Length);
        try
        {
            inverseAngles = Tensor.FromHost(device, theta.Select(a => -a).ToArray(), theta.Length);
        }
        catch
        {
            angles.Dispose();
            throw;
        }
    }

    public int Heads { get; }
    public int HeadDim { get; }
    public float Scale { get; }
    public Tensor Angles => angles;
    public Tensor InverseAngles => inverseAngles;

    public override int ScratchWidth => Heads * HeadDim;

    public override bool ContinuesInChunks => false;

    public override bool CanTruncate => true;

    public override string StateFormat => "retnet-ilgpu-kv-cache";

    public override bool NeedsState(ForwardMode mode) => false;

    public override TokenMixer Bind(Func<string, Tensor> weight, string gradientPrefix) =>
        new CausalSelfAttention(weight("q_proj.weight"), weight("k_proj.weight"), weight("v_proj.weight"),
            weight("out_proj.weight"), this, gradientPrefix);

    public override MixerActivations Allocate(WorkspaceAllocator a, int batch, int seqLen, bool keep)
    {
        int n = batch * seqLen, d = Heads * HeadDim;
        var branch = a.Shared("branch", n, d);
        return keep
            ? new AttentionActivations(a.Make(n, d), a.Make(n, d), a.Make(n, d), a.Make(n, d),
                a.Make(batch, Heads, seqLen), branch)
            : new AttentionActivations(a.Shared("attention.q", n, d), a.Shared("attention.k", n, d),
                a.Shared("attention.v", n, d), a.Shared("attention.o", n, d), null, branch);
    }

    public override LayerState CreateState(int batch, int capacity)
    {
        capacity = Math.Max(capacity, 1);
        var keys = Tensor.Zeros(device, batch, Heads, capacity, HeadDim);
        try
        {
            return new KeyValueCache(keys, Tensor.Zeros(device, batch, Heads, capacity, HeadDim));
        }
        catch
        {
            keys.Dispose();
            throw;
        }
    }

    public override IReadOnlyList<(string Name, int[] Shape)> SavedState(string prefix, int batch, int longest) =>
    [
        (prefix + KeyValueCache.KeysName, [batch, Heads, longest, HeadDim]),
        (prefix + KeyValueCache.ValuesName, [batch, Heads, longest, HeadDim]),
    ];

    public override LayerState LoadState(IReadOnlyDictionary<string, HostTensor> tensors, string prefix, int batch,
        int longest, int capacity)
    {
        var cache = (KeyValueCache)CreateState(batch, Math.Max(capacity, longest));
        try
        {
            KeyValueCache.Fill(cache.Keys, tensors[prefix + KeyValueCache.KeysName], longest);
            KeyValueCache.Fill(cache.Values, tensors[prefix + KeyValueCache.ValuesName], longest);
            return cache;
        }
        catch
        {
            cache.Dispose();
            throw;
        }
    }

    public override void Dispose()
    {
        angles.Dispose();
        inverseAngles.Dispose();
    }
}

/// <summary>
/// The attention of one block: q, k, v projections, the rotation of q and k at absolute positions (the same as
/// RetNet's), causal softmax attention with scale 1/√(d/H), the out projection.
/// </summary>
internal sealed class CausalSelfAttention(Tensor q, Tensor k, Tensor v, Tensor output, AttentionKind kind,
    string prefix) : TokenMixer
{
    /// <summary>
    /// Without a state the sequences attend among their own tokens. With a state and a pass over whole prompts
    /// (prefill, every sequence at position 0) the same, and the keys and values are written to the cache. With a
    /// state and a decoding step each token's key and value are appended at its sequence's position and its query
    /// attends to every cached position.
    /// </summary>
    public override void Forward(Tensor input, MixerActivations activations, Pass pass, LayerStateView? state)
    {
        var t = (AttentionActivations)activations;
        int batch = pass.Batch, seqLen = pass.SeqLen, heads = kind.Heads, dh = kind.HeadDim;
        var (q4, k4, v4) = HeadProjections.Rotated(input, (q, k, v), (t.Q, t.K, t.V), pass, heads, kind.Angles, 1f,
            RotaryLayout.Interleaved);
        var o4 = t.O.Reshape(batch, seqLen, heads, dh);
        if (state is not { } view)
        {
            CausalAttention.Forward(q4, k4, v4, kind.Scale, o4, t.LogSumExp);
        }
        else
        {
            var cache = (KeyValueCache)view.State;
            var keys = cache.Keys.Slice(view.First, view.Count);
            var values = cache.Values.Slice(view.First, view.Count);
            if (pass.Ends is { } ends)
            {
                CausalAttention.AppendToCache(k4, keys, pass.Starts);
                CausalAttention.AppendToCache(v4, values, pass.Starts);
                CausalAttention.Step(q4, keys, values, ends, kind.Scale, o4);
            }
            else
            {
                CausalAttention.Forward(q4, k4, v4, kind.Scale, o4);
                CausalAttention.AppendToCache(k4, keys, pass.Starts);
                CausalAttention.AppendToCache(v4, values, pass.Starts);
            }
        }
        Linear.Apply(t.O, output, t.Branch, pass);
    }

    /// <summary>Attention's backward recomputes its probabilities from q, k and the saved log-sum-exp; the rotation is
    /// undone by rotating back.</summary>
    public override void Backward(Tensor input, MixerActivations activations, Pass pass, Tensor dBranch, Tensor dInput,
        IReadOnlyDictionary<string, Tensor> gradients, BackwardScratch scratch)
    {
        var t = (AttentionActivations)activations;
        int batch = pass.Batch, seqLen = pass.SeqLen, heads = kind.Heads, dh = kind.HeadDim;
        Tensor dO = scratch.Value[0], dQ = scratch.Value[1], dK = scratch.Value[2], dV = scratch.Value[3];
        Linear.BackwardWeight(dBranch, t.O, gradients[prefix + "out_proj.weight"]);
        Linear.BackwardInput(dBranch, output, dO, accumulate: false);
        var dq4 = dQ.Reshape(batch, seqLen, heads, dh);
        var dk4 = dK.Reshape(batch, seqLen, heads, dh);
        CausalAttention.Backward(t.Q.Reshape(batch, seqLen, heads, dh), t.K.Reshape(batch, seqLen, heads, dh),
            t.V.Reshape(batch, seqLen, heads, dh), kind.Scale, t.O.Reshape(batch, seqLen, heads, dh),
            t.LogSumExp ?? throw new InvalidOperationException("A training pass keeps attention's log-sum-exp."),
            dO.Reshape(batch, seqLen, heads, dh), dq4, dk4, dV.Reshape(batch, seqLen, heads, dh));
        // The rotation is orthogonal: rotating by −pθ carries the gradients back to the projections.
        ThetaShift.Apply(dq4, pass.Starts, kind.InverseAngles, 1f, RotaryLayout.Interleaved);
        ThetaShift.Apply(dk4, pass.Starts, kind.InverseAngles, 1f, RotaryLayout.Interleaved);
        Linear.BackwardShared(input, dInput, gradients, (dQ, q, prefix + "q_proj.weight"),
            (dK, k, prefix + "k_proj.weight"), (dV, v, prefix + "v_proj.weight"));
    }
}
