using RetNet.Ilgpu.Model;

namespace RetNet.Ilgpu.Training;

/// <summary>
/// How the gradients of one optimiser step are combined across data-parallel workers, each of which ran its own
/// micro-batches: after it every worker holds the same averaged gradients, so every worker's optimiser takes the
/// same step. The one seam data-parallel training plugs into (<see cref="Trainer.RunStep"/> calls it between the last
/// backward pass and clipping).
/// </summary>
public interface IGradientReducer
{
    /// <summary>The number of workers whose gradients are averaged.</summary>
    int Workers { get; }

    /// <summary>Replaces every gradient by the mean of that gradient over all workers.</summary>
    void Reduce(ModelGradients gradients);
}

/// <summary>Training on one device: the only worker's gradients are already the mean, so reducing does nothing.</summary>
public sealed class SingleWorker : IGradientReducer
{
    /// <summary>The one instance.</summary>
    public static SingleWorker Instance { get; } = new();

    private SingleWorker()
    {
    }

    /// <inheritdoc/>
    public int Workers => 1;

    /// <inheritdoc/>
    public void Reduce(ModelGradients gradients) => ArgumentNullException.ThrowIfNull(gradients);
}
