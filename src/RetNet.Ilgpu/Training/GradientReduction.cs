using RetNet.Ilgpu.Model;
using RetNet.Ilgpu.Tensors;

namespace RetNet.Ilgpu.Training;

/// <summary>
/// The workers of data-parallel training and what they do together: each worker runs its own micro-batches of a step
/// with its gradients and loss already scaled by 1/(Workers × A) (<see cref="Trainer.RunStep"/> does it), so the
/// step's mean over all Workers × A micro-batches is the sum over workers, which <see cref="Reduce"/> forms the same
/// way on every worker; then every worker's optimiser takes the same step. The one seam data-parallel training plugs
/// into: <see cref="Trainer.RunStep"/> calls <see cref="Reduce"/> between the last backward pass and clipping, and a
/// trainer calls <see cref="Agree"/> and <see cref="Broadcast"/> once when it starts or resumes.
/// </summary>
public interface IGradientReducer
{
    /// <summary>The number of workers, N.</summary>
    int Workers { get; }

    /// <summary>This worker's index, 0 … N − 1: it runs micro-batches Rank × A … Rank × A + A − 1 of each step's
    /// N × A. Worker 0 logs, evaluates and writes the checkpoints.</summary>
    int Rank { get; }

    /// <summary>Replaces every gradient by its sum over all workers, added in rank order (0, 1, 2, …) so that the
    /// result does not depend on timing; returns the sum of <paramref name="loss"/> over the workers, in the same
    /// order.</summary>
    double Reduce(ModelGradients gradients, double loss);

    /// <summary>Replaces each tensor's elements on every worker by worker 0's (the weights at the start of a run).</summary>
    void Broadcast(IReadOnlyList<Tensor> tensors);

    /// <summary>Checks that every worker has the same value of every fact (settings, model, data, step), in the same
    /// order.</summary>
    /// <exception cref="RanksDisagreeException">Some differ: thrown on every worker, naming each fact that differs and
    /// the values.</exception>
    void Agree(IReadOnlyList<KeyValuePair<string, string>> facts);
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
    public int Rank => 0;

    /// <inheritdoc/>
    public double Reduce(ModelGradients gradients, double loss)
    {
        ArgumentNullException.ThrowIfNull(gradients);
        return loss;
    }

    /// <inheritdoc/>
    public void Broadcast(IReadOnlyList<Tensor> tensors) => ArgumentNullException.ThrowIfNull(tensors);

    /// <inheritdoc/>
    public void Agree(IReadOnlyList<KeyValuePair<string, string>> facts) => ArgumentNullException.ThrowIfNull(facts);
}

/// <summary>The workers of a data-parallel run started with different settings, model, data or step: every worker
/// throws it, with the same message naming what differs.</summary>
/// <param name="message">What differs, with each worker's value.</param>
public sealed class RanksDisagreeException(string message) : InvalidOperationException(message);

/// <summary>
/// The deterministic combination of the workers' gathered values: element i of the result is
/// ((v₀[i] + v₁[i]) + v₂[i]) + …, rank by rank in order, so every worker gets the same bits whatever the timing, and
/// two workers give exactly what one process accumulating both micro-batches gives (a sum of two is order-free).
/// </summary>
public static class RankOrderSum
{
    /// <summary>Sums <paramref name="gathered"/> [workers, n] (worker w's n values at w × n, as an allgather lays them
    /// out) over the workers, in rank order, into <paramref name="sum"/> [n].</summary>
    /// <exception cref="ArgumentException">gathered is not workers × sum's length.</exception>
    public static void Sum(ReadOnlySpan<float> gathered, int workers, Span<float> sum)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(workers, 1);
        var n = sum.Length;
        if (gathered.Length != (long)workers * n)
            throw new ArgumentException(
                $"Argument 'gathered' has {gathered.Length} elements; expected workers × n = {workers} × {n}.",
                nameof(gathered));
        gathered[..n].CopyTo(sum);
        for (var w = 1; w < workers; w++)
        {
            var part = gathered.Slice(w * n, n);
            for (var i = 0; i < n; i++)
                sum[i] += part[i];
        }
    }

    /// <summary>The sum of <paramref name="values"/>, one per worker, in rank order.</summary>
    public static double Sum(ReadOnlySpan<double> values)
    {
        if (values.IsEmpty)
            throw new ArgumentException("Argument 'values' is empty; expected one value per worker.", nameof(values));
        var sum = values[0];
        for (var w = 1; w < values.Length; w++)
            sum += values[w];
        return sum;
    }
}
