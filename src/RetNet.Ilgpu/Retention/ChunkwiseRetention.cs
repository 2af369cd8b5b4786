using RetNet.Ilgpu.Tensors;

namespace RetNet.Ilgpu.Retention;

/// <summary>
/// The chunkwise form of retention, the fast path for training and prefill: tokens in chunks of C; within a chunk the
/// parallel form, across chunks a state carried by the recurrence (docs/MATH.md §2). Linear in T: time
/// O(T·C·(Dk + Dv) + T·Dk·Dv), memory one [Dk, Dv] state per chunk. Two kernels: a state walk that writes the state
/// entering every chunk, then an output kernel parallel over (b, h, chunk, dv-tile). Identical to the parallel and
/// recurrent forms up to fp32 rounding, for any C ≥ 1 (C need not divide T; C > T is one chunk).
/// Layout: q, k [B, T, H, Dk]; v, o [B, T, H, Dv]; states [B, H, Dk, Dv]; all fp32.
/// </summary>
public static class ChunkwiseRetention
{
    /// <summary>
    /// output[b, t, h] = Σ_{j≤t} γ_h^(t−j) (q_t·k_j) v_j + γ_h^(t+1) q_t S_0, and optionally the final state S_T, computed
    /// chunk by chunk.
    /// </summary>
    /// <param name="q">Queries [B, T, H, Dk].</param>
    /// <param name="k">Keys [B, T, H, Dk].</param>
    /// <param name="v">Values [B, T, H, Dv].</param>
    /// <param name="decay">γ per head (H values).</param>
    /// <param name="chunkSize">C ≥ 1, tokens per chunk.</param>
    /// <param name="output">Written: o [B, T, H, Dv].</param>
    /// <param name="initialState">S_0 [B, H, Dk, Dv] (e.g. carried from the previous segment); null means zeros.</param>
    /// <param name="finalState">Written when given: S_T [B, H, Dk, Dv], the state to carry into the next segment. May
    /// be <paramref name="initialState"/> itself (the state advances in place).</param>
    /// <exception cref="ArgumentException">A shape, the head count of <paramref name="decay"/>, a device or an aliasing
    /// is wrong (the message names the argument, expected and actual shape), or C &lt; 1.</exception>
    public static void Forward(Tensor q, Tensor k, Tensor v, DecaySchedule decay, int chunkSize, Tensor output,
        Tensor? initialState = null, Tensor? finalState = null) =>
        Forward(q, k, v, decay, chunkSize, output, initialState, finalState, launch: null);

    /// <summary>
    /// Gradients of <see cref="Forward(Tensor, Tensor, Tensor, DecaySchedule, int, Tensor, Tensor?, Tensor?)"/>. Keeps
    /// nothing from the forward pass but its inputs: the chunk states are recomputed, the state gradients walk the
    /// chunks in reverse, then dq, dk, dv are formed per chunk.
    /// </summary>
    /// <param name="q">Queries [B, T, H, Dk] of the forward pass.</param>
    /// <param name="k">Keys [B, T, H, Dk].</param>
    /// <param name="v">Values [B, T, H, Dv].</param>
    /// <param name="decay">γ per head.</param>
    /// <param name="chunkSize">C ≥ 1 (any value gives the same gradients up to rounding).</param>
    /// <param name="initialState">S_0 of the forward pass, or null for zeros.</param>
    /// <param name="dOutput">∂L/∂o [B, T, H, Dv], or null when the loss does not depend on the output.</param>
    /// <param name="dFinalState">∂L/∂S_T [B, H, Dk, Dv], or null when the loss does not depend on the final state.</param>
    /// <param name="dq">Written: ∂L/∂q [B, T, H, Dk].</param>
    /// <param name="dk">Written: ∂L/∂k [B, T, H, Dk].</param>
    /// <param name="dv">Written: ∂L/∂v [B, T, H, Dv].</param>
    /// <param name="dInitialState">Written when given: ∂L/∂S_0 [B, H, Dk, Dv]. May be <paramref name="dFinalState"/>
    /// itself.</param>
    /// <exception cref="ArgumentException">A shape, the head count, a device or an aliasing is wrong, or C &lt; 1.</exception>
    public static void Backward(Tensor q, Tensor k, Tensor v, DecaySchedule decay, int chunkSize, Tensor? initialState,
        Tensor? dOutput, Tensor? dFinalState, Tensor dq, Tensor dk, Tensor dv, Tensor? dInitialState = null) =>
        Backward(q, k, v, decay, chunkSize, initialState, dOutput, dFinalState, dq, dk, dv, dInitialState, launch: null);

