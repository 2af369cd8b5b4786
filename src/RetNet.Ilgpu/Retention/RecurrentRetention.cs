using RetNet.Ilgpu.Tensors;

namespace RetNet.Ilgpu.Retention;

/// <summary>
/// The recurrent form of retention: S_t = γ S_(t−1) + k_tᵀ v_t, o_t = q_t S_t, one token after another, for decoding.
/// Each call advances a caller-owned state [B, H, Dk, Dv] in place (one state per sequence of the batch); T = 1 is the
/// decoding step and costs O(Dk·Dv) per head whatever the position. Layout: q, k [B, T, H, Dk]; v, o [B, T, H, Dv].
/// </summary>
public static class RecurrentRetention
{
    /// <summary>
    /// Runs T ≥ 1 tokens through the recurrence: for each t, state ← γ_h state + k_tᵀ v_t and o_t = q_t state.
    /// A state of zeros starts a sequence; the state a chunkwise or parallel prefill returns continues one.
    /// </summary>
    /// <param name="q">Queries [B, T, H, Dk].</param>
    /// <param name="k">Keys [B, T, H, Dk].</param>
    /// <param name="v">Values [B, T, H, Dv].</param>
    /// <param name="decay">γ per head (H values).</param>
    /// <param name="output">Written: o [B, T, H, Dv].</param>
    /// <param name="state">Read and written: the state [B, H, Dk, Dv] before the first token, replaced by the state
    /// after the last.</param>
    /// <exception cref="ArgumentException">A shape, the head count of <paramref name="decay"/>, a device or an aliasing
    /// is wrong; the message names the argument and the expected and actual shape.</exception>
    public static void Forward(Tensor q, Tensor k, Tensor v, DecaySchedule decay, Tensor output, Tensor state) =>
        Forward(q, k, v, decay, output, state, launch: null);

    /// <summary>
    /// <see cref="Forward(Tensor, Tensor, Tensor, DecaySchedule, Tensor, Tensor)"/> over documents packed into the rows
    /// (<see cref="PackedSequences"/>): the state restarts from zeros at every document start after a row's first token,
    /// so each document's output equals running it alone. The given state continues each row's first document; the
    /// state left is each row's last document's.
    /// </summary>
    /// <param name="q">Queries [B, T, H, Dk].</param>
    /// <param name="k">Keys [B, T, H, Dk].</param>
    /// <param name="v">Values [B, T, H, Dv].</param>
    /// <param name="decay">γ per head.</param>
    /// <param name="cuSeqlens">Document offsets into the flattened B·T tokens (fla's cu_seqlens).</param>
    /// <param name="output">Written: o [B, T, H, Dv].</param>
    /// <param name="state">Read and written: the state [B, H, Dk, Dv] before each row's first document, replaced by
    /// the state after its last.</param>
    /// <exception cref="ArgumentException">A shape, a device or an aliasing is wrong, or <paramref name="cuSeqlens"/>
    /// is not valid for q's [B, T].</exception>
    public static void ForwardPacked(Tensor q, Tensor k, Tensor v, DecaySchedule decay, IReadOnlyList<int> cuSeqlens,
        Tensor output, Tensor state)
    {
        var shape = RetentionChecks.Inputs(q, k, v, decay);
        using var bounds = PackedSequences.Upload(q.Device, cuSeqlens, shape.Batch, shape.SeqLen, nameof(cuSeqlens));
        Forward(q, k, v, decay, output, state, launch: null, bounds: bounds);
    }

    /// <summary>
    /// <see cref="Forward(Tensor, Tensor, Tensor, DecaySchedule, Tensor, Tensor)"/> with an explicit launch
    /// configuration (null: the device's, <see cref="Devices.RetNetDevice.Backend{TOperator}"/>) and, optionally, an
    /// uploaded decay table and token bounds of packed documents.
    /// </summary>
    internal static void Forward(Tensor q, Tensor k, Tensor v, DecaySchedule decay, Tensor output, Tensor state,
        RetentionLaunch? launch, Tensor? table = null, IndexTensor? bounds = null)
    {
        var shape = RetentionChecks.Inputs(q, k, v, decay);
        ShapeCheck.Required(output, nameof(output), q, shape.ValueShape);
        ShapeCheck.Required(state, nameof(state), q, shape.StateShape);
        ShapeCheck.NoAliasing([(output, nameof(output)), (state, nameof(state))],
            [(q, nameof(q)), (k, nameof(k)), (v, nameof(v))]);

        var device = q.Device;
        launch ??= RetentionLaunch.For(device);
        using var uploaded = table is null ? decay.Upload(device) : null;
        launch.Recurrent(new RecurrentOperands(q, k, v, table ?? uploaded!, state, output, bounds));
    }
}
