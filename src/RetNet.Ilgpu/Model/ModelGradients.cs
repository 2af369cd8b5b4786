using ILGPU.Runtime;
using RetNet.Ilgpu.IO;
using RetNet.Ilgpu.Tensors;

namespace RetNet.Ilgpu.Model;

/// <summary>
/// The gradients of every parameter of a model, by the parameter's name, fp32 on the model's device: what
/// <see cref="ILanguageModel.ForwardBackward"/> adds to and an optimiser reads. Made by
/// <see cref="ILanguageModel.CreateGradients"/>; owned by the caller.
/// </summary>
public sealed class ModelGradients : IDisposable
{
    private readonly Dictionary<string, Tensor> tensors = [];
    private bool disposed;

    internal ModelGradients(LanguageModel model)
    {
        Model = model;
        try
        {
            foreach (var (name, parameter) in model.Parameters)
                tensors.Add(name, Tensor.Zeros(model.Device, parameter.ShapeArray));
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    /// <summary>The model whose parameters these are gradients of.</summary>
    public ILanguageModel Model { get; }

    /// <summary>Zero gradients for every parameter of <paramref name="model"/> (as
    /// <see cref="ILanguageModel.CreateGradients"/>).</summary>
    public static ModelGradients Zeros(ILanguageModel model)
    {
        ArgumentNullException.ThrowIfNull(model);
        return model.CreateGradients();
    }

    /// <summary>The gradients by parameter name, in the parameters' order.</summary>
    public IReadOnlyDictionary<string, Tensor> Tensors
    {
        get
        {
            ObjectDisposedException.ThrowIf(disposed, this);
            return tensors;
        }
    }

    /// <summary>Sets every gradient to zero (before the first micro-batch of an optimiser step).</summary>
    public void Zero()
    {
        ObjectDisposedException.ThrowIf(disposed, this);
        foreach (var t in tensors.Values)
            t.View.MemSetToZero(t.Device.Stream);
    }

    /// <summary>The gradients copied to the host, by parameter name.</summary>
    public IReadOnlyDictionary<string, HostTensor> ToHost()
    {
        ObjectDisposedException.ThrowIf(disposed, this);
        return tensors.ToDictionary(kv => kv.Key, kv => HostTensor.From(kv.Value));
    }

    /// <summary>Frees the gradients.</summary>
    public void Dispose()
    {
        if (disposed)
            return;
        disposed = true;
        foreach (var t in tensors.Values)
            t.Dispose();
    }
}
