using RetNet.Ilgpu.Kernels;
using static RetNet.Ilgpu.Kernels.ReferenceHeads;

namespace RetNet.Ilgpu.Retention;

/// <summary>Output [B, T, H, Dv] and final state [B, H, Dk, Dv] of a reference forward pass, in double precision.</summary>
/// <param name="Output">o, row-major [B, T, H, Dv].</param>
/// <param name="FinalState">S_T, row-major [B, H, Dk, Dv].</param>
public sealed record RetentionReferenceOutput(double[] Output, double[] FinalState);

/// <summary>Gradients of a reference backward pass, in double precision, each in the layout of its input.</summary>
/// <param name="QueryGradient">dq [B, T, H, Dk].</param>
/// <param name="KeyGradient">dk [B, T, H, Dk].</param>
/// <param name="ValueGradient">dv [B, T, H, Dv].</param>
/// <param name="InitialStateGradient">dS_0 [B, H, Dk, Dv].</param>
public sealed record RetentionReferenceGradients(
    double[] QueryGradient, double[] KeyGradient, double[] ValueGradient, double[] InitialStateGradient);

/// <summary>
/// Plain C# references of canonical retention in double precision (docs/MATH.md §1), in two independent forms: the
/// quadratic (parallel) form and the step-by-step recurrence, each forward and backward. The tests and properties
/// hold the kernels against them. Absent optional tensors (initial state, gradients) are zeros. With
/// <c>cuSeqlens</c> (<see cref="PackedSequences"/>) the documents packed into each row are independent (docs/MATH.md
/// §2, packed documents): a pair of tokens of different documents has decay 0, the recurrence restarts from zeros at
/// each document start after token 0, S_0 feeds each row's first document and S_T is its last document's.
/// </summary>
public static class RetentionReference
{
    /// <summary>
    /// o_t = Σ_{j≤t} γ^(t−j) (q_t·k_j) v_j + γ^(t+1) q_t S_0 and S_T = γ^T S_0 + Σ_j γ^(T−1−j) k_jᵀ v_j, term by term;
    /// packed, j runs over t's document only and S_0 reaches only the first document.
    /// </summary>
    public static RetentionReferenceOutput Parallel(RetentionShape shape, DecaySchedule decay,
        IReadOnlyList<float> q, IReadOnlyList<float> k, IReadOnlyList<float> v, IReadOnlyList<float>? initialState = null,
        IReadOnlyList<int>? cuSeqlens = null)
    {
        var p = new Problem(shape, decay, q, k, v, initialState, cuSeqlens);
        var (T, Dk, Dv) = (shape.SeqLen, shape.KeyDim, shape.ValueDim);
        var output = new double[shape.ValueLength];
        var final = new double[shape.StateLength];
        for (var b = 0; b < shape.Batch; b++)
        for (var h = 0; h < shape.Heads; h++)
        {
            var power = p.Powers(h);
            var s0 = p.StateIndex(b, h, 0, 0);
            for (var t = 0; t < T; t++)
            {
                var ot = p.ValueIndex(b, t, h);
                var qt = p.KeyIndex(b, t, h);
                var first = p.Start(b, t);
                for (var i = 0; i < Dk && first == 0; i++)
                for (var e = 0; e < Dv; e++)
                    output[ot + e] += power[t + 1] * p.Q[qt + i] * p.S0[s0 + i * Dv + e];
                for (var j = first; j <= t; j++)
                {
                    var score = power[t - j] * Dot(p.Q, qt, p.K, p.KeyIndex(b, j, h), Dk);
                    Axpy(score, p.V, p.ValueIndex(b, j, h), output, ot, Dv);
                }
            }
            var last = p.Start(b, T - 1);
            for (var i = 0; i < Dk; i++)
            for (var e = 0; e < Dv; e++)
            {
                var sum = last == 0 ? power[T] * p.S0[s0 + i * Dv + e] : 0;
                for (var j = last; j < T; j++)
                    sum += power[T - 1 - j] * p.K[p.KeyIndex(b, j, h) + i] * p.V[p.ValueIndex(b, j, h) + e];
                final[s0 + i * Dv + e] = sum;
            }
        }
        return new RetentionReferenceOutput(output, final);
    }

