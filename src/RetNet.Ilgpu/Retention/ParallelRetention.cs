using RetNet.Ilgpu.Tensors;

namespace RetNet.Ilgpu.Retention;

/// <summary>
/// The parallel form of retention, O = ((Q Kᵀ) ⊙ D) V + the initial-state term, with D[t, j] = γ^(t−j) for j ≤ t: the
/// quadratic form, exact for any T, computed tile by tile without ever holding the T × T scores or the decay matrix
/// (O(T²) time, O(T) memory). Layout: q, k [B, T, H, Dk]; v, o [B, T, H, Dv]; states [B, H, Dk, Dv]; all fp32.
/// </summary>
public static class ParallelRetention
{
    /// <summary>
    /// output[b, t, h] = Σ_{j≤t} γ_h^(t−j) (q_t·k_j) v_j + γ_h^(t+1) q_t S_0, and optionally the final state
    /// S_T = γ^T S_0 + Σ_j γ^(T−1−j) k_jᵀ v_j.
    /// </summary>
    /// <param name="q">Queries [B, T, H, Dk].</param>
    /// <param name="k">Keys [B, T, H, Dk].</param>
    /// <param name="v">Values [B, T, H, Dv].</param>
    /// <param name="decay">γ per head (H values).</param>
    /// <param name="output">Written: o [B, T, H, Dv].</param>
    /// <param name="initialState">S_0 [B, H, Dk, Dv], the state before token 0 (e.g. a carried prefix); null means zeros.</param>
    /// <param name="finalState">Written when given: S_T [B, H, Dk, Dv]. May be <paramref name="initialState"/> itself
    /// (the state advances in place).</param>
    /// <exception cref="ArgumentException">A shape, the head count of <paramref name="decay"/>, a device or an aliasing
    /// of outputs and inputs is wrong; the message names the argument and the expected and actual shape.</exception>
    public static void Forward(Tensor q, Tensor k, Tensor v, DecaySchedule decay, Tensor output,
        Tensor? initialState = null, Tensor? finalState = null) =>
        Forward(q, k, v, decay, output, initialState, finalState, launch: null);

    /// <summary>
    /// Gradients of <see cref="Forward(Tensor, Tensor, Tensor, DecaySchedule, Tensor, Tensor?, Tensor?)"/> for a loss
    /// with gradient dOutput on the output and dFinalState on the final state (either absent means zero).
    /// </summary>
    /// <param name="q">Queries [B, T, H, Dk] of the forward pass.</param>
    /// <param name="k">Keys [B, T, H, Dk].</param>
    /// <param name="v">Values [B, T, H, Dv].</param>
    /// <param name="decay">γ per head.</param>
    /// <param name="initialState">S_0 of the forward pass, or null for zeros.</param>
    /// <param name="dOutput">∂L/∂o [B, T, H, Dv], or null when the loss does not depend on the output.</param>
    /// <param name="dFinalState">∂L/∂S_T [B, H, Dk, Dv], or null when the loss does not depend on the final state.</param>
    /// <param name="dq">Written: ∂L/∂q [B, T, H, Dk].</param>
    /// <param name="dk">Written: ∂L/∂k [B, T, H, Dk].</param>
    /// <param name="dv">Written: ∂L/∂v [B, T, H, Dv].</param>
    /// <param name="dInitialState">Written when given: ∂L/∂S_0 [B, H, Dk, Dv]. May be <paramref name="dFinalState"/>
    /// itself.</param>
    /// <exception cref="ArgumentException">A shape, the head count of <paramref name="decay"/>, a device or an aliasing
    /// is wrong.</exception>
    public static void Backward(Tensor q, Tensor k, Tensor v, DecaySchedule decay, Tensor? initialState,
        Tensor? dOutput, Tensor? dFinalState, Tensor dq, Tensor dk, Tensor dv, Tensor? dInitialState = null) =>
        Backward(q, k, v, decay, initialState, dOutput, dFinalState, dq, dk, dv, dInitialState, launch: null);

    /// <summary>
    /// <see cref="Forward(Tensor, Tensor, Tensor, DecaySchedule, Tensor, Tensor?, Tensor?)"/> over documents packed
    /// into the rows (<see cref="PackedSequences"/>): D[t, j] = 0 when t and j are in different documents, so each
    /// document's output equals running it alone. The initial state belongs to each row's first document and the
    /// final state is each row's last document's.
    /// </summary>
    /// <param name="q">Queries [B, T, H, Dk].</param>
    /// <param name="k">Keys [B, T, H, Dk].</param>
    /// <param name="v">Values [B, T, H, Dv].</param>
    /// <param name="decay">γ per head.</param>
    /// <param name="cuSeqlens">Document offsets into the flattened B·T tokens (fla's cu_seqlens).</param>
    /// <param name="output">Written: o [B, T, H, Dv].</param>
    /// <param name="initialState">S_0 [B, H, Dk, Dv] of each row's first document; null means zeros.</param>
    /// <param name="finalState">Written when given: the state after each row's last document.</param>
    /// <exception cref="ArgumentException">A shape, a device or an aliasing is wrong, or <paramref name="cuSeqlens"/>
    /// does not start at 0, increase strictly, end at B·T and hold every row start.</exception>
    public static void ForwardPacked(Tensor q, Tensor k, Tensor v, DecaySchedule decay, IReadOnlyList<int> cuSeqlens,
        Tensor output, Tensor? initialState = null, Tensor? finalState = null)
    {
        var shape = RetentionChecks.Inputs(q, k, v, decay);
        RetentionChecks.ForwardOutputs(shape, q, k, v, output, initialState, finalState);
        using var bounds = PackedSequences.Upload(q.Device, cuSeqlens, shape.Batch, shape.SeqLen, nameof(cuSeqlens));
        Forward(q, k, v, decay, output, initialState, finalState, launch: null, table: null, bounds);
    }

