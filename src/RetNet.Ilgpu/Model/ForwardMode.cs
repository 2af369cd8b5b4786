namespace RetNet.Ilgpu.Model;

/// <summary>The form of retention a forward pass uses; all three give the same logits up to fp32 rounding.</summary>
public enum RetentionForm
{
    /// <summary>The quadratic parallel form: O(T²) time, O(T) memory.</summary>
    Parallel,

    /// <summary>Chunks of <see cref="ForwardMode.ChunkSize"/> tokens, a state carried across chunks: linear in T.</summary>
    Chunkwise,

    /// <summary>Token by token through the recurrence, as decoding does.</summary>
    Recurrent,
}

/// <summary>How <see cref="RetNetModel.Forward(int[,], ForwardMode)"/> runs retention.</summary>
/// <param name="Form">Parallel, chunkwise or recurrent.</param>
/// <param name="ChunkSize">Tokens per chunk for <see cref="RetentionForm.Chunkwise"/> (≥ 1); ignored otherwise.</param>
public readonly record struct ForwardMode(RetentionForm Form, int ChunkSize)
{
    /// <summary>The chunk size <see cref="RetNetModel.Prefill"/> uses unless told otherwise.</summary>
    public const int DefaultChunkSize = 64;

    /// <summary>The parallel form.</summary>
    public static ForwardMode Parallel => new(RetentionForm.Parallel, 0);

    /// <summary>The recurrent form.</summary>
    public static ForwardMode Recurrent => new(RetentionForm.Recurrent, 0);

    /// <summary>The chunkwise form with <paramref name="chunkSize"/> tokens per chunk.</summary>
    public static ForwardMode Chunkwise(int chunkSize = DefaultChunkSize) => new(RetentionForm.Chunkwise, chunkSize);

    /// <inheritdoc/>
    public override string ToString() => Form == RetentionForm.Chunkwise
        ? $"chunkwise({ChunkSize})"
        : Form.ToString().ToLowerInvariant();
}
