using ILGPU;
using ILGPU.Runtime;
using RetNet.Ilgpu.Devices;
using RetNet.Ilgpu.Tensors;

namespace RetNet.Ilgpu.Kernels.Embedding;

/// <summary>
/// Token embedding: a lookup of rows of a table [V, D] by ids of any shape, and its gradient accumulated into the
/// table's gradient. The ids are read back to the host and validated before anything is launched (an out-of-range id
/// would read or write outside the table), so each call waits for the queued work; the backward also groups the
/// positions of each id on the host (a counting sort, O(N + V)) to sum them deterministically without atomics.
/// </summary>
public static class Embedding
{
    /// <summary>output[..., :] = table[ids[...], :].</summary>
    /// <param name="table">The embedding table [V, D].</param>
    /// <param name="ids">Token ids of any shape [...], each in [0, V).</param>
    /// <param name="output">Receives the rows, shape [..., D] (the shape of <paramref name="ids"/> followed by D).</param>
    /// <exception cref="ArgumentException">Shapes disagree, <paramref name="output"/> shares storage with
    /// <paramref name="table"/>, or an id is outside [0, V) (the message names the id, its position and V).</exception>
    public static void Forward(Tensor table, IndexTensor ids, Tensor output)
    {
        var device = CheckShapes(table, nameof(table), ids, output, nameof(output), rowsWritten: true);
        ReadValidIds(ids, table.Dim(0));
        if (output.Length == 0)
            return;
        var kernel = device.Kernel(EmbeddingKernels.Gather, accelerator =>
            accelerator.LoadAutoGroupedKernel<Index1D, ArrayView<int>, FloatSource, ArrayView<float>, int, float,
                Spread>(EmbeddingKernels.Gather));
        var spread = Kernels.Launch.Spread(device, output.Length);
        kernel(device.Stream, spread.Threads, ids.View, FloatSource.Of(table), output.View, table.Dim(1), 1f, spread);
    }

    /// <summary>
    /// dTable[v, :] += Σ over positions n with ids[n] = v of dOutput[n, :]. Accumulates, so gradients from a tied output
    /// projection may already be in <paramref name="dTable"/>; zero it first otherwise. Each row's sum is taken over the
    /// positions in increasing order, then added to the existing row: bit-identical results run to run.
    /// </summary>
    /// <param name="ids">The token ids of the forward pass [...].</param>
    /// <param name="dOutput">Gradient of the forward output [..., D].</param>
    /// <param name="dTable">Gradient of the table [V, D], accumulated into.</param>
    /// <exception cref="ArgumentException">Shapes disagree, <paramref name="dTable"/> shares storage with
    /// <paramref name="dOutput"/>, or an id is outside [0, V).</exception>
    public static void Backward(IndexTensor ids, Tensor dOutput, Tensor dTable)
    {
        var device = CheckShapes(dTable, nameof(dTable), ids, dOutput, nameof(dOutput), rowsWritten: false);
        var vocabulary = dTable.Dim(0);
        var width = dTable.Dim(1);
        var host = ReadValidIds(ids, vocabulary);
        if (host.Length == 0 || width == 0)
            return;

        var (uniqueIds, offsets, positions) = GroupPositions(host, vocabulary);
        using var uniqueTensor = IndexTensor.FromHost(device, uniqueIds, uniqueIds.Length);
        using var offsetTensor = IndexTensor.FromHost(device, offsets, offsets.Length);
        using var positionTensor = IndexTensor.FromHost(device, positions, positions.Length);
        var kernel = device.Kernel(EmbeddingKernels.ScatterAddGrouped, accelerator =>
            accelerator.LoadAutoGroupedKernel<Index1D, ArrayView<int>, ArrayView<int>, ArrayView<int>,
                ArrayView<float>, ArrayView<float>, int, Spread>(EmbeddingKernels.ScatterAddGrouped));
        var pairs = Kernels.Launch.Spread(device, uniqueIds.Length * width);
        kernel(device.Stream, pairs.Threads, uniqueTensor.View, offsetTensor.View, positionTensor.View,
            dOutput.View, dTable.View, width, pairs);
        // The grouping buffers are freed on leaving; not every backend defers a free until queued kernels finish.
        device.Stream.Synchronize();
    }

    /// <summary>
    /// A counting sort of positions by id (CSR): the distinct ids in increasing order, offsets [U + 1] into positions,
    /// and the positions [N] of each id in increasing order.
    /// </summary>
    internal static (int[] UniqueIds, int[] Offsets, int[] Positions) GroupPositions(int[] ids, int vocabulary)
    {
        var counts = new int[vocabulary];
        foreach (var id in ids)
            counts[id]++;
        var distinct = counts.Count(c => c > 0);
        var uniqueIds = new int[distinct];
        var offsets = new int[distinct + 1];
        var next = new int[vocabulary];
        var u = 0;
        for (var v = 0; v < vocabulary; v++)
        {
            if (counts[v] == 0)
                continue;
            uniqueIds[u] = v;
            next[v] = offsets[u];
            offsets[u + 1] = offsets[u] + counts[v];
            u++;
        }
        var positions = new int[ids.Length];
        for (var n = 0; n < ids.Length; n++)
            positions[next[ids[n]]++] = n;
        return (uniqueIds, offsets, positions);
    }

    /// <summary>Checks a table (or its gradient) [V, D], ids [...] and rows [..., D] on one device, the written one of
    /// rows and table distinct from the other; returns the device.</summary>
    private static RetNetDevice CheckShapes(Tensor table, string tableName, IndexTensor ids, Tensor rows,
        string rowsName, bool rowsWritten)
    {
        ArgumentNullException.ThrowIfNull(table, tableName);
        ArgumentNullException.ThrowIfNull(ids);
        ArgumentNullException.ThrowIfNull(rows, rowsName);
        ShapeCheck.SameDevice(table.Device, rowsName, rows);
        ShapeCheck.SameDevice(table.Device, nameof(ids), ids);
        ShapeCheck.Expect(table, tableName, ShapeCheck.Any, ShapeCheck.Any);
        ShapeCheck.Expect(rows, rowsName, [.. ids.Shape, table.Dim(1)]);
        if (rowsWritten)
            ShapeCheck.Distinct(rows, rowsName, table, tableName);
        else
            ShapeCheck.Distinct(table, tableName, rows, rowsName);
        return table.Device;
    }

    private static int[] ReadValidIds(IndexTensor ids, int vocabulary)
    {
        var host = ids.ToHost();
        for (var i = 0; i < host.Length; i++)
        {
            if (host[i] < 0 || host[i] >= vocabulary)
                throw new ArgumentException(
                    $"Argument 'ids' has id {host[i]} at position {i} (index {ShapeCheck.FormatIndex(i, ids.Shape)}); expected ids in " +
                    $"[0, {vocabulary}) for a vocabulary of V = {vocabulary}.", nameof(ids));
        }
        return host;
    }
}