    /// <summary>
    /// Gradients of <see cref="ForwardPacked"/>: no gradient crosses a document boundary.
    /// </summary>
    /// <param name="q">Queries [B, T, H, Dk] of the forward pass.</param>
    /// <param name="k">Keys [B, T, H, Dk].</param>
    /// <param name="v">Values [B, T, H, Dv].</param>
    /// <param name="decay">γ per head.</param>
    /// <param name="cuSeqlens">The document offsets of the forward pass.</param>
    /// <param name="initialState">S_0 of the forward pass, or null for zeros.</param>
    /// <param name="dOutput">∂L/∂o [B, T, H, Dv], or null.</param>
    /// <param name="dFinalState">∂L/∂S_T [B, H, Dk, Dv], or null.</param>
    /// <param name="dq">Written: ∂L/∂q [B, T, H, Dk].</param>
    /// <param name="dk">Written: ∂L/∂k [B, T, H, Dk].</param>
    /// <param name="dv">Written: ∂L/∂v [B, T, H, Dv].</param>
    /// <param name="dInitialState">Written when given: ∂L/∂S_0 [B, H, Dk, Dv].</param>
    /// <exception cref="ArgumentException">A shape, a device or an aliasing is wrong, or <paramref name="cuSeqlens"/>
    /// is not valid for q's [B, T].</exception>
    public static void BackwardPacked(Tensor q, Tensor k, Tensor v, DecaySchedule decay, IReadOnlyList<int> cuSeqlens,
        Tensor? initialState, Tensor? dOutput, Tensor? dFinalState, Tensor dq, Tensor dk, Tensor dv,
        Tensor? dInitialState = null)
    {
        var shape = RetentionChecks.Inputs(q, k, v, decay);
        RetentionChecks.Backward(shape, q, k, v, initialState, dOutput, dFinalState, dq, dk, dv, dInitialState);
        using var bounds = PackedSequences.Upload(q.Device, cuSeqlens, shape.Batch, shape.SeqLen, nameof(cuSeqlens));
        Backward(q, k, v, decay, initialState, dOutput, dFinalState, dq, dk, dv, dInitialState, launch: null,
            table: null, bounds);
    }

    /// <summary>The forward pass with an optional device decay table (<paramref name="table"/>, as
    /// <see cref="DecaySchedule.Upload"/> writes it), so that a model's call uploads nothing, and optional token bounds
    /// of packed documents (<see cref="PackedSequences.TokenBounds"/>, [B·T, 2]).</summary>
    internal static void Forward(Tensor q, Tensor k, Tensor v, DecaySchedule decay, Tensor output,
        Tensor? initialState, Tensor? finalState, RetentionLaunch? launch, Tensor? table = null,
        IndexTensor? bounds = null)
    {
        var shape = RetentionChecks.Inputs(q, k, v, decay);
        RetentionChecks.ForwardOutputs(shape, q, k, v, output, initialState, finalState);

        var device = q.Device;
        launch ??= RetentionLaunch.For(device);
        using var uploaded = table is null ? decay.Upload(device) : null;
        table ??= uploaded!;
        var seqLen = shape.SeqLen;
        launch.Causal(new CausalOperands(q, k, v, initialState, false, table, output, seqLen, Reverse: false, bounds));
        // After the output: the final state may overwrite the initial state in place.
        if (finalState is not null)
            launch.States(new StateOperands(k, v, initialState, table, null, finalState, seqLen, Reverse: false,
                bounds));
    }

    /// <summary>The backward pass with the optional device decay table and token bounds of <see cref="Forward(Tensor,
    /// Tensor, Tensor, DecaySchedule, Tensor, Tensor?, Tensor?, RetentionLaunch?, Tensor?, IndexTensor?)"/>.</summary>
    internal static void Backward(Tensor q, Tensor k, Tensor v, DecaySchedule decay, Tensor? initialState,
        Tensor? dOutput, Tensor? dFinalState, Tensor dq, Tensor dk, Tensor dv, Tensor? dInitialState,
        RetentionLaunch? launch, Tensor? table = null, IndexTensor? bounds = null)
    {
        var shape = RetentionChecks.Inputs(q, k, v, decay);
        RetentionChecks.Backward(shape, q, k, v, initialState, dOutput, dFinalState, dq, dk, dv, dInitialState);

        var device = q.Device;
        launch ??= RetentionLaunch.For(device);
        using var uploaded = table is null ? decay.Upload(device) : null;
        table ??= uploaded!;
        using var zeros = dOutput is null ? Tensor.Zeros(device, shape.ValueShape) : null;
        var dO = dOutput ?? zeros!;
        var seqLen = shape.SeqLen;
        launch.Causal(new CausalOperands(dO, v, k, initialState, true, table, dq, seqLen, Reverse: false, bounds));
        launch.Causal(new CausalOperands(v, dO, q, dFinalState, true, table, dk, seqLen, Reverse: true, bounds));
        launch.Causal(new CausalOperands(k, q, dO, dFinalState, false, table, dv, seqLen, Reverse: true, bounds));
        // Last: dInitialState may overwrite dFinalState in place.
        if (dInitialState is not null)
            launch.States(new StateOperands(q, dO, dFinalState, table, null, dInitialState, seqLen, Reverse: true,
                bounds));
    }
}
