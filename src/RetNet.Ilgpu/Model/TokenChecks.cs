namespace RetNet.Ilgpu.Model;

/// <summary>The checks every model applies to the token ids it is handed, before anything is uploaded.</summary>
internal static class TokenChecks
{
    /// <summary>Every id in [0, <paramref name="vocabulary"/>).</summary>
    /// <exception cref="ArgumentException">An id is out of range (the message names the argument and the index).</exception>
    public static void Ids(ReadOnlySpan<int> ids, int vocabulary, string argument)
    {
        for (var i = 0; i < ids.Length; i++)
            if ((uint)ids[i] >= (uint)vocabulary)
                throw new ArgumentException(
                    $"Argument '{argument}' has id {ids[i]} at index {i}; expected an id in [0, {vocabulary}).",
                    argument);
    }

    /// <summary>Every sequence non-empty and every id in range.</summary>
    /// <exception cref="ArgumentException">A sequence is null or empty, or an id is out of range.</exception>
    public static void Sequences(IReadOnlyList<IReadOnlyList<int>> sequences, int vocabulary, string argument)
    {
        for (var b = 0; b < sequences.Count; b++)
        {
            var sequence = sequences[b];
            if (sequence is null || sequence.Count == 0)
                throw new ArgumentException(
                    $"Argument '{argument}' has an empty sequence at index {b}; expected at least one token.", argument);
            for (var t = 0; t < sequence.Count; t++)
                if ((uint)sequence[t] >= (uint)vocabulary)
                    throw new ArgumentException(
                        $"Argument '{argument}[{b}]' has id {sequence[t]} at index {t}; expected an id in [0, " +
                        $"{vocabulary}).", argument);
        }
    }

    /// <summary>
    /// Splits training windows [B, T + 1] into the model's input ids (row-major [B·T], then B zeros: every window
    /// starts at position 0) and the targets [B·T] (each token's successor), after checking the shape, the ids and
    /// that the logits [B·T, V] and the widest activations [B·T, <paramref name="widest"/>] fit one tensor.
    /// </summary>
    /// <exception cref="ArgumentException">No window, windows shorter than 2 tokens, an id out of range, or work too
    /// large for 32-bit indexing.</exception>
    public static (int[] Inputs, int[] Targets, int Batch, int SeqLen) Windows(int[,] windows, int vocabulary,
        int widest, string argument)
    {
        ArgumentNullException.ThrowIfNull(windows, argument);
        int batch = windows.GetLength(0), seqLen = windows.GetLength(1) - 1;
        if (batch == 0 || seqLen < 1)
            throw new ArgumentException(
                $"Argument '{argument}' is [{batch}, {seqLen + 1}]; expected at least one window of at least 2 tokens.",
                argument);
        Tensors.ShapeCheck.FitsOneTensor((long)batch * seqLen, vocabulary, "logits [B·T, V]", argument);
        Tensors.ShapeCheck.FitsOneTensor((long)batch * seqLen, widest, "activations [B·T, widest]", argument);
        var n = batch * seqLen;
        var inputs = new int[n + batch];
        var targets = new int[n];
        for (var b = 0; b < batch; b++)
        for (var t = 0; t < seqLen; t++)
        {
            inputs[b * seqLen + t] = windows[b, t];
            targets[b * seqLen + t] = windows[b, t + 1];
        }
        Ids(inputs.AsSpan(0, n), vocabulary, argument);
        Ids(targets, vocabulary, argument);
        return (inputs, targets, batch, seqLen);
    }
}