    /// <summary>S_t = γ S_(t−1) + k_tᵀ v_t (S_(−1) = S_0), o_t = q_t S_t, one token at a time; packed, S_(t−1) is
    /// read as zeros where a document starts at t &gt; 0.</summary>
    public static RetentionReferenceOutput Recurrent(RetentionShape shape, DecaySchedule decay,
        IReadOnlyList<float> q, IReadOnlyList<float> k, IReadOnlyList<float> v, IReadOnlyList<float>? initialState = null,
        IReadOnlyList<int>? cuSeqlens = null)
    {
        var p = new Problem(shape, decay, q, k, v, initialState, cuSeqlens);
        var (Dk, Dv) = (shape.KeyDim, shape.ValueDim);
        var output = new double[shape.ValueLength];
        var state = (double[])p.S0.Clone();
        for (var b = 0; b < shape.Batch; b++)
        for (var h = 0; h < shape.Heads; h++)
        {
            var gamma = decay.Gammas[h];
            var s = p.StateIndex(b, h, 0, 0);
            for (var t = 0; t < shape.SeqLen; t++)
            {
                var (qt, kt, vt) = (p.KeyIndex(b, t, h), p.KeyIndex(b, t, h), p.ValueIndex(b, t, h));
                if (p.Restarts(b, t))
                    Array.Clear(state, s, Dk * Dv);
                for (var i = 0; i < Dk; i++)
                for (var e = 0; e < Dv; e++)
                {
                    var cell = s + i * Dv + e;
                    state[cell] = gamma * state[cell] + p.K[kt + i] * p.V[vt + e];
                    output[vt + e] += p.Q[qt + i] * state[cell];
                }
            }
        }
        return new RetentionReferenceOutput(output, state);
    }

    /// <summary>
    /// Gradients of the quadratic form, term by term:
    /// dq_t = Σ_{j≤t} γ^(t−j) (dO_t·v_j) k_j + γ^(t+1) S_0 dO_t;
    /// dk_j = Σ_{t≥j} γ^(t−j) (dO_t·v_j) q_t + γ^(T−1−j) dS_T v_j;
    /// dv_j = Σ_{t≥j} γ^(t−j) (q_t·k_j) dO_t + γ^(T−1−j) dS_Tᵀ k_j;
    /// dS_0 = Σ_t γ^(t+1) q_tᵀ dO_t + γ^T dS_T. Packed, every sum runs within one document, S_0 and dS_0 touch only
    /// the first document and dS_T only the last.
    /// </summary>
    public static RetentionReferenceGradients ParallelBackward(RetentionShape shape, DecaySchedule decay,
        IReadOnlyList<float> q, IReadOnlyList<float> k, IReadOnlyList<float> v, IReadOnlyList<float>? initialState,
        IReadOnlyList<float>? dOutput, IReadOnlyList<float>? dFinalState, IReadOnlyList<int>? cuSeqlens = null)
    {
        var p = new Problem(shape, decay, q, k, v, initialState, cuSeqlens);
        var dO = Values(dOutput, shape.ValueLength, nameof(dOutput));
        var dST = Values(dFinalState, shape.StateLength, nameof(dFinalState));
        var (T, Dk, Dv) = (shape.SeqLen, shape.KeyDim, shape.ValueDim);
        var dq = new double[shape.QueryLength];
        var dk = new double[shape.QueryLength];
        var dv = new double[shape.ValueLength];
        var dS0 = new double[shape.StateLength];
        for (var b = 0; b < shape.Batch; b++)
        for (var h = 0; h < shape.Heads; h++)
        {
            var power = p.Powers(h);
            var s0 = p.StateIndex(b, h, 0, 0);
            var last = p.Start(b, T - 1);
            for (var t = 0; t < T; t++)
            {
                var (kt, vt) = (p.KeyIndex(b, t, h), p.ValueIndex(b, t, h));
                var first = p.Start(b, t);
                for (var i = 0; i < Dk; i++)
                for (var e = 0; e < Dv; e++)
                {
                    var cell = s0 + i * Dv + e;
                    if (first == 0)
                        dq[kt + i] += power[t + 1] * p.S0[cell] * dO[vt + e];
                    if (t >= last)
                    {
                        dk[kt + i] += power[T - 1 - t] * dST[cell] * p.V[vt + e];
                        dv[vt + e] += power[T - 1 - t] * dST[cell] * p.K[kt + i];
                    }
                }
                for (var j = first; j <= t; j++)
                {
                    var (kj, vj) = (p.KeyIndex(b, j, h), p.ValueIndex(b, j, h));
                    var outputScore = power[t - j] * Dot(dO, vt, p.V, vj, Dv);
                    var score = power[t - j] * Dot(p.Q, kt, p.K, kj, Dk);
                    Axpy(outputScore, p.K, kj, dq, kt, Dk);
                    Axpy(outputScore, p.Q, kt, dk, kj, Dk);
                    Axpy(score, dO, vt, dv, vj, Dv);
                }
            }
            for (var i = 0; i < Dk; i++)
            for (var e = 0; e < Dv; e++)
            {
                var sum = last == 0 ? power[T] * dST[s0 + i * Dv + e] : 0;
                for (var t = 0; t < T && p.Start(b, t) == 0; t++)
                    sum += power[t + 1] * p.Q[p.KeyIndex(b, t, h) + i] * dO[p.ValueIndex(b, t, h) + e];
                dS0[s0 + i * Dv + e] = sum;
            }
        }
        return new RetentionReferenceGradients(dq, dk, dv, dS0);
    }

