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

/// <summary>How a pass runs retention (<see cref="ILanguageModel.Forward"/>); attention has one form and ignores it.</summary>
/// <param name="Form">Parallel, chunkwise or recurrent.</param>
/// <param name="ChunkSize">Tokens per chunk for <see cref="RetentionForm.Chunkwise"/> (≥ 1); ignored otherwise.</param>
public readonly record struct ForwardMode(RetentionForm Form, int ChunkSize)
{
    /// <summary>The chunk size <see cref="ILanguageModel.Prefill"/> uses unless told otherwise.</summary>
    public const int DefaultChunkSize = 64;

    /// <summary>The parallel form.</summary>
    public static ForwardMode Parallel => new(RetentionForm.Parallel, 0);

    /// <summary>The recurrent form.</summary>
    public static ForwardMode Recurrent => new(RetentionForm.Recurrent, 0);

    /// <summary>The chunkwise form with <paramref name="chunkSize"/> tokens per chunk.</summary>
    public static ForwardMode Chunkwise(int chunkSize = DefaultChunkSize) => new(RetentionForm.Chunkwise, chunkSize);

    /// <summary>The mode a form's name gives ("parallel", "chunkwise" with <paramref name="chunkSize"/>, "recurrent";
    /// case-insensitive): how the command line reads --mode and --form.</summary>
    /// <exception cref="ArgumentException">Any other name.</exception>
    public static ForwardMode Parse(string form, int chunkSize = DefaultChunkSize)
    {
        ArgumentNullException.ThrowIfNull(form);
        return Of(form.Trim().ToLowerInvariant() switch
        {
            "parallel" => RetentionForm.Parallel,
            "chunkwise" => RetentionForm.Chunkwise,
            "recurrent" => RetentionForm.Recurrent,
            _ => throw new ArgumentException(
                $"Argument 'form' is '{form}'; expected parallel, chunkwise or recurrent.", nameof(form)),
        }, chunkSize);
    }

    /// <summary>The mode of <paramref name="form"/>, with <paramref name="chunkSize"/> for the chunkwise form.</summary>
    public static ForwardMode Of(RetentionForm form, int chunkSize = DefaultChunkSize) =>
        form == RetentionForm.Chunkwise ? Chunkwise(chunkSize) : new ForwardMode(form, 0);

    /// <inheritdoc/>
    public override string ToString() => Form == RetentionForm.Chunkwise
        ? $"chunkwise({ChunkSize})"
        : Form.ToString().ToLowerInvariant();
}
