using RetNet.Ilgpu.Kernels.Conversion;
using RetNet.Ilgpu.Tensors;

namespace RetNet.Ilgpu.Model;

/// <summary>
/// Mixed-precision training's 16-bit copies of a model's fp32 weight matrices: the forward and backward passes read
/// the copies (as a 16-bit model would), the optimiser updates the fp32 masters, and <see cref="Refresh"/> rounds the
/// masters into the copies again after every update. Vectors (norm weights) have no copy; they are read in fp32.
/// Gradients and activations stay fp32, so no gradient is ever stored in 16 bits and fp16 needs no loss scaling.
/// </summary>
internal sealed class ComputeWeights : IDisposable
{
    private readonly IReadOnlyDictionary<string, Tensor> masters;
    private readonly Dictionary<string, Tensor> copies = [];

    /// <summary>Copies of the matrices of <paramref name="masters"/> in <paramref name="type"/>, rounded from them.</summary>
    /// <exception cref="ArgumentException">A master is not fp32, or <paramref name="type"/> is fp32.</exception>
    public ComputeWeights(IReadOnlyDictionary<string, Tensor> masters, TensorDType type)
    {
        if (type is not (TensorDType.BFloat16 or TensorDType.Float16))
            throw new ArgumentException($"Argument 'type' is {type}; expected BFloat16 or Float16 for compute copies.",
                nameof(type));
        if (masters.FirstOrDefault(p => p.Value.DType != TensorDType.Float32) is { Value: not null } narrow)
            throw new ArgumentException(
                $"Argument 'masters' has {narrow.Key} stored as {narrow.Value.DType}; mixed precision keeps fp32 master " +
                "weights. Load the model with weightType Float32.", nameof(masters));
        this.masters = masters;
        Type = type;
        try
        {
            foreach (var (name, master) in masters.Where(p => p.Value.Rank >= 2))
                copies.Add(name, Tensor.Uninitialized(master.Device, type, master.ShapeArray));
        }
        catch
        {
            Dispose();
            throw;
        }
        Refresh();
    }

    /// <summary>
    /// Replaces <paramref name="current"/> by copies in <paramref name="type"/> (none for fp32) and returns what the
    /// layers read for each weight name: the copy of a matrix, else the master itself.
    /// </summary>
    /// <exception cref="ArgumentException">A master is not fp32 while copies are asked for.</exception>
    public static Func<string, Tensor> Use(ref ComputeWeights? current, IReadOnlyDictionary<string, Tensor> masters,
        TensorDType type)
    {
        current?.Dispose();
        current = null;
        if (type != TensorDType.Float32)
            current = new ComputeWeights(masters, type);
        var copies = current;
        return copies is null ? name => masters[name] : name => copies[name];
    }

    /// <summary>The copies' storage type.</summary>
    public TensorDType Type { get; }

    /// <summary>Bytes the copies take.</summary>
    public long Bytes => copies.Values.Sum(c => c.Bytes);

    /// <summary>The tensor the passes read for <paramref name="name"/>: its copy for a matrix, the master itself for a
    /// vector.</summary>
    public Tensor this[string name] => copies.TryGetValue(name, out var copy) ? copy : masters[name];

    /// <summary>Rounds every master into its copy (after the optimiser has updated the masters).</summary>
    public void Refresh()
    {
        foreach (var (name, copy) in copies)
            Conversion.Convert(masters[name], copy);
    }

    /// <summary>Frees the copies (the masters belong to the model).</summary>
    public void Dispose()
    {
        foreach (var copy in copies.Values)
            copy.Dispose();
        copies.Clear();
    }
}
