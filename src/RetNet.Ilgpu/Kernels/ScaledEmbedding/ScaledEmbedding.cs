using ILGPU;
using ILGPU.Runtime;
using RetNet.Ilgpu.Kernels.Embedding;
using RetNet.Ilgpu.Tensors;

namespace RetNet.Ilgpu.Kernels.ScaledEmbedding;

/// <summary>
/// The model's input: output[n, :] = scale · table[ids[n], :] (RetNet multiplies embeddings by √d). Unlike
/// <see cref="Embedding.Embedding"/>, the ids come from the host, are validated there and uploaded into a reusable
/// buffer, so the decoding step needs no read-back before its launch.
/// </summary>
public static class ScaledEmbedding
{
    /// <summary>output [N, D] = scale · table [V, D] rows at <paramref name="ids"/> (N ids, each in [0, V)).</summary>
    /// <exception cref="ArgumentException">Shapes disagree or an id is outside [0, V).</exception>
    public static void Forward(Tensor table, IReadOnlyList<int> ids, float scale, Tensor output)
    {
        ArgumentNullException.ThrowIfNull(ids);
        var values = ids.ToArray();
        Validate(table, values, output);
        using var buffer = IndexTensor.FromHost(table.Device, values, values.Length);
        Launch(table, buffer, scale, output, hostLoop: false);
        table.Device.Synchronize();
    }

    /// <summary>Checks shapes and ids on the host before anything is launched.</summary>
    internal static void Validate(Tensor table, ReadOnlySpan<int> ids, Tensor output)
    {
        ArgumentNullException.ThrowIfNull(table);
        ArgumentNullException.ThrowIfNull(output);
        ShapeCheck.Rank(table, nameof(table), 2);
        ShapeCheck.SameDevice(table.Device, nameof(output), output);
        ShapeCheck.Expect(output, nameof(output), ids.Length, table.Dim(1));
        ShapeCheck.Distinct(output, nameof(output), table, nameof(table));
        for (var n = 0; n < ids.Length; n++)
            if ((uint)ids[n] >= (uint)table.Dim(0))
                throw new ArgumentException(
                    $"Argument 'ids' has id {ids[n]} at position {n}; expected an id in [0, {table.Dim(0)}).", "ids");
    }

    /// <summary>
    /// Launches the gather over <paramref name="ids"/> [N], already validated and uploaded. In host execution an fp32
    /// table is gathered by host code (the kernel's one multiplication per element, so the same bits) unless
    /// <paramref name="hostLoop"/> is false (the public overload, so tests and retnet verify reach the kernel).
    /// </summary>
    internal static void Launch(Tensor table, IndexTensor ids, float scale, Tensor output, bool hostLoop = true)
    {
        if (output.Length == 0)
            return;
        var device = table.Device;
        if (hostLoop && device.RunsOnHost && table.DType == TensorDType.Float32)
        {
            HostSimd.Enter(device, "the host embedding gather", requireHostExecution: true);
            HostGather(table, ids, scale, output);
            return;
        }
        // The same gather kernel as Embedding.Forward, here with the ids of a reusable buffer and a scale.
        var kernel = device.Kernel(EmbeddingKernels.Gather, accelerator =>
            accelerator.LoadAutoGroupedKernel<Index1D, ArrayView<int>, FloatSource, ArrayView<float>, int, float,
                Spread>(EmbeddingKernels.Gather));
        var spread = Kernels.Launch.Spread(device, output.Length);
        kernel(device.Stream, spread.Threads, ids.View, FloatSource.Of(table), output.View, table.Dim(1),
            scale, spread);
    }

    private static unsafe void HostGather(Tensor table, IndexTensor ids, float scale, Tensor output)
    {
        var source = (float*)table.ReadView.LoadEffectiveAddressAsPtr();
        var id = (int*)ids.View.LoadEffectiveAddressAsPtr();
        var destination = HostSimd.Pointer(output);
        var (width, vocab) = (table.Dim(1), table.Dim(0));
        for (var n = 0; n < output.Length / width; n++)
        {
            // Validated before the upload; checked again because a wrong id here would read outside the table.
            if ((uint)id[n] >= (uint)vocab)
                throw new InvalidOperationException($"Token id {id[n]} at position {n} is outside [0, {vocab}).");
            HostSimd.Scale(source + (nint)id[n] * width, destination + (nint)n * width, width, scale);
        }
    }
}
