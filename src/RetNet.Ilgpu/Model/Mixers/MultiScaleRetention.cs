using RetNet.Ilgpu.Devices;
using RetNet.Ilgpu.IO;
using RetNet.Ilgpu.Kernels.Elementwise;
using RetNet.Ilgpu.Kernels.HeadGroups;
using RetNet.Ilgpu.Kernels.Normalization;
using RetNet.Ilgpu.Kernels.Rotation;
using RetNet.Ilgpu.Retention;
using RetNet.Ilgpu.Tensors;

namespace RetNet.Ilgpu.Model;

/// <summary>
/// How one convention's multi-scale retention differs from another's (docs/MATH.md §5, §13): the sizes, the rotation,
/// whether the head norm is decay-normalised and whether it has a weight, and the names of the projections.
/// </summary>
/// <param name="Heads">H, the query heads.</param>
/// <param name="KeyDim">The query and key width over all heads, H·Dk.</param>
/// <param name="ValueDim">The value width over all heads, H·Dv.</param>
/// <param name="Eps">The head norm's eps.</param>
/// <param name="Decay">γ of every head.</param>
/// <param name="Rotary">Which elements the rotation pairs and which angles it uses.</param>
/// <param name="DecayNormalized">torchscale's decay normalisation, folded into the head norm as a per-row eps; fla
/// has none.</param>
/// <param name="GateNormWeight">The suffix of the head norm's weight [Dv], shared by the heads; null when the norm
/// has no weight (torchscale).</param>
/// <param name="OutputName">The suffix of the out projection ("out_proj.weight" or "o_proj.weight").</param>
/// <param name="KvHeads">The key/value heads; H/KvHeads query heads share each (grouped heads, fla's
/// num_kv_heads).</param>
internal sealed record RetentionOptions(int Heads, int KeyDim, int ValueDim, double Eps, DecaySchedule Decay,
    RotaryLayout Rotary, bool DecayNormalized, string? GateNormWeight, string OutputName, int KvHeads)
{
    /// <summary>torchscale's retention: key width d, interleaved rotation, decay-normalised head norm without weight,
    /// out_proj.</summary>
    public static RetentionOptions Torchscale(int embedDim, int valueDim, int heads, double eps, DecaySchedule decay) =>
        new(heads, embedDim, valueDim, eps, decay, RotaryLayout.Interleaved, DecayNormalized: true,
            GateNormWeight: null, OutputName: "out_proj.weight", KvHeads: heads);

    /// <summary>G, the query heads per key/value head.</summary>
    public int Group => Heads / KvHeads;

    /// <summary>Dk, the key head width.</summary>
    public int KeyHeadDim => KeyDim / Heads;

    /// <summary>Dv, the value head width.</summary>
    public int ValueHeadDim => ValueDim / Heads;
}

/// <summary>
/// Multi-scale retention as a mixer of the decoder shell: H heads of key width Dk and value width Dv, decays γ_h, a
/// per-head RMSNorm over Dv and the swish gate (docs/MATH.md §4–5), in the variant <paramref name="options"/> gives.
/// </summary>
internal sealed class RetentionSpec(int embedDim, RetentionOptions options) : MixerSpec
{
    public override string Name => "retention";

    public override int WidestRow => Math.Max(options.ValueDim, options.KeyDim);

    public RetentionOptions Options => options;

    public override IEnumerable<(string Suffix, int[] Shape)> LayerWeights()
    {
        int d = embedDim, dk = options.KeyDim, dv = options.ValueDim;
        yield return ("q_proj.weight", [dk, d]);
        yield return ("k_proj.weight", [dk / options.Group, d]);
        yield return ("v_proj.weight", [dv / options.Group, d]);
        yield return ("g_proj.weight", [dv, d]);
        yield return (options.OutputName, [d, dv]);
        if (options.GateNormWeight is { } norm)
            yield return (norm, [options.ValueHeadDim]);
    }