    /// <summary>
    /// <see cref="Forward(Tensor, Tensor, Tensor, DecaySchedule, int, Tensor, Tensor?, Tensor?)"/> over documents packed
    /// into the rows (<see cref="PackedSequences"/>): within a chunk, pairs of different documents are masked; across
    /// chunks, the state is not carried over a document start. Each document's output equals running it alone. The
    /// initial state belongs to each row's first document and the final state is each row's last document's.
    /// </summary>
    /// <param name="q">Queries [B, T, H, Dk].</param>
    /// <param name="k">Keys [B, T, H, Dk].</param>
    /// <param name="v">Values [B, T, H, Dv].</param>
    /// <param name="decay">γ per head.</param>
    /// <param name="chunkSize">C ≥ 1, tokens per chunk (chunks need not align with documents).</param>
    /// <param name="cuSeqlens">Document offsets into the flattened B·T tokens (fla's cu_seqlens).</param>
    /// <param name="output">Written: o [B, T, H, Dv].</param>
    /// <param name="initialState">S_0 [B, H, Dk, Dv] of each row's first document; null means zeros.</param>
    /// <param name="finalState">Written when given: the state after each row's last document.</param>
    /// <exception cref="ArgumentException">A shape, a device or an aliasing is wrong, C &lt; 1, or
    /// <paramref name="cuSeqlens"/> is not valid for q's [B, T].</exception>
    public static void ForwardPacked(Tensor q, Tensor k, Tensor v, DecaySchedule decay, int chunkSize,
        IReadOnlyList<int> cuSeqlens, Tensor output, Tensor? initialState = null, Tensor? finalState = null)
    {
        var shape = RetentionChecks.Inputs(q, k, v, decay);
        RetentionChecks.ChunkSize(chunkSize);
        RetentionChecks.ForwardOutputs(shape, q, k, v, output, initialState, finalState);
        using var bounds = PackedSequences.Upload(q.Device, cuSeqlens, shape.Batch, shape.SeqLen, nameof(cuSeqlens));
        Forward(q, k, v, decay, chunkSize, output, initialState, finalState, launch: null, bounds: bounds);
    }

    /// <summary>Gradients of <see cref="ForwardPacked"/>: no gradient crosses a document boundary.</summary>
    /// <param name="q">Queries [B, T, H, Dk] of the forward pass.</param>
    /// <param name="k">Keys [B, T, H, Dk].</param>
    /// <param name="v">Values [B, T, H, Dv].</param>
    /// <param name="decay">γ per head.</param>
    /// <param name="chunkSize">C ≥ 1.</param>
    /// <param name="cuSeqlens">The document offsets of the forward pass.</param>
    /// <param name="initialState">S_0 of the forward pass, or null for zeros.</param>
    /// <param name="dOutput">∂L/∂o [B, T, H, Dv], or null.</param>
    /// <param name="dFinalState">∂L/∂S_T [B, H, Dk, Dv], or null.</param>
    /// <param name="dq">Written: ∂L/∂q [B, T, H, Dk].</param>
    /// <param name="dk">Written: ∂L/∂k [B, T, H, Dk].</param>
    /// <param name="dv">Written: ∂L/∂v [B, T, H, Dv].</param>
    /// <param name="dInitialState">Written when given: ∂L/∂S_0 [B, H, Dk, Dv].</param>
    /// <exception cref="ArgumentException">A shape, a device or an aliasing is wrong, C &lt; 1, or
    /// <paramref name="cuSeqlens"/> is not valid for q's [B, T].</exception>
    public static void BackwardPacked(Tensor q, Tensor k, Tensor v, DecaySchedule decay, int chunkSize,
        IReadOnlyList<int> cuSeqlens, Tensor? initialState, Tensor? dOutput, Tensor? dFinalState, Tensor dq, Tensor dk,
        Tensor dv, Tensor? dInitialState = null)
    {
        var shape = RetentionChecks.Inputs(q, k, v, decay);
        RetentionChecks.ChunkSize(chunkSize);
        RetentionChecks.Backward(shape, q, k, v, initialState, dOutput, dFinalState, dq, dk, dv, dInitialState);
        using var bounds = PackedSequences.Upload(q.Device, cuSeqlens, shape.Batch, shape.SeqLen, nameof(cuSeqlens));
        Backward(q, k, v, decay, chunkSize, initialState, dOutput, dFinalState, dq, dk, dv, dInitialState,
            launch: null, bounds: bounds);
    }