    /// <summary>
    /// Gradients by reverse-mode through the recurrence: dq_t = S_t dO_t from a forward walk; then, walking back,
    /// G ← G + q_tᵀ dO_t, dk_t = G v_t, dv_t = Gᵀ k_t, G ← γ G, starting from G = dS_T and ending with dS_0 = G.
    /// Packed, G ← 0 (not γ G) after a token that starts a document: S_t does not depend on S_(t−1) there.
    /// </summary>
    public static RetentionReferenceGradients RecurrentBackward(RetentionShape shape, DecaySchedule decay,
        IReadOnlyList<float> q, IReadOnlyList<float> k, IReadOnlyList<float> v, IReadOnlyList<float>? initialState,
        IReadOnlyList<float>? dOutput, IReadOnlyList<float>? dFinalState, IReadOnlyList<int>? cuSeqlens = null)
    {
        var p = new Problem(shape, decay, q, k, v, initialState, cuSeqlens);
        var dO = Values(dOutput, shape.ValueLength, nameof(dOutput));
        var (Dk, Dv) = (shape.KeyDim, shape.ValueDim);
        var dq = new double[shape.QueryLength];
        var dk = new double[shape.QueryLength];
        var dv = new double[shape.ValueLength];
        var state = (double[])p.S0.Clone();
        var g = Values(dFinalState, shape.StateLength, nameof(dFinalState));
        for (var b = 0; b < shape.Batch; b++)
        for (var h = 0; h < shape.Heads; h++)
        {
            var gamma = decay.Gammas[h];
            var s = p.StateIndex(b, h, 0, 0);
            for (var t = 0; t < shape.SeqLen; t++)
            {
                var (kt, vt) = (p.KeyIndex(b, t, h), p.ValueIndex(b, t, h));
                if (p.Restarts(b, t))
                    Array.Clear(state, s, Dk * Dv);
                for (var i = 0; i < Dk; i++)
                for (var e = 0; e < Dv; e++)
                {
                    var cell = s + i * Dv + e;
                    state[cell] = gamma * state[cell] + p.K[kt + i] * p.V[vt + e];
                    dq[kt + i] += state[cell] * dO[vt + e];
                }
            }
            for (var t = shape.SeqLen - 1; t >= 0; t--)
            {
                var (kt, vt) = (p.KeyIndex(b, t, h), p.ValueIndex(b, t, h));
                for (var i = 0; i < Dk; i++)
                for (var e = 0; e < Dv; e++)
                {
                    var cell = s + i * Dv + e;
                    g[cell] += p.Q[kt + i] * dO[vt + e];
                    dk[kt + i] += g[cell] * p.V[vt + e];
                    dv[vt + e] += g[cell] * p.K[kt + i];
                }
                for (var cell = s; cell < s + Dk * Dv; cell++)
                    g[cell] = p.Restarts(b, t) ? 0 : g[cell] * gamma;
            }
        }
        return new RetentionReferenceGradients(dq, dk, dv, g);
    }

    /// <summary>The inputs in double and the row-major index arithmetic of the layout.</summary>
    private sealed class Problem(RetentionShape shape, DecaySchedule decay, IReadOnlyList<float> q,
        IReadOnlyList<float> k, IReadOnlyList<float> v, IReadOnlyList<float>? initialState,
        IReadOnlyList<int>? cuSeqlens)
        : ReferenceHeads(Checked(shape, decay).Batch, shape.SeqLen, shape.Heads, shape.KeyDim, shape.ValueDim, q, k, v)
    {
        private readonly RetentionShape shape = shape;
        private readonly DecaySchedule decay = decay;

        private readonly int[]? bounds = cuSeqlens is null
            ? null
            : PackedSequences.TokenBounds(cuSeqlens, shape.Batch, shape.SeqLen, nameof(cuSeqlens));

        public double[] S0 { get; } = Values(initialState, shape.StateLength, nameof(initialState));

        /// <summary>The first token (within row b) of t's document: 0 unless packed.</summary>
        public int Start(int b, int t) => bounds is null ? 0 : bounds[2 * (b * shape.SeqLen + t)];

        /// <summary>Whether a document starts at t &gt; 0, where the recurrence restarts from zeros.</summary>
        public bool Restarts(int b, int t) => t > 0 && Start(b, t) == t;

        private static RetentionShape Checked(RetentionShape shape, DecaySchedule decay)
        {
            ArgumentNullException.ThrowIfNull(decay);
            if (shape.Batch < 1 || shape.SeqLen < 1 || shape.Heads < 1 || shape.KeyDim < 1 || shape.ValueDim < 1)
                throw new ArgumentException($"Argument 'shape' is {shape}; expected every size ≥ 1.", nameof(shape));
            if (decay.Heads != shape.Heads)
                throw new ArgumentException(
                    $"Argument 'decay' has {decay.Heads} heads; expected H = {shape.Heads}.", nameof(decay));
            return shape;
        }

        public int StateIndex(int b, int h, int i, int e) =>
            ((b * shape.Heads + h) * shape.KeyDim + i) * shape.ValueDim + e;

        /// <summary>γ_h^m for m = 0 … T+1.</summary>
        public double[] Powers(int h)
        {
            var power = new double[shape.SeqLen + 2];
            for (var m = 0; m < power.Length; m++)
                power[m] = Math.Pow(decay.Gammas[h], m);
            return power;
        }
    }
}