    public override MixerKind Open(RetNetDevice device) => new RetentionKind(device, embedDim, options);
}

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
/// <param name="Output">The layer's output [N, d].</param>
/// <param name="KvK">With grouped heads: the rotated, scaled keys of the kv heads [N, key dim/G] before
/// <see cref="K"/> spreads them over the query heads; null otherwise.</param>
/// <param name="KvV">With grouped heads: the values of the kv heads [N, value dim/G]; null otherwise.</param>
internal sealed class RetentionActivations(Tensor Q, Tensor K, Tensor V, Tensor G, Tensor O, Tensor Y, Tensor SiluG,
    Tensor Z, Tensor? HeadRstd, Tensor Output, Tensor? KvK = null, Tensor? KvV = null) : MixerActivations
{
    public Tensor? KvK { get; } = KvK;
    public Tensor? KvV { get; } = KvV;
    public Tensor Q { get; } = Q;
    public Tensor K { get; } = K;
    public Tensor V { get; } = V;
    public Tensor G { get; } = G;
    public Tensor O { get; } = O;
    public Tensor Y { get; } = Y;
    public Tensor SiluG { get; } = SiluG;
    public Tensor Z { get; } = Z;
    public Tensor? HeadRstd { get; } = HeadRstd;

    public override Tensor Branch => Output;

    public override MixerActivations Rows(int rows) => new RetentionActivations(Q.Slice(0, rows), K.Slice(0, rows),
        V.Slice(0, rows), G.Slice(0, rows), O.Slice(0, rows), Y.Slice(0, rows), SiluG.Slice(0, rows),
        Z.Slice(0, rows), HeadRstd?.Slice(0, rows * (HeadRstd.Length / Q.Dim(0))), Output.Slice(0, rows),
        KvK?.Slice(0, rows), KvV?.Slice(0, rows));
}

/// <summary>The decay sums s_t of every row and head [N·H] (the head norm's per-row eps scale), computed once per
/// pass.</summary>
internal sealed class RetentionPassData(Tensor decaySums, int heads) : MixerPassData
{
    public Tensor DecaySums { get; } = decaySums;

    public override MixerPassData Rows(int rows) =>
        new RetentionPassData(DecaySums.Reshape(-1, heads).Slice(0, rows).Reshape(rows * heads), heads);
}

/// <summary>One block's retention state [B, H, Dk, Dv], fp32, its size independent of the position.</summary>
internal sealed class RetentionState(Tensor state) : LayerState
{
    public const string TensorName = "retention_state";

    public Tensor State { get; } = state;

    public override IEnumerable<(string Name, Tensor Tensor)> Tensors => [(TensorName, State)];

    public override LayerState Gather(IReadOnlyList<int> indices)
    {
        var shape = State.ShapeArray;
        shape[0] = indices.Count;
        var result = Tensor.Uninitialized(State.Device, shape);
        for (var i = 0; i < indices.Count; i++)
            result.Slice(i, 1).CopyFrom(State.Slice(indices[i], 1));
        return new RetentionState(result);
    }

    public override int Rows => State.Dim(0);

    public override LayerState Resized(int rows, int keep, int positions)
    {
        var shape = State.ShapeArray;
        shape[0] = rows;
        var result = new RetentionState(Tensor.Uninitialized(State.Device, shape));
        if (keep > 0)
            result.State.Slice(0, keep).CopyFrom(State.Slice(0, keep));
        return result;
    }

    public override void CopySequences(LayerState source, int sourceFirst, int to, int count, int positions)
    {
        var from = ((RetentionState)source).State;
        if (!ReferenceEquals(from, State))
        {
            State.Slice(to, count).CopyFrom(from.Slice(sourceFirst, count));
            return;
        }
        for (var i = 0; i < count; i++)
            if (sourceFirst + i != to + i)
                State.Slice(to + i, 1).CopyFrom(State.Slice(sourceFirst + i, 1));
    }

    public override IEnumerable<(string Name, HostTensor Tensor)> Export(int longest, int rows) =>
        [(TensorName, HostTensor.From(State.Slice(0, rows)))];

    public override void Dispose() => State.Dispose();
}

/// <summary>The retention mixers of one model: the rotation angles [Dk/2] and their negatives (the inverse rotation of
/// the backward pass), γ per head and its device table [2, H], and one chunk-state buffer every block reuses.</summary>
internal sealed class RetentionKind : MixerKind
{
    private readonly RetNetDevice device;
    private readonly RetentionOptions options;
    private readonly int embedDim, heads, keyDim, valueDim;
    private readonly float eps;
    private readonly DecaySchedule decay;
    private readonly Tensor angles, inverseAngles, decayTable;
    private Tensor? chunkStates, normWeightGradient;

