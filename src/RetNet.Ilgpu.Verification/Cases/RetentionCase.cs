using RetNet.Ilgpu.Devices;
using RetNet.Ilgpu.Retention;
using RetNet.Ilgpu.Tensors;

namespace RetNet.Ilgpu.Verification.Cases;

/// <summary>
/// One random retention problem on the host: q, k, v (and S_0, dO, dS_T when asked) drawn from one seed, and the
/// double-precision references of the parallel form's forward and backward pass, computed once on first use. The one
/// generator behind <c>retnet verify</c>'s retention checks and the retention tests and properties.
/// </summary>
public sealed class RetentionCase
{
    private readonly Lazy<RetentionReferenceOutput> forward;
    private readonly Lazy<RetentionReferenceGradients> backward;

    /// <summary>
    /// Draws q (seed), k (seed + 1), v (seed + 2) and S_0 (seed + 3) uniformly in [−scale, scale), dO (seed + 4) and
    /// dS_T (seed + 5) in [−1, 1), each only when asked.
    /// </summary>
    /// <param name="shape">B, T, H, Dk, Dv.</param>
    /// <param name="decay">γ per head.</param>
    /// <param name="seed">The first seed.</param>
    /// <param name="scale">The magnitude of q, k, v and S_0.</param>
    /// <param name="withInitialState">Whether there is an S_0.</param>
    /// <param name="withOutputGradient">Whether there is a dO.</param>
    /// <param name="withFinalStateGradient">Whether there is a dS_T.</param>
    public RetentionCase(RetentionShape shape, DecaySchedule decay, int seed, float scale = 1f,
        bool withInitialState = true, bool withOutputGradient = true, bool withFinalStateGradient = true)
    {
        ArgumentNullException.ThrowIfNull(decay);
        Shape = shape;
        Decay = decay;
        Q = CaseInputs.Uniform(seed, shape.QueryLength, scale);
        K = CaseInputs.Uniform(seed + 1, shape.QueryLength, scale);
        V = CaseInputs.Uniform(seed + 2, shape.ValueLength, scale);
        InitialState = withInitialState ? CaseInputs.Uniform(seed + 3, shape.StateLength, scale) : null;
        OutputGradient = withOutputGradient ? CaseInputs.Uniform(seed + 4, shape.ValueLength) : null;
        FinalStateGradient = withFinalStateGradient ? CaseInputs.Uniform(seed + 5, shape.StateLength) : null;
        forward = new(() => RetentionReference.Parallel(shape, decay, Q, K, V, InitialState));
        backward = new(() => RetentionReference.ParallelBackward(
            shape, decay, Q, K, V, InitialState, OutputGradient, FinalStateGradient));
    }

    /// <summary>The sizes.</summary>
    public RetentionShape Shape { get; }

    /// <summary>γ per head.</summary>
    public DecaySchedule Decay { get; }

    /// <summary>Queries [B, T, H, Dk].</summary>
    public float[] Q { get; }

    /// <summary>Keys [B, T, H, Dk].</summary>
    public float[] K { get; }

    /// <summary>Values [B, T, H, Dv].</summary>
    public float[] V { get; }

    /// <summary>S_0 [B, H, Dk, Dv], or null.</summary>
    public float[]? InitialState { get; }

    /// <summary>dO [B, T, H, Dv], or null.</summary>
    public float[]? OutputGradient { get; }

    /// <summary>dS_T [B, H, Dk, Dv], or null.</summary>
    public float[]? FinalStateGradient { get; }

    /// <summary>The double-precision quadratic-form forward pass.</summary>
    public RetentionReferenceOutput Reference => forward.Value;

    /// <summary>The double-precision quadratic-form backward pass.</summary>
    public RetentionReferenceGradients ReferenceGradients => backward.Value;

    /// <summary>The inputs on <paramref name="device"/> (an optional one only when drawn); the caller disposes them.</summary>
    public RetentionTensors Upload(RetNetDevice device) => new(
        Tensor.FromHost(device, Q, Shape.QueryShape), Tensor.FromHost(device, K, Shape.QueryShape),
        Tensor.FromHost(device, V, Shape.ValueShape),
        InitialState is null ? null : Tensor.FromHost(device, InitialState, Shape.StateShape),
        OutputGradient is null ? null : Tensor.FromHost(device, OutputGradient, Shape.ValueShape),
        FinalStateGradient is null ? null : Tensor.FromHost(device, FinalStateGradient, Shape.StateShape));

    /// <summary>Zeroed gradient outputs dq, dk, dv, dS_0 on <paramref name="device"/>; the caller disposes them.</summary>
    public RetentionGradientTensors NewGradients(RetNetDevice device) => new(
        Tensor.Zeros(device, Shape.QueryShape), Tensor.Zeros(device, Shape.QueryShape),
        Tensor.Zeros(device, Shape.ValueShape), Tensor.Zeros(device, Shape.StateShape));

    /// <inheritdoc/>
    public override string ToString() =>
        $"{Shape} {Decay} S0={(InitialState is null ? "no" : "yes")} dO={(OutputGradient is null ? "no" : "yes")} " +
        $"dS_T={(FinalStateGradient is null ? "no" : "yes")}";
}

/// <summary>The inputs of a <see cref="RetentionCase"/> on a device.</summary>
/// <param name="Q">q [B, T, H, Dk].</param>
/// <param name="K">k [B, T, H, Dk].</param>
/// <param name="V">v [B, T, H, Dv].</param>
/// <param name="InitialState">S_0 [B, H, Dk, Dv], or null.</param>
/// <param name="OutputGradient">dO [B, T, H, Dv], or null.</param>
/// <param name="FinalStateGradient">dS_T [B, H, Dk, Dv], or null.</param>
public sealed record RetentionTensors(Tensor Q, Tensor K, Tensor V, Tensor? InitialState, Tensor? OutputGradient,
    Tensor? FinalStateGradient) : IDisposable
{
    /// <inheritdoc/>
    public void Dispose()
    {
        foreach (var tensor in new[] { Q, K, V, InitialState, OutputGradient, FinalStateGradient })
            tensor?.Dispose();
    }
}

/// <summary>Gradient outputs of one retention backward pass.</summary>
/// <param name="Dq">dq [B, T, H, Dk].</param>
/// <param name="Dk">dk [B, T, H, Dk].</param>
/// <param name="Dv">dv [B, T, H, Dv].</param>
/// <param name="DInitialState">dS_0 [B, H, Dk, Dv].</param>
public sealed record RetentionGradientTensors(Tensor Dq, Tensor Dk, Tensor Dv, Tensor DInitialState) : IDisposable
{
    /// <inheritdoc/>
    public void Dispose()
    {
        foreach (var tensor in new[] { Dq, Dk, Dv, DInitialState })
            tensor.Dispose();
    }
}
