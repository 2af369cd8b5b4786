namespace RetNet.Ilgpu.Kernels.Embedding;

/// <summary>Double-precision references of <see cref="Embedding"/>, used by the tests.</summary>
public static class EmbeddingReference
{
    /// <summary>output[n, :] = table[ids[n], :] for a row-major table [V, D]; output [N · D].</summary>
    /// <exception cref="ArgumentException">An id is outside [0, V) or the table is not V · D long.</exception>
    public static double[] Forward(IReadOnlyList<float> table, int vocabulary, int width, IReadOnlyList<int> ids)
    {
        CheckTable(table, vocabulary, width, nameof(table));
        var output = new double[ids.Count * width];
        for (var n = 0; n < ids.Count; n++)
        {
            var id = CheckId(ids, n, vocabulary);
            for (var d = 0; d < width; d++)
                output[n * width + d] = table[id * width + d];
        }
        return output;
    }

    /// <summary>dTable + scatter-add: result[v, :] = dTable[v, :] + Σ_{n: ids[n] = v} dOutput[n, :].</summary>
    /// <exception cref="ArgumentException">An id is outside [0, V) or a length disagrees.</exception>
    public static double[] Backward(IReadOnlyList<int> ids, IReadOnlyList<float> dOutput, IReadOnlyList<float> dTable,
        int vocabulary, int width)
    {
        CheckTable(dTable, vocabulary, width, nameof(dTable));
        if (dOutput.Count != ids.Count * width)
            throw new ArgumentException(
                $"Argument 'dOutput' has {dOutput.Count} elements; expected {ids.Count} · {width}.", nameof(dOutput));
        var result = dTable.Select(v => (double)v).ToArray();
        for (var n = 0; n < ids.Count; n++)
        {
            var id = CheckId(ids, n, vocabulary);
            for (var d = 0; d < width; d++)
                result[id * width + d] += dOutput[n * width + d];
        }
        return result;
    }

    private static void CheckTable(IReadOnlyList<float> table, int vocabulary, int width, string argument)
    {
        if (table.Count != vocabulary * width)
            throw new ArgumentException(
                $"Argument '{argument}' has {table.Count} elements; expected V · D = {vocabulary} · {width}.", argument);
    }

    private static int CheckId(IReadOnlyList<int> ids, int n, int vocabulary)
    {
        var id = ids[n];
        if (id < 0 || id >= vocabulary)
            throw new ArgumentException(
                $"Argument 'ids' has id {id} at position {n}; expected ids in [0, {vocabulary}).", nameof(ids));
        return id;
    }
}