    public RetentionKind(RetNetDevice device, int embedDim, RetentionOptions options)
    {
        this.device = device;
        this.embedDim = embedDim;
        this.options = options;
        heads = options.Heads;
        keyDim = options.KeyHeadDim;
        valueDim = options.ValueHeadDim;
        eps = (float)options.Eps;
        decay = options.Decay;
        var theta = ThetaShift.Angles(keyDim, options.Rotary);
        angles = Tensor.FromHost(device, theta, theta.Length);
        try
        {
            inverseAngles = Tensor.FromHost(device, theta.Select(a => -a).ToArray(), theta.Length);
            decayTable = decay.Upload(device);
        }
        catch
        {
            angles.Dispose();
            inverseAngles?.Dispose();
            throw;
        }
    }

    public override int ScratchWidth => heads * Math.Max(keyDim, valueDim);

    public override bool ContinuesInChunks => true;

    public override bool PacksDocuments => true;

    public override bool CanTruncate => false;

    public override string StateFormat => "retnet-decoding-state";

    public override bool NeedsState(ForwardMode mode) => mode.Form == RetentionForm.Recurrent;

    public override TokenMixer Bind(Func<string, Tensor> weight, string gradientPrefix) =>
        new MultiScaleRetention(weight("q_proj.weight"), weight("k_proj.weight"), weight("v_proj.weight"),
            weight("g_proj.weight"), weight(options.OutputName),
            options.GateNormWeight is { } norm ? weight(norm) : null, this, gradientPrefix);

    public override MixerActivations Allocate(WorkspaceAllocator a, int batch, int seqLen, bool keep)
    {
        int n = batch * seqLen, d = heads * keyDim, dv = heads * valueDim;
        var branch = a.Shared("branch", n, embedDim);
        // The kv heads' keys and values are only read while spreading them over the query heads: one buffer each
        // for every block, training included.
        int group = options.Group;
        Tensor? kvK = group > 1 ? a.Shared("retention.kv_k", n, d / group) : null;
        Tensor? kvV = group > 1 ? a.Shared("retention.kv_v", n, dv / group) : null;
        if (!keep)
        {
            Tensor o = a.Shared("retention.o", n, dv), g = a.Shared("retention.g", n, dv);
            return new RetentionActivations(a.Shared("retention.q", n, d), a.Shared("retention.k", n, d),
                a.Shared("retention.v", n, dv), g, o, o, g, o, null, branch, kvK, kvV);
        }
        // What the backward pass recomputes with one cheap elementwise or norm pass (docs/MATH.md §11): Y, silu(G)
        // and Z = silu(G) ⊙ Y are shared by every block and recomputed by each block's backward.
        return new RetentionActivations(a.Make(n, d), a.Make(n, d), a.Make(n, dv), a.Make(n, dv), a.Make(n, dv),
            a.Shared("retention.y", n, dv), a.Shared("retention.silu_g", n, dv), a.Shared("retention.z", n, dv),
            a.Make(n * heads), branch, kvK, kvV);
    }

    /// <summary>The decay sums of the decay-normalised head norm; nothing without decay normalisation.</summary>
    public override MixerPassData? AllocatePassData(WorkspaceAllocator a, int rows) =>
        options.DecayNormalized ? new RetentionPassData(a.Make(rows * heads), heads) : null;

    /// <summary>The decay sums of every row and head, which every block's head norm reads.</summary>
    public override void BeginPass(Pass pass)
    {
        if (pass.MixerData is not RetentionPassData data)
            return;
        // Packed, each token's sum runs from its document's start: B·T sequences of one token at their positions.
        if (pass.Documents is { } documents)
            DecayNormalization.Launch(documents.Positions, decayTable, 1, data.DecaySums);
        else
            DecayNormalization.Launch(pass.Starts, decayTable, pass.SeqLen, data.DecaySums);
    }

    public override LayerState CreateState(int batch, int capacity) =>
        new RetentionState(Tensor.Zeros(device, batch, heads, keyDim, valueDim));

    public override IReadOnlyList<(string Name, int[] Shape)> SavedState(string prefix, int batch, int longest) =>
        [(prefix + RetentionState.TensorName, [batch, heads, keyDim, valueDim])];

