using RetNet.Ilgpu.IO;
using RetNet.Ilgpu.Tensors;

namespace RetNet.Ilgpu.Model;

/// <summary>
/// How a model stores its weights on the device. Matrices (embeddings, projections, the FFN: every weight of rank ≥ 2,
/// nearly all the bytes) take one storage type, which GEMM and the embedding gather widen as they read; vectors (norm
/// weights) stay fp32 because the kernels that read them are fp32-only and they are a rounding error of the size.
/// </summary>
internal static class WeightStorage
{
    /// <summary>
    /// The matrices' type: <paramref name="requested"/> when given, else the type the checkpoint stores them in when
    /// they all share one (so a bf16 checkpoint loads as bf16 without ever being widened), else fp32.
    /// </summary>
    public static TensorDType MatrixType(IReadOnlyDictionary<string, HostTensor> weights, IEnumerable<string> names,
        TensorDType? requested)
    {
        if (requested is { } chosen)
        {
            if (!Enum.IsDefined(chosen))
                throw new ArgumentOutOfRangeException("weightType", chosen, "Expected Float32, Float16 or BFloat16.");
            return chosen;
        }
        var stored = names.Select(n => weights[n]).Where(IsMatrix).Select(t => t.DType).Distinct().ToList();
        return stored.Count == 1 ? stored[0] : TensorDType.Float32;
    }

    /// <summary>Puts <paramref name="tensor"/> on the device as a matrix of <paramref name="matrixType"/> or an fp32
    /// vector. A tensor of a memory-mapped file (a model loaded with <c>mapWeights</c>) that is already in that type
    /// is read in place on the CPU accelerator (a read-only tensor over the mapped bytes); anything else is copied, once,
    /// from where its bytes lie.</summary>
    public static Tensor Upload(HostTensor tensor, Devices.RetNetDevice device, TensorDType matrixType)
    {
        var type = IsMatrix(tensor) ? matrixType : TensorDType.Float32;
        return tensor.TryMapToDevice(device, type) ?? tensor.ToDevice(device, type);
    }

    private static bool IsMatrix(HostTensor tensor) => tensor.Shape.Length >= 2;
}
