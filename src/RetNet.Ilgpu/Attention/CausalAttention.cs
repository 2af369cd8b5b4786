using ILGPU;
using ILGPU.Runtime;
using RetNet.Ilgpu.Kernels;
using RetNet.Ilgpu.Tensors;

namespace RetNet.Ilgpu.Attention;

/// <summary>
/// Causal multi-head softmax attention, the Transformer baseline of the library (docs/ATTENTION.md):
/// o_i = Σ_{j≤i} softmax_j(s·q_i·k_j) v_j per batch b and head h. Memory-efficient: the forward pass keeps a running
/// maximum and sum per query row (online softmax) and the backward pass recomputes the probabilities from the stored
/// log-sum-exp, so nothing of size T × T is ever held (O(T²) time, O(T) memory beyond inputs and outputs). For
/// decoding, <see cref="AppendToCache(Tensor, Tensor, IndexTensor)"/> grows a KV cache and
/// <see cref="Step(Tensor, Tensor, Tensor, IndexTensor, float, Tensor)"/> attends one new query to it.
/// Layout: q, k [B, T, H, Dk]; v, o [B, T, H, Dv]; log-sum-exp [B, H, T]; caches [B, H, capacity, ·]; all fp32.
/// </summary>
public static class CausalAttention
{
    /// <summary>The usual logit scale s = 1/√Dk.</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="keyDim"/> is not positive.</exception>
    public static float DefaultScale(int keyDim)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(keyDim, 1);
        return (float)(1 / Math.Sqrt(keyDim));
    }

    /// <summary>
    /// output[b, i, h] = Σ_{j≤i} P_ij v_j with P_ij = exp(s·q_i·k_j − L_i) and L_i = log Σ_{j≤i} exp(s·q_i·k_j), the
    /// per-row log-sum-exp, written when asked (the backward pass needs it). T = 0 does nothing.
    /// </summary>
    /// <param name="q">Queries [B, T, H, Dk].</param>
    /// <param name="k">Keys [B, T, H, Dk].</param>
    /// <param name="v">Values [B, T, H, Dv].</param>
    /// <param name="scale">s, the logit scale: <see cref="DefaultScale"/>(Dk) for standard attention.</param>
    /// <param name="output">Written: o [B, T, H, Dv].</param>
    /// <param name="logSumExp">Written when given: L [B, H, T].</param>
    /// <exception cref="ArgumentException">A shape, a device or an aliasing of outputs and inputs is wrong; the message
    /// names the argument and the expected and actual shape.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="scale"/> is not finite.</exception>
    public static void Forward(Tensor q, Tensor k, Tensor v, float scale, Tensor output, Tensor? logSumExp = null) =>
        Forward(q, k, v, scale, output, logSumExp, launch: null);

    /// <summary>
    /// Gradients of <see cref="Forward(Tensor, Tensor, Tensor, float, Tensor, Tensor?)"/> for a loss with gradient
    /// dOutput on the output, FlashAttention-2 style: D_i = dO_i·o_i, P recomputed from L, dS = P ⊙ (dO·vᵀ − D),
    /// dq = s·dS·K, dk = s·dSᵀ·Q, dv = Pᵀ·dO (docs/ATTENTION.md §3). The gradients are overwritten, not accumulated.
    /// T = 0 does nothing.
    /// </summary>
    /// <param name="q">Queries [B, T, H, Dk] of the forward pass.</param>
    /// <param name="k">Keys [B, T, H, Dk].</param>
    /// <param name="v">Values [B, T, H, Dv].</param>
    /// <param name="scale">The forward pass's s.</param>
    /// <param name="output">The forward pass's o [B, T, H, Dv].</param>
    /// <param name="logSumExp">The forward pass's L [B, H, T].</param>
    /// <param name="dOutput">∂loss/∂o [B, T, H, Dv].</param>
    /// <param name="dq">Written: ∂loss/∂q [B, T, H, Dk].</param>
    /// <param name="dk">Written: ∂loss/∂k [B, T, H, Dk].</param>
    /// <param name="dv">Written: ∂loss/∂v [B, T, H, Dv].</param>
    /// <exception cref="ArgumentException">A shape, a device or an aliasing is wrong.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="scale"/> is not finite.</exception>
    public static void Backward(Tensor q, Tensor k, Tensor v, float scale, Tensor output, Tensor logSumExp,
        Tensor dOutput, Tensor dq, Tensor dk, Tensor dv) =>
        Backward(q, k, v, scale, output, logSumExp, dOutput, dq, dk, dv, launch: null);

    /// <summary>
    /// One decode step: output[b, 0, h] = Σ_{j&lt;n_b} softmax_j(s·q_b,h·K[b, h, j]) V[b, h, j] over the first
    /// n_b = lengths[b] cached positions, which include the new token's own key and value (append them first). Lengths
    /// stay on the device and are not read back, so a step never waits on the host: a length above the capacity is
    /// read as the capacity, and a length of 0 gives a zero output. A barrier-free kernel with one thread per (b, h) on
    /// every device but the host backend, which runs it as host SIMD code.
    /// </summary>
    /// <param name="q">The new queries [B, 1, H, Dk].</param>
    /// <param name="keyCache">Keys [B, H, capacity, Dk].</param>
    /// <param name="valueCache">Values [B, H, capacity, Dv].</param>
    /// <param name="lengths">n_b per sequence, an index tensor [B].</param>
    /// <param name="scale">s, as in the forward pass.</param>
    /// <param name="output">Written: o [B, 1, H, Dv].</param>
    /// <exception cref="ArgumentException">A shape, a device or an aliasing is wrong.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="scale"/> is not finite.</exception>
    public static void Step(Tensor q, Tensor keyCache, Tensor valueCache, IndexTensor lengths, float scale,
        Tensor output) =>
        Step(q, keyCache, valueCache, lengths, scale, output, launch: null);

    /// <summary>
    /// <see cref="Step(Tensor, Tensor, Tensor, IndexTensor, float, Tensor)"/> with the lengths on the host, checked:
    /// every length must lie in [0, capacity]. Uploads the lengths and waits for the step.
    /// </summary>
    /// <exception cref="ArgumentException">A shape, a device or an aliasing is wrong, or a length is negative or
    /// exceeds the cache's capacity.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="scale"/> is not finite.</exception>
    public static void Step(Tensor q, Tensor keyCache, Tensor valueCache, IReadOnlyList<int> lengths, float scale,
        Tensor output) =>
        Step(q, keyCache, valueCache, lengths, scale, output, launch: null);

    /// <summary>
    /// Writes x [B, T, H, D] into a cache [B, H, capacity, D] at positions lengths[b] … lengths[b] + T − 1 of each
    /// sequence b, the keys or the values of T new tokens. The lengths are not changed (the caller advances them by T)
    /// and not read back: positions outside the capacity are dropped on the device.
    /// </summary>
    /// <param name="x">New keys [B, T, H, Dk] or values [B, T, H, Dv].</param>
    /// <param name="cache">The cache [B, H, capacity, D] written at the new positions.</param>
    /// <param name="lengths">Tokens already cached per sequence, an index tensor [B].</param>
    /// <exception cref="ArgumentException">A shape, a device or an aliasing is wrong.</exception>
    public static void AppendToCache(Tensor x, Tensor cache, IndexTensor lengths) =>
        AppendToCache(x, cache, lengths, launch: null);

    /// <summary>
    /// <see cref="AppendToCache(Tensor, Tensor, IndexTensor)"/> with the lengths on the host, checked: every
    /// lengths[b] + T must fit the capacity. Uploads the lengths and waits for the copy.
    /// </summary>
    /// <exception cref="ArgumentException">A shape, a device or an aliasing is wrong, a length is negative, or the new
    /// tokens would overflow the cache's capacity.</exception>
    public static void AppendToCache(Tensor x, Tensor cache, IReadOnlyList<int> lengths) =>
        AppendToCache(x, cache, lengths, launch: null);

    internal static void Step(Tensor q, Tensor keyCache, Tensor valueCache, IndexTensor lengths, float scale,
        Tensor output, AttentionLaunch? launch)
    {
        CheckStep(q, keyCache, valueCache, scale, output);
        AttentionChecks.Lengths(lengths, q);
        (launch ?? AttentionLaunch.For(q.Device)).Step(new StepOperands(q, keyCache, valueCache, lengths, scale,
            output));
    }

    internal static void Step(Tensor q, Tensor keyCache, Tensor valueCache, IReadOnlyList<int> lengths, float scale,
        Tensor output, AttentionLaunch? launch)
    {
        CheckStep(q, keyCache, valueCache, scale, output);
        AttentionChecks.Lengths(lengths, q.Dim(0), keyCache.Dim(2), adding: 0);
        using var uploaded = IndexTensor.FromHost(q.Device, lengths.ToArray(), lengths.Count);
        (launch ?? AttentionLaunch.For(q.Device)).Step(new StepOperands(q, keyCache, valueCache, uploaded, scale,
            output));
        q.Device.Synchronize();
    }

    internal static void AppendToCache(Tensor x, Tensor cache, IndexTensor lengths, AttentionLaunch? launch)
    {
        CheckAppend(x, cache);
        AttentionChecks.Lengths(lengths, x);
        if (x.Length > 0 && cache.Dim(2) > 0)
            (launch ?? AttentionLaunch.For(x.Device)).Append(x, cache, lengths);
    }

    internal static void AppendToCache(Tensor x, Tensor cache, IReadOnlyList<int> lengths, AttentionLaunch? launch)
    {
        CheckAppend(x, cache);
        AttentionChecks.Lengths(lengths, x.Dim(0), cache.Dim(2), adding: x.Dim(1));
        if (x.Length == 0 || cache.Dim(2) == 0)
            return;
        using var uploaded = IndexTensor.FromHost(x.Device, lengths.ToArray(), lengths.Count);
        (launch ?? AttentionLaunch.For(x.Device)).Append(x, cache, uploaded);
        x.Device.Synchronize();
    }

    internal static void Forward(Tensor q, Tensor k, Tensor v, float scale, Tensor output, Tensor? logSumExp,
        AttentionLaunch? launch)
    {
        var shape = AttentionChecks.Inputs(q, k, v, scale);
        ShapeCheck.Required(output, nameof(output), q, shape.ValueShape);
        if (logSumExp is not null)
            ShapeCheck.Required(logSumExp, nameof(logSumExp), q, shape.RowShape);
        ShapeCheck.NoAliasing([(output, nameof(output)), (logSumExp, nameof(logSumExp))],
            [(q, nameof(q)), (k, nameof(k)), (v, nameof(v))]);
        if (shape.SeqLen == 0)
            return;

        launch ??= AttentionLaunch.For(q.Device);
        launch.Forward(new AttentionOperands(q, k, v, output, logSumExp, scale));
    }

    internal static void Backward(Tensor q, Tensor k, Tensor v, float scale, Tensor output, Tensor logSumExp,
        Tensor dOutput, Tensor dq, Tensor dk, Tensor dv, AttentionLaunch? launch)
    {
        var shape = AttentionChecks.Inputs(q, k, v, scale);
        ShapeCheck.Required(output, nameof(output), q, shape.ValueShape);
        ShapeCheck.Required(logSumExp, nameof(logSumExp), q, shape.RowShape);
        ShapeCheck.Required(dOutput, nameof(dOutput), q, shape.ValueShape);
        ShapeCheck.Required(dq, nameof(dq), q, shape.QueryShape);
        ShapeCheck.Required(dk, nameof(dk), q, shape.QueryShape);
        ShapeCheck.Required(dv, nameof(dv), q, shape.ValueShape);
        ShapeCheck.NoAliasing([(dq, nameof(dq)), (dk, nameof(dk)), (dv, nameof(dv))],
            [(q, nameof(q)), (k, nameof(k)), (v, nameof(v)), (output, nameof(output)),
             (logSumExp, nameof(logSumExp)), (dOutput, nameof(dOutput))]);
        if (shape.SeqLen == 0)
            return;

        var device = q.Device;
        launch ??= AttentionLaunch.For(device);
        // D [B, H, T]: one value per query row, the only temporary of the backward pass.
        using var deltas = Tensor.Uninitialized(device, shape.RowShape);
        var problem = new AttentionProblem
        {
            Heads = shape.Heads,
            SeqLen = shape.SeqLen,
            KeyDim = shape.KeyDim,
            ValueDim = shape.ValueDim,
            Scale = scale,
        };
        var rowDeltas = device.Kernel(AttentionKernels.RowDeltas, accelerator =>
            accelerator.LoadAutoGroupedKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>,
                AttentionProblem, Spread>(AttentionKernels.RowDeltas));
        var spread = Kernels.Launch.Spread(device, shape.RowCount);
        rowDeltas(device.Stream, spread.Threads, output.View, dOutput.View, deltas.View, problem, spread);
        launch.Gradients(new AttentionGradientOperands(q, k, v, dOutput, logSumExp, deltas, dq, dk, dv, scale));
    }

    private static void CheckStep(Tensor q, Tensor keyCache, Tensor valueCache, float scale, Tensor output)
    {
        ArgumentNullException.ThrowIfNull(q);
        ShapeCheck.Rank(q, nameof(q), 4);
        ShapeCheck.Expect(q, nameof(q), ShapeCheck.Any, 1, ShapeCheck.Any, ShapeCheck.Any);
        if (q.Length == 0)
            throw new ArgumentException(
                $"Argument 'q' has shape {ShapeCheck.Format(q.Shape)}; expected [B, 1, H, Dk] with B, H, Dk ≥ 1.",
                nameof(q));
        var capacity = AttentionChecks.Cache(keyCache, nameof(keyCache), q, q.Dim(3));
        ArgumentNullException.ThrowIfNull(valueCache);
        ShapeCheck.SameDevice(q.Device, nameof(valueCache), valueCache);
        ShapeCheck.Expect(valueCache, nameof(valueCache), q.Dim(0), q.Dim(2), capacity, ShapeCheck.Any);
        if (valueCache.Dim(3) == 0)
            throw new ArgumentException(
                $"Argument 'valueCache' has shape {ShapeCheck.Format(valueCache.Shape)}; expected [B, H, capacity, Dv] " +
                "with Dv ≥ 1.", nameof(valueCache));
        AttentionChecks.Scale(scale);
        ShapeCheck.Required(output, nameof(output), q, [q.Dim(0), 1, q.Dim(2), valueCache.Dim(3)]);
        ShapeCheck.NoAliasing([(output, nameof(output))],
            [(q, nameof(q)), (keyCache, nameof(keyCache)), (valueCache, nameof(valueCache))]);
    }

    private static void CheckAppend(Tensor x, Tensor cache)
    {
        ArgumentNullException.ThrowIfNull(x);
        ShapeCheck.Rank(x, nameof(x), 4);
        AttentionChecks.Cache(cache, nameof(cache), x, x.Dim(3));
        ShapeCheck.Distinct(cache, nameof(cache), x, nameof(x));
    }
}