    public override LayerState LoadState(IReadOnlyDictionary<string, HostTensor> tensors, string prefix, int batch,
        int longest, int capacity) =>
        new RetentionState(tensors[prefix + RetentionState.TensorName].ToDevice(device));

    internal RetentionOptions Options => options;
    internal int Heads => heads;
    internal int KeyDim => keyDim;
    internal int ValueDim => valueDim;
    internal float Eps => eps;
    internal DecaySchedule Decay => decay;
    internal Tensor Angles => angles;
    internal Tensor InverseAngles => inverseAngles;
    internal Tensor DecayTable => decayTable;

    /// <summary>
    /// The buffer every chunkwise call of the model keeps its chunk states in, large enough for B·H·⌈T/C⌉ states of
    /// [Dk, Dv]: allocated on first use and grown when a longer pass needs more, so that steady-state passes allocate
    /// nothing. Blocks run one after another, so one buffer serves them all.
    /// </summary>
    internal Tensor ChunkStates(int batch, int seqLen, int chunkSize)
    {
        var size = Math.Min(chunkSize, seqLen);
        var chunks = (seqLen + size - 1) / size;
        var length = (long)batch * heads * chunks * keyDim * valueDim;
        if (chunkStates is null || chunkStates.Length < length)
        {
            chunkStates?.Dispose();
            chunkStates = null;
            chunkStates = Tensor.Uninitialized(device, checked((int)length));
        }
        return chunkStates;
    }

    /// <summary>A [Dv] buffer for one block's head-norm weight gradient before it is added (allocated on first
    /// use).</summary>
    internal Tensor NormWeightGradient() => normWeightGradient ??= Tensor.Zeros(device, valueDim);

    public override void Dispose()
    {
        angles.Dispose();
        inverseAngles.Dispose();
        decayTable.Dispose();
        chunkStates?.Dispose();
        normWeightGradient?.Dispose();
    }
}

