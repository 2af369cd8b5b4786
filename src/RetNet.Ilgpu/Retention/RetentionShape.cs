using RetNet.Ilgpu.Tensors;

namespace RetNet.Ilgpu.Retention;

/// <summary>
/// The sizes of one retention problem: q, k [B, T, H, Dk]; v, o [B, T, H, Dv]; state [B, H, Dk, Dv].
/// </summary>
/// <param name="Batch">B, the number of independent sequences.</param>
/// <param name="SeqLen">T, tokens per sequence.</param>
/// <param name="Heads">H, retention heads (one γ each).</param>
/// <param name="KeyDim">Dk, the query and key size per head.</param>
/// <param name="ValueDim">Dv, the value and output size per head.</param>
public readonly record struct RetentionShape(int Batch, int SeqLen, int Heads, int KeyDim, int ValueDim)
{
    /// <summary>The shape of q and k: [B, T, H, Dk].</summary>
    public int[] QueryShape => [Batch, SeqLen, Heads, KeyDim];

    /// <summary>The shape of v and o: [B, T, H, Dv].</summary>
    public int[] ValueShape => [Batch, SeqLen, Heads, ValueDim];

    /// <summary>The shape of a state: [B, H, Dk, Dv].</summary>
    public int[] StateShape => [Batch, Heads, KeyDim, ValueDim];

    /// <summary>Elements of q (and of k).</summary>
    public int QueryLength => Batch * SeqLen * Heads * KeyDim;

    /// <summary>Elements of v (and of o).</summary>
    public int ValueLength => Batch * SeqLen * Heads * ValueDim;

    /// <summary>Elements of a state.</summary>
    public int StateLength => Batch * Heads * KeyDim * ValueDim;

    /// <summary>The number of chunks of at most <paramref name="chunkSize"/> tokens that cover T.</summary>
    public int ChunkCount(int chunkSize) => (SeqLen + chunkSize - 1) / chunkSize;

    /// <inheritdoc/>
    public override string ToString() => $"B={Batch} T={SeqLen} H={Heads} Dk={KeyDim} Dv={ValueDim}";
}

/// <summary>
/// Argument checks shared by the three forms. Everything is checked before anything is launched or written.
/// </summary>
internal static class RetentionChecks
{
    /// <summary>Checks q, k [B, T, H, Dk], v [B, T, H, Dv] (every size ≥ 1, one device) and the decay's head count.</summary>
    public static RetentionShape Inputs(Tensor q, Tensor k, Tensor v, DecaySchedule decay)
    {
        ArgumentNullException.ThrowIfNull(q);
        ArgumentNullException.ThrowIfNull(k);
        ArgumentNullException.ThrowIfNull(v);
        ArgumentNullException.ThrowIfNull(decay);
        var (batch, seqLen, heads, keyDim, valueDim) = ShapeCheck.HeadOperands(q, k, v, allowEmptySequence: false);
        var shape = new RetentionShape(batch, seqLen, heads, keyDim, valueDim);
        if (decay.Heads != shape.Heads)
            throw new ArgumentException(
                $"Argument 'decay' has {decay.Heads} heads; expected H = {shape.Heads} from q {ShapeCheck.Format(q.Shape)}.",
                nameof(decay));
        return shape;
    }

    /// <summary>Requires a tensor of the given shape on the device of <paramref name="input"/> (skipped when absent).</summary>
    public static void Optional(Tensor? tensor, string argument, Tensor input, int[] expected)
    {
        if (tensor is null)
            return;
        ShapeCheck.Required(tensor, argument, input, expected);
    }

    /// <summary>Requires C ≥ 1.</summary>
    public static void ChunkSize(int chunkSize)
    {
        if (chunkSize < 1)
            throw new ArgumentOutOfRangeException(nameof(chunkSize), chunkSize,
                $"Argument 'chunkSize' is {chunkSize}; expected a chunk size ≥ 1.");
    }

    /// <summary>
    /// The outputs of a whole-sequence forward (parallel or chunkwise): o [B, T, H, Dv], optional S_0 and S_T
    /// [B, H, Dk, Dv]; outputs distinct from the inputs, except that S_T may be S_0 itself (updated in place).
    /// </summary>
    public static void ForwardOutputs(RetentionShape shape, Tensor q, Tensor k, Tensor v, Tensor output,
        Tensor? initialState, Tensor? finalState)
    {
        ShapeCheck.Required(output, nameof(output), q, shape.ValueShape);
        Optional(initialState, nameof(initialState), q, shape.StateShape);
        Optional(finalState, nameof(finalState), q, shape.StateShape);
        ShapeCheck.NoAliasing([(output, nameof(output)), (finalState, nameof(finalState))],
            [(q, nameof(q)), (k, nameof(k)), (v, nameof(v))]);
        if (initialState is not null)
        {
            ShapeCheck.Distinct(output, nameof(output), initialState, nameof(initialState));
            if (finalState is not null)
                ShapeCheck.DistinctOrSame(finalState, nameof(finalState), initialState, nameof(initialState));
        }
    }

    /// <summary>The checks of the parallel and chunkwise backward passes, after <see cref="Inputs"/>.</summary>
    public static void Backward(RetentionShape shape, Tensor q, Tensor k, Tensor v, Tensor? initialState,
        Tensor? dOutput, Tensor? dFinalState, Tensor dq, Tensor dk, Tensor dv, Tensor? dInitialState)
    {
        Optional(initialState, nameof(initialState), q, shape.StateShape);
        Optional(dOutput, nameof(dOutput), q, shape.ValueShape);
        Optional(dFinalState, nameof(dFinalState), q, shape.StateShape);
        ShapeCheck.Required(dq, nameof(dq), q, shape.QueryShape);
        ShapeCheck.Required(dk, nameof(dk), q, shape.QueryShape);
        ShapeCheck.Required(dv, nameof(dv), q, shape.ValueShape);
        Optional(dInitialState, nameof(dInitialState), q, shape.StateShape);
        ShapeCheck.NoAliasing(
            [(dq, nameof(dq)), (dk, nameof(dk)), (dv, nameof(dv)), (dInitialState, nameof(dInitialState))],
            [(q, nameof(q)), (k, nameof(k)), (v, nameof(v)), (initialState, nameof(initialState)),
             (dOutput, nameof(dOutput))]);
        if (dFinalState is null)
            return;
        foreach (var (gradient, name) in new[] { (dq, nameof(dq)), (dk, nameof(dk)), (dv, nameof(dv)) })
            ShapeCheck.Distinct(gradient, name, dFinalState, nameof(dFinalState));
        if (dInitialState is not null)
            ShapeCheck.DistinctOrSame(dInitialState, nameof(dInitialState), dFinalState, nameof(dFinalState));
    }
}
