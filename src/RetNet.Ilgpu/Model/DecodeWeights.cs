using ILGPU.Runtime;
using RetNet.Ilgpu.Devices;
using RetNet.Ilgpu.Kernels;
using RetNet.Ilgpu.Kernels.Gemm;
using RetNet.Ilgpu.Tensors;

namespace RetNet.Ilgpu.Model;

/// <summary>
/// A model's weight matrices stored k-major for decoding (prefills and steps) on ILGPU's CPU accelerator in host
/// execution: each [out, in] matrix copied once as [in, out], in its own storage type, so the products read B along N
/// and every element is one fused multiply-add chain over k from 0 (the packed GEMM's order), with the rows of a
/// batch sharing each weight vector and no horizontal sum per element. The order depends neither on the number of rows
/// nor on whether the product is packed, so a step stays batch-invariant. It is another order than the dot products
/// over [out, in] that devices without copies use, so a model's logits there agree with these to rounding, not bit
/// for bit.
/// </summary>
/// <remarks>
/// A copy follows its matrix: it records the matrix's <see cref="Tensor.WriteCount"/> when made, and is made again
/// at the next prefill or step after anything has written the matrix (an optimiser update, a load, a caller writing
/// <see cref="ILanguageModel.Parameters"/>). Training passes and full forwards read the matrices themselves. Copies
/// cost the matrices' bytes again, so a model gets them only while its matrices take at most
/// <see cref="BudgetBytes"/>; larger models decode against the matrices themselves, where a step reads weights at
/// memory bandwidth whatever the order.
/// </remarks>
internal sealed class DecodeWeights : IDisposable
{
    /// <summary>The most bytes of matrices a model may have and still get copies (as many again).</summary>
    internal const long BudgetBytes = 256L << 20;

    private readonly Dictionary<Tensor, Copy> copies = new(ReferenceEqualityComparer.Instance);
    private bool disposed;

    private DecodeWeights()
    {
    }

    /// <summary>Copies for decoding on <paramref name="device"/>, or null where decoding reads the matrices themselves:
    /// another device, the simulator, or <paramref name="matrices"/> over <see cref="BudgetBytes"/>.</summary>
    public static DecodeWeights? Create(RetNetDevice device, IEnumerable<Tensor> matrices) =>
        device.IsCpuSimulator && device.RunsOnHost && matrices.Sum(m => m.Bytes) <= BudgetBytes
            ? new DecodeWeights()
            : null;

    /// <summary>Matrices with a copy.</summary>
    internal int Count => copies.Count;

    /// <summary>Copies made so far, first ones and remade ones.</summary>
    internal int Made { get; private set; }

    /// <summary>The current k-major copy [in, out] of <paramref name="weight"/> [out, in], made or remade first when
    /// it has none or the weight has been written since.</summary>
    /// <exception cref="ArgumentException">The weight is not a matrix.</exception>
    public Tensor For(Tensor weight)
    {
        ObjectDisposedException.ThrowIf(disposed, this);
        if (weight.Rank != 2)
            throw new ArgumentException(
                $"Argument 'weight' has shape {ShapeCheck.Format(weight.Shape)}; expected a matrix [out, in].",
                nameof(weight));
        var writes = weight.WriteCount;
        if (copies.TryGetValue(weight, out var copy) && copy.Writes == writes)
            return copy.KMajor;
        if (copy is null)
        {
            copy = new Copy(Tensor.Uninitialized(weight.Device, weight.DType, weight.Dim(1), weight.Dim(0)));
            copies.Add(weight, copy);
        }
        Transpose(weight, copy.KMajor);
        copy.Writes = writes;
        Made++;
        return copy.KMajor;
    }

    /// <summary>to [in, out] = fromᵀ, elements copied bit for bit in blocks that stay in L1.</summary>
    private static unsafe void Transpose(Tensor from, Tensor to)
    {
        HostSimd.Enter(from.Device, "Decoding's k-major weights", requireHostExecution: true);
        var (rows, columns) = (from.Dim(0), from.Dim(1));
        var source = HostOperand.Of(from).Pointer;
        if (from.DType == TensorDType.Float32)
            Transpose((float*)source, HostSimd.Pointer(to), rows, columns);
        else
            Transpose((ushort*)source, (ushort*)to.HalfView.LoadEffectiveAddressAsPtr(), rows, columns);
    }

    private static unsafe void Transpose<T>(T* from, T* to, int rows, int columns) where T : unmanaged
    {
        const int block = 32;
        for (var i0 = 0; i0 < rows; i0 += block)
            for (var j0 = 0; j0 < columns; j0 += block)
                for (var i = i0; i < Math.Min(rows, i0 + block); i++)
                    for (var j = j0; j < Math.Min(columns, j0 + block); j++)
                        to[(nint)j * rows + i] = from[(nint)i * columns + j];
    }

    /// <summary>Frees the copies (the matrices belong to the model).</summary>
    public void Dispose()
    {
        if (disposed)
            return;
        disposed = true;
        foreach (var copy in copies.Values)
            copy.KMajor.Dispose();
        copies.Clear();
    }

    private sealed class Copy(Tensor kMajor)
    {
        public Tensor KMajor { get; } = kMajor;

        /// <summary>The matrix's <see cref="Tensor.WriteCount"/> when the copy was made.</summary>
        public long Writes { get; set; } = -1;
    }
}