/// <summary>
/// Multi-scale retention (docs/MATH.md §5) of one block: q, k, v, g projections; k·Dk^(−1/2) (the same scores as
/// fla's q·Dk^(−1/2)); rotation at absolute positions; canonical retention in the pass's form; the per-head RMSNorm
/// over Dv, decay-normalised (torchscale, §4) or not, with the shared weight <paramref name="normWeight"/> when the
/// convention has one (fla); silu(g) ⊙ Y; out projection.
/// </summary>
internal sealed class MultiScaleRetention(Tensor q, Tensor k, Tensor v, Tensor g, Tensor output, Tensor? normWeight,
    RetentionKind kind, string prefix) : TokenMixer
{
    /// <summary>
    /// The state [B, H, Dk, Dv] entering the tokens is advanced past them; without a state (parallel or chunkwise
    /// only) every sequence starts from zeros and nothing is kept.
    /// </summary>
    public override void Forward(Tensor input, MixerActivations activations, Pass pass, LayerStateView? state)
    {
        var t = (RetentionActivations)activations;
        var s = state is { } view ? ((RetentionState)view.State).State.Slice(view.First, view.Count) : null;
        int batch = pass.Batch, seqLen = pass.SeqLen, heads = kind.Heads, dk = kind.KeyDim, dv = kind.ValueDim;
        var (q4, k4, v4) = kind.Options.Group == 1
            ? HeadProjections.Rotated(input, (q, k, v), (t.Q, t.K, t.V), pass, heads, kind.Angles,
                (float)(1 / Math.Sqrt(dk)), kind.Options.Rotary)
            : GroupedProjections(input, t, pass);
        Linear.Apply(input, g, t.G, pass);
        var o4 = t.O.Reshape(batch, seqLen, heads, dv);
        switch (pass.Mode.Form)
        {
            case RetentionForm.Parallel:
                ParallelRetention.Forward(q4, k4, v4, kind.Decay, o4, s, s, launch: null, kind.DecayTable,
                    pass.Bounds);
                break;
            case RetentionForm.Chunkwise:
                ChunkwiseRetention.Forward(q4, k4, v4, kind.Decay, pass.Mode.ChunkSize, o4, s, s, launch: null,
                    kind.DecayTable, kind.ChunkStates(batch, seqLen, pass.Mode.ChunkSize), pass.Bounds);
                break;
            default:
                // The recurrent scan launched directly with the model's decay table, so a decoding step uploads
                // nothing and checks nothing: shapes are the model's own.
                RetentionLaunch.For(q4.Device).Recurrent(new RecurrentOperands(q4, k4, v4, kind.DecayTable,
                    s ?? throw new InvalidOperationException("The recurrent form needs a state."), o4, pass.Bounds));
                break;
        }
        Gate(t, DecaySums(pass));
        Linear.Apply(t.Z, output, t.Branch, pass);
    }

    /// <summary>
    /// Retention's backward runs in the form of the forward pass (parallel or chunkwise), the rotation is undone by
    /// rotating back, and the head norm's backward uses the saved per-row rstd.
    /// </summary>
    public override void Backward(Tensor input, MixerActivations activations, Pass pass, Tensor dBranch, Tensor dInput,
        IReadOnlyDictionary<string, Tensor> gradients, BackwardScratch scratch)
    {
        var t = (RetentionActivations)activations;
        var decaySums = DecaySums(pass);
        int batch = pass.Batch, seqLen = pass.SeqLen, heads = kind.Heads, dk = kind.KeyDim, dv = kind.ValueDim;
        int rows = t.O.Dim(0), keyWidth = heads * dk, valueWidth = heads * dv;
        Tensor dZ = Prefix(scratch.Value[0], rows, valueWidth), dY = Prefix(scratch.Value[1], rows, valueWidth);
        Tensor dO = Prefix(scratch.Value[2], rows, valueWidth), dV = Prefix(scratch.Value[3], rows, valueWidth);
        // dY is dead once the head norm's backward has written dO, so dQ reuses its buffer.
        Tensor dQ = Prefix(scratch.Value[1], rows, keyWidth), dK = Prefix(scratch.Value[4], rows, keyWidth);
        // Training blocks share one buffer each for Y, silu(G) and Z: recompute this block's (the same launches as
        // the forward pass, so the same bits).
        Gate(t, decaySums);
        Linear.BackwardWeight(dBranch, t.Z, gradients[prefix + kind.Options.OutputName]);
        Linear.BackwardInput(dBranch, output, dZ, accumulate: false);
        Elementwise.Multiply(dZ, t.SiluG, dY);
        Elementwise.Multiply(dZ, t.Y, dZ);
        Elementwise.SiluBackward(t.G, dZ, dZ);
        var dG = dZ;
        var headRows = rows * heads;
        var dNormWeight = normWeight is null ? null : kind.NormWeightGradient();
        RmsNorm.Backward(t.O.Reshape(headRows, dv), normWeight, dY.Reshape(headRows, dv), kind.Eps,
            dO.Reshape(headRows, dv), dNormWeight, t.HeadRstd, options: null, decaySums);
        if (dNormWeight is not null)
        {
            var normGradient = gradients[prefix + kind.Options.GateNormWeight];
            Elementwise.Add(normGradient, dNormWeight, normGradient);
        }
        var q4 = t.Q.Reshape(batch, seqLen, heads, dk);
        var k4 = t.K.Reshape(batch, seqLen, heads, dk);
        var v4 = t.V.Reshape(batch, seqLen, heads, dv);
        var dq4 = dQ.Reshape(batch, seqLen, heads, dk);
        var dk4 = dK.Reshape(batch, seqLen, heads, dk);
        var dv4 = dV.Reshape(batch, seqLen, heads, dv);
        var do4 = dO.Reshape(batch, seqLen, heads, dv);
        if (pass.Mode.Form == RetentionForm.Parallel)
            ParallelRetention.Backward(q4, k4, v4, kind.Decay, null, do4, null, dq4, dk4, dv4, null, launch: null,
                kind.DecayTable, pass.Bounds);
        else
            ChunkwiseRetention.Backward(q4, k4, v4, kind.Decay, pass.Mode.ChunkSize, null, do4, null, dq4, dk4, dv4,
                null, launch: null, kind.DecayTable, kind.ChunkStates(batch, seqLen, pass.Mode.ChunkSize),
                pass.Bounds);
        // The rotation is orthogonal: its transpose, the rotation by −pθ, carries gradients back to q and k.
        pass.Rotate(dq4, kind.InverseAngles, 1f, kind.Options.Rotary);
        pass.Rotate(dk4, kind.InverseAngles, (float)(1 / Math.Sqrt(dk)), kind.Options.Rotary);
        if (kind.Options.Group > 1)
        {
            // The transpose of spreading: each kv head's gradient is the sum of its query heads'. dO is dead once
            // retention's backward has run, and dV once it is summed, so their buffers take the sums.
            int kvHeads = kind.Options.KvHeads;
            var dVGrouped = Prefix(scratch.Value[2], rows, kvHeads * dv);
            HeadGroups.Reduce(dV.Reshape(rows, heads, dv), dVGrouped.Reshape(rows, kvHeads, dv));
            var dKGrouped = Prefix(scratch.Value[3], rows, kvHeads * dk);
            HeadGroups.Reduce(dK.Reshape(rows, heads, dk), dKGrouped.Reshape(rows, kvHeads, dk));
            (dK, dV) = (dKGrouped, dVGrouped);
        }
        Linear.BackwardShared(input, dInput, gradients, (dQ, q, prefix + "q_proj.weight"),
            (dK, k, prefix + "k_proj.weight"), (dV, v, prefix + "v_proj.weight"), (dG, g, prefix + "g_proj.weight"));
    }

    /// <summary>
    /// q, k, v with grouped heads: the kv heads' keys are rotated (a rotation depends only on the position and the
    /// dimension, so rotating before spreading equals rotating after, as fla does) and scaled, then keys and values
    /// are spread over the query heads.
    /// </summary>
    private (Tensor Q, Tensor K, Tensor V) GroupedProjections(Tensor input, RetentionActivations t, Pass pass)
    {
        int rows = t.Q.Dim(0), heads = kind.Heads, kvHeads = kind.Options.KvHeads;
        int dk = kind.KeyDim, dv = kind.ValueDim;
        Linear.Apply(input, q, t.Q, pass);
        Linear.Apply(input, k, t.KvK!, pass);
        Linear.Apply(input, v, t.KvV!, pass);
        var q4 = t.Q.Reshape(pass.Batch, pass.SeqLen, heads, dk);
        pass.Rotate(q4, kind.Angles, 1f, kind.Options.Rotary);
        pass.Rotate(t.KvK!.Reshape(pass.Batch, pass.SeqLen, kvHeads, dk), kind.Angles, (float)(1 / Math.Sqrt(dk)),
            kind.Options.Rotary);
        HeadGroups.Expand(t.KvK!.Reshape(rows, kvHeads, dk), t.K.Reshape(rows, heads, dk));
        HeadGroups.Expand(t.KvV!.Reshape(rows, kvHeads, dv), t.V.Reshape(rows, heads, dv));
        return (q4, t.K.Reshape(pass.Batch, pass.SeqLen, heads, dk), t.V.Reshape(pass.Batch, pass.SeqLen, heads, dv));
    }

    /// <summary>The first rows·width elements of a mixer-wide scratch buffer, as [rows, width].</summary>
    private static Tensor Prefix(Tensor buffer, int rows, int width) =>
        buffer.Reshape(-1).Slice(0, rows * width).Reshape(rows, width);

    /// <summary>The decay sums of the pass, or null when the head norm is not decay-normalised.</summary>
    private static Tensor? DecaySums(Pass pass) => (pass.MixerData as RetentionPassData)?.DecaySums;

    /// <summary>
    /// Y = the head norm of O (times its weight, when it has one), then Z = silu(G) ⊙ Y. The decay normalisation,
    /// when on: (o/√s)/√(mean((o/√s)²) + eps) = o/√(mean(o²) + eps·s), a per-row eps.
    /// </summary>
    private void Gate(RetentionActivations t, Tensor? decaySums)
    {
        var rows = t.O.Dim(0) * kind.Heads;
        RmsNorm.Forward(t.O.Reshape(rows, kind.ValueDim), normWeight, kind.Eps, t.Y.Reshape(rows, kind.ValueDim),
            t.HeadRstd, options: null, decaySums);
        Elementwise.Silu(t.G, t.SiluG);
        Elementwise.Multiply(t.SiluG, t.Y, t.Z);
    }
}