    /// <summary>
    /// The forward pass with an optional device decay table (<paramref name="table"/>, as
    /// <see cref="DecaySchedule.Upload"/> writes it: a model uploads its table once, so a call uploads nothing) and an
    /// optional <paramref name="workspace"/> to hold the chunk states (used when it is large enough; a model keeps one,
    /// so a call allocates nothing), and optional token bounds of packed documents
    /// (<see cref="PackedSequences.TokenBounds"/>, [B·T, 2]).
    /// </summary>
    internal static void Forward(Tensor q, Tensor k, Tensor v, DecaySchedule decay, int chunkSize, Tensor output,
        Tensor? initialState, Tensor? finalState, RetentionLaunch? launch, Tensor? table = null,
        Tensor? workspace = null, IndexTensor? bounds = null)
    {
        var shape = RetentionChecks.Inputs(q, k, v, decay);
        RetentionChecks.ChunkSize(chunkSize);
        RetentionChecks.ForwardOutputs(shape, q, k, v, output, initialState, finalState);

        var device = q.Device;
        launch ??= RetentionLaunch.For(device);
        var size = Math.Min(chunkSize, shape.SeqLen);
        using var uploaded = table is null ? decay.Upload(device) : null;
        table ??= uploaded!;
        using var owned = Fits(workspace, shape, size) ? null : ChunkStates(shape, size, device);
        var chunkStates = owned ?? View(workspace!, shape, size);
        launch.States(new StateOperands(k, v, initialState, table, chunkStates, finalState, size, Reverse: false,
            bounds));
        launch.Causal(new CausalOperands(q, k, v, chunkStates, false, table, output, size, Reverse: false, bounds));
    }

    /// <summary>The backward pass, with the optional device decay table, chunk-state workspace and token bounds of
    /// <see cref="Forward(Tensor, Tensor, Tensor, DecaySchedule, int, Tensor, Tensor?, Tensor?, RetentionLaunch?, Tensor?, Tensor?, IndexTensor?)"/>.</summary>
    internal static void Backward(Tensor q, Tensor k, Tensor v, DecaySchedule decay, int chunkSize,
        Tensor? initialState, Tensor? dOutput, Tensor? dFinalState, Tensor dq, Tensor dk, Tensor dv,
        Tensor? dInitialState, RetentionLaunch? launch, Tensor? table = null, Tensor? workspace = null,
        IndexTensor? bounds = null)
    {
        var shape = RetentionChecks.Inputs(q, k, v, decay);
        RetentionChecks.ChunkSize(chunkSize);
        RetentionChecks.Backward(shape, q, k, v, initialState, dOutput, dFinalState, dq, dk, dv, dInitialState);

        var device = q.Device;
        launch ??= RetentionLaunch.For(device);
        var size = Math.Min(chunkSize, shape.SeqLen);
        using var uploaded = table is null ? decay.Upload(device) : null;
        table ??= uploaded!;
        using var zeros = dOutput is null ? Tensor.Zeros(device, shape.ValueShape) : null;
        var dO = dOutput ?? zeros!;
        // One buffer serves twice: first the recomputed states S_c (for dq), then the state gradients leaving each
        // chunk (for dk, dv), so the backward pass holds one state per chunk, like the forward pass.
        using var owned = Fits(workspace, shape, size) ? null : ChunkStates(shape, size, device);
        var chunkStates = owned ?? View(workspace!, shape, size);
        launch.States(new StateOperands(k, v, initialState, table, chunkStates, null, size, Reverse: false, bounds));
        launch.Causal(new CausalOperands(dO, v, k, chunkStates, true, table, dq, size, Reverse: false, bounds));
        launch.States(new StateOperands(q, dO, dFinalState, table, chunkStates, dInitialState, size, Reverse: true,
            bounds));
        launch.Causal(new CausalOperands(v, dO, q, chunkStates, true, table, dk, size, Reverse: true, bounds));
        launch.Causal(new CausalOperands(k, q, dO, chunkStates, false, table, dv, size, Reverse: true, bounds));
    }

    private static Tensor ChunkStates(RetentionShape shape, int chunkSize, Devices.RetNetDevice device) =>
        Tensor.Uninitialized(device, ChunkStateShape(shape, chunkSize));

    /// <summary>[B, H, ⌈T/C⌉, Dk, Dv]: one state per chunk.</summary>
    internal static int[] ChunkStateShape(RetentionShape shape, int chunkSize) =>
        [shape.Batch, shape.Heads, shape.ChunkCount(chunkSize), shape.KeyDim, shape.ValueDim];

    private static bool Fits(Tensor? workspace, RetentionShape shape, int chunkSize) =>
        workspace is not null && workspace.Length >= ChunkStateShape(shape, chunkSize).Aggregate(1L, (a, b) => a * b);

    private static Tensor View(Tensor workspace, RetentionShape shape, int chunkSize)
    {
        var dims = ChunkStateShape(shape, chunkSize);
        var length = dims.Aggregate(1, (a, b) => a * b);
        return workspace.Reshape(workspace.Length).Slice(0, length).Reshape(dims);
    }
}
