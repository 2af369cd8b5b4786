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
    public static void Sequences(IReadOnlyList<int[]> sequences, int vocabulary, string argument)
    {
        for (var b = 0; b < sequences.Count; b++)
        {
            if (sequences[b] is null || sequences[b].Length == 0)
                throw new ArgumentException(
                    $"Argument '{argument}' has an empty sequence at index {b}; expected at least one token.", argument);
            Ids(sequences[b], vocabulary, $"{argument}[{b}]");
        }
    }
}
