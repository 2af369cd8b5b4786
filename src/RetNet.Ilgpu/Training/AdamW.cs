using System.Globalization;
using ILGPU;
using ILGPU.Runtime;
using RetNet.Ilgpu.IO;
using RetNet.Ilgpu.Kernels;
using RetNet.Ilgpu.Kernels.Optimizer;
using RetNet.Ilgpu.Tensors;

namespace RetNet.Ilgpu.Training;

/// <summary>A tensor the optimiser updates in place.</summary>
/// <param name="Name">Unique name; gradients and saved state are keyed by it.</param>
/// <param name="Value">The fp32 device tensor holding the parameter.</param>
/// <param name="Decay">Whether decoupled weight decay applies (see <see cref="AdamW.DecaysByDefault"/>).</param>
public sealed record OptimizedParameter(string Name, Tensor Value, bool Decay);

/// <summary>Hyperparameters of <see cref="AdamW"/>; the defaults are the RetNet paper's.</summary>
/// <param name="Beta1">Decay of the first moment, in [0, 1).</param>
/// <param name="Beta2">Decay of the second moment, in [0, 1).</param>
/// <param name="Eps">Added to the bias-corrected √v; positive.</param>
/// <param name="WeightDecay">Decoupled weight decay (multiplied by the learning rate); ≥ 0.</param>
public sealed record AdamWOptions(double Beta1 = 0.9, double Beta2 = 0.98, double Eps = 1e-8, double WeightDecay = 0.01)
{
    /// <summary>Rejects values the update is undefined or meaningless for.</summary>
    /// <exception cref="ArgumentOutOfRangeException">A value is out of range; names it, the range and the value.</exception>
    public void Validate()
    {
        if (!(Beta1 >= 0 && Beta1 < 1))
            throw new ArgumentOutOfRangeException(nameof(Beta1), Beta1, "Expected Beta1 in [0, 1).");
        if (!(Beta2 >= 0 && Beta2 < 1))
            throw new ArgumentOutOfRangeException(nameof(Beta2), Beta2, "Expected Beta2 in [0, 1).");
        if (!(Eps > 0 && double.IsFinite(Eps)))
            throw new ArgumentOutOfRangeException(nameof(Eps), Eps, "Expected a finite Eps > 0.");
        if (!(WeightDecay >= 0 && double.IsFinite(WeightDecay)))
            throw new ArgumentOutOfRangeException(nameof(WeightDecay), WeightDecay, "Expected a finite WeightDecay ≥ 0.");
    }
}

/// <summary>The optimiser's state on the host, as <see cref="AdamW.ExportState"/> writes and
/// <see cref="AdamW.ImportState"/> reads it.</summary>
/// <param name="StepCount">Steps taken so far (the bias corrections depend on it).</param>
/// <param name="Tensors">"&lt;name&gt;.exp_avg" and "&lt;name&gt;.exp_avg_sq" for every parameter, as in PyTorch's
/// optimiser state.</param>
public sealed record AdamWState(long StepCount, IReadOnlyDictionary<string, HostTensor> Tensors);

/// <summary>
/// AdamW (Adam with decoupled weight decay) over a fixed set of named fp32 device parameters, updated in place by one
/// fused kernel launch per tensor, with the same operations in the same order as PyTorch's <c>torch.optim.AdamW</c>
/// (single-tensor path). The moments are fp32 device tensors owned by the optimiser. Every element is updated by one
/// thread, so results are bit-identical run to run on one device. Not thread-safe, like the device.
/// </summary>
public sealed class AdamW : IDisposable
{
    /// <summary>Suffix of the first-moment tensors in <see cref="AdamWState.Tensors"/>.</summary>
    public const string ExpAvgSuffix = ".exp_avg";

    /// <summary>Suffix of the second-moment tensors in <see cref="AdamWState.Tensors"/>.</summary>
    public const string ExpAvgSqSuffix = ".exp_avg_sq";

    private readonly OptimizedParameter[] parameters;
    private readonly Tensor[] expAvg;
    private readonly Tensor[] expAvgSq;
    private bool disposed;

    /// <summary>Allocates zero moments for every parameter.</summary>
    /// <param name="parameters">The tensors to optimise: unique non-empty names, one device, no shared storage.</param>
    /// <param name="options">Hyperparameters; null for the defaults.</param>
    /// <exception cref="ArgumentException">A name is empty or repeated, tensors live on different devices, or two
    /// share storage (a tied weight must be listed once).</exception>
    /// <exception cref="ArgumentOutOfRangeException">An option is out of range.</exception>
    public AdamW(IReadOnlyList<OptimizedParameter> parameters, AdamWOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        Options = options ?? new AdamWOptions();
        Options.Validate();
        var names = new HashSet<string>(StringComparer.Ordinal);
        for (var k = 0; k < parameters.Count; k++)
        {
            var parameter = parameters[k];
            var argument = $"{nameof(parameters)}[{k}]";
            ArgumentNullException.ThrowIfNull(parameter, argument);
            ArgumentNullException.ThrowIfNull(parameter.Value, argument);
            if (string.IsNullOrEmpty(parameter.Name))
                throw new ArgumentException($"Argument '{argument}' has an empty name; expected a unique name.",
                    nameof(parameters));
            if (!names.Add(parameter.Name))
                throw new ArgumentException(
                    $"Argument '{argument}' repeats the name '{parameter.Name}'; expected unique names.",
                    nameof(parameters));
            ShapeCheck.SameDevice(parameters[0].Value.Device, argument, parameter.Value);
            if (parameter.Value.DType != TensorDType.Float32)
                throw new ArgumentException(
                    $"Argument '{argument}' ('{parameter.Name}') is stored as {parameter.Value.DType}; AdamW updates fp32 " +
                    "master weights. Load the model with weightType Float32, and for mixed precision let the passes " +
                    "read 16-bit copies (ILanguageModel.UseComputeType).", nameof(parameters));
            for (var j = 0; j < k; j++)
                if (parameter.Value.Overlaps(parameters[j].Value))
                    throw new ArgumentException(
                        $"Argument '{argument}' ('{parameter.Name}') shares storage with '{parameters[j].Name}'; " +
                        "expected distinct tensors (list a tied weight once).", nameof(parameters));
        }
        this.parameters = [.. parameters];
        expAvg = new Tensor[this.parameters.Length];
        expAvgSq = new Tensor[this.parameters.Length];
        try
        {
            for (var k = 0; k < this.parameters.Length; k++)
            {
                expAvg[k] = Tensor.Zeros(this.parameters[k].Value.Device, this.parameters[k].Value.ShapeArray);
                expAvgSq[k] = Tensor.Zeros(this.parameters[k].Value.Device, this.parameters[k].Value.ShapeArray);
            }
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    /// <summary>AdamW over every parameter of <paramref name="model"/>, decayed by the library's convention
    /// (<see cref="DecaysByDefault"/>).</summary>
    /// <exception cref="ArgumentException">A parameter is not stored as fp32 (the message names it).</exception>
    public static AdamW For(Model.ILanguageModel model, AdamWOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        return new AdamW(model.Parameters.Select(p => new OptimizedParameter(p.Key, p.Value,
            DecaysByDefault(p.Key, p.Value.Rank))).ToList(), options);
    }

    /// <summary>The hyperparameters.</summary>
    public AdamWOptions Options { get; }

    /// <summary>The optimised tensors, in the order given.</summary>
    public IReadOnlyList<OptimizedParameter> Parameters => parameters;

    /// <summary>Steps taken so far (or imported); the next <see cref="Step"/> is step number StepCount + 1.</summary>
    public long StepCount { get; private set; }

    /// <summary>
    /// The decay convention of the library's models: weight matrices (rank ≥ 2) decay, except the token embedding
    /// (<c>embed_tokens.weight</c>, whose rows of rare tokens would be shrunk towards zero between their rare updates);
    /// norm weights and other vectors (rank ≤ 1) do not.
    /// </summary>
    /// <param name="parameterName">The parameter's name, as the weight layout spells it.</param>
    /// <param name="rank">The parameter's rank.</param>
    public static bool DecaysByDefault(string parameterName, int rank)
    {
        ArgumentNullException.ThrowIfNull(parameterName);
        return rank >= 2 && !IsEmbedding(parameterName);
    }

    private static bool IsEmbedding(string name) =>
        name == "embed_tokens.weight" || name.EndsWith(".embed_tokens.weight", StringComparison.Ordinal);

    /// <summary>
    /// Takes one AdamW step: for every parameter, g = <paramref name="gradientScale"/>·gradient, then the fused update
    /// (see <see cref="AdamWReference.Step"/>) with bias corrections for step number <see cref="StepCount"/> + 1,
    /// formed in double. Everything is validated before any launch, so a rejected call changes nothing. Queued on the
    /// device stream; does not wait.
    /// </summary>
    /// <param name="gradients">One gradient per parameter, keyed by its name, of its shape and device; no others.</param>
    /// <param name="learningRate">Finite, ≥ 0.</param>
    /// <param name="gradientScale">Finite factor on every gradient (for clipping or loss scaling).</param>
    /// <exception cref="ArgumentException">A gradient is missing, extra, of another shape or device, or shares storage
    /// with a parameter; the message names it.</exception>
    /// <exception cref="ArgumentOutOfRangeException">The learning rate or scale is out of range.</exception>
    public void Step(IReadOnlyDictionary<string, Tensor> gradients, double learningRate, double gradientScale = 1.0)
    {
        ObjectDisposedException.ThrowIf(disposed, this);
        ArgumentNullException.ThrowIfNull(gradients);
        if (!(learningRate >= 0 && double.IsFinite(learningRate)))
            throw new ArgumentOutOfRangeException(nameof(learningRate), learningRate, "Expected a finite learning rate ≥ 0.");
        if (!double.IsFinite(gradientScale) || !float.IsFinite((float)gradientScale))
            throw new ArgumentOutOfRangeException(nameof(gradientScale), gradientScale, "Expected a finite fp32 gradient scale.");
        var ordered = ValidateGradients(gradients);

        var step = StepCount + 1;
        var biasCorrection1 = 1 - Math.Pow(Options.Beta1, step);
        var biasCorrection2 = 1 - Math.Pow(Options.Beta2, step);
        var stepSize = learningRate / biasCorrection1;
        if (!float.IsFinite((float)stepSize))
            throw new ArgumentOutOfRangeException(nameof(learningRate), learningRate,
                $"The step size lr / (1 − β1^{step}) = {stepSize.ToString("G6", CultureInfo.InvariantCulture)} " +
                "overflows fp32; expected a smaller learning rate.");

        for (var k = 0; k < parameters.Length; k++)
        {
            var value = parameters[k].Value;
            if (value.Length == 0)
                continue;
            var arguments = new AdamWStep
            {
                GradientScale = (float)gradientScale,
                Beta1Complement = (float)(1 - Options.Beta1),
                Beta2 = (float)Options.Beta2,
                Beta2Complement = (float)(1 - Options.Beta2),
                DecayFactor = parameters[k].Decay ? (float)(1 - learningRate * Options.WeightDecay) : 1f,
                StepSize = (float)stepSize,
                BiasCorrection2Sqrt = (float)Math.Sqrt(biasCorrection2),
                Epsilon = (float)Options.Eps,
            };
            var kernel = value.Device.Kernel(AdamWKernels.Update, accelerator =>
                accelerator.LoadAutoGroupedKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>,
                    ArrayView<float>, AdamWStep, Spread>(AdamWKernels.Update));
            var spread = Launch.Spread(value.Device, value.Length);
            kernel(value.Device.Stream, spread.Threads, value.View, ordered[k].View, expAvg[k].View, expAvgSq[k].View,
                arguments, spread);
        }
        StepCount = step;
    }

    private Tensor[] ValidateGradients(IReadOnlyDictionary<string, Tensor> gradients)
    {
        var ordered = new Tensor[parameters.Length];
        for (var k = 0; k < parameters.Length; k++)
        {
            var name = parameters[k].Name;
            var argument = $"gradients['{name}']";
            if (!gradients.TryGetValue(name, out var gradient))
                throw new ArgumentException($"Argument 'gradients' has no entry '{name}'; expected one gradient per " +
                                            "parameter.", nameof(gradients));
            if (gradient is null)
                throw new ArgumentNullException(nameof(gradients), $"Argument '{argument}' is null.");
            ShapeCheck.SameDevice(parameters[k].Value.Device, argument, gradient);
            if (!gradient.Shape.SequenceEqual(parameters[k].Value.Shape))
                throw new ArgumentException(
                    $"Argument '{argument}' has shape {ShapeCheck.Format(gradient.Shape)}; expected the shape of " +
                    $"parameter '{name}', {ShapeCheck.Format(parameters[k].Value.Shape)}.", nameof(gradients));
            foreach (var parameter in parameters)
                if (gradient.Overlaps(parameter.Value))
                    throw new ArgumentException(
                        $"Argument '{argument}' shares storage with parameter '{parameter.Name}'; expected a distinct " +
                        "gradient tensor.", nameof(gradients));
            ordered[k] = gradient;
        }
        if (gradients.Count != parameters.Length)
        {
            var known = parameters.Select(p => p.Name).ToHashSet(StringComparer.Ordinal);
            var extra = gradients.Keys.Where(key => !known.Contains(key)).Order(StringComparer.Ordinal);
            throw new ArgumentException(
                $"Argument 'gradients' has entries for no parameter: {string.Join(", ", extra.Select(e => $"'{e}'"))}; " +
                "expected exactly the optimised parameters' names.", nameof(gradients));
        }
        return ordered;
    }

    /// <summary>The first and second moments of every parameter, in parameter order: what data-parallel workers take
    /// from worker 0 when they resume.</summary>
    internal IReadOnlyList<Tensor> StateTensors => [.. expAvg, .. expAvgSq];

    /// <summary>
    /// Copies the moments to the host, "&lt;name&gt;.exp_avg" and "&lt;name&gt;.exp_avg_sq" per parameter in parameter
    /// order, with <see cref="StepCount"/>. Waits for queued work.
    /// </summary>
    public AdamWState ExportState()
    {
        ObjectDisposedException.ThrowIf(disposed, this);
        var tensors = new Dictionary<string, HostTensor>(StringComparer.Ordinal);
        for (var k = 0; k < parameters.Length; k++)
        {
            tensors.Add(parameters[k].Name + ExpAvgSuffix, HostTensor.From(expAvg[k]));
            tensors.Add(parameters[k].Name + ExpAvgSqSuffix, HostTensor.From(expAvgSq[k]));
        }
        return new AdamWState(StepCount, tensors);
    }

    /// <summary>
    /// Replaces the moments and the step count with <paramref name="state"/>, so training continues bit-identically
    /// from where it was exported. Everything is validated before anything is written.
    /// </summary>
    /// <exception cref="ArgumentException">A tensor is missing, unexpected, of the wrong shape, non-finite, or a second
    /// moment is negative; the message names the tensor.</exception>
    /// <exception cref="ArgumentOutOfRangeException">The step count is negative.</exception>
    public void ImportState(AdamWState state)
    {
        ObjectDisposedException.ThrowIf(disposed, this);
        ArgumentNullException.ThrowIfNull(state);
        ArgumentNullException.ThrowIfNull(state.Tensors, nameof(state));
        if (state.StepCount < 0)
            throw new ArgumentOutOfRangeException(nameof(state), state.StepCount,
                "Expected a step count ≥ 0 in the optimiser state.");
        var first = new HostTensor[parameters.Length];
        var second = new HostTensor[parameters.Length];
        for (var k = 0; k < parameters.Length; k++)
        {
            first[k] = StateTensor(state, parameters[k], ExpAvgSuffix, mustBeNonNegative: false);
            second[k] = StateTensor(state, parameters[k], ExpAvgSqSuffix, mustBeNonNegative: true);
        }
        if (state.Tensors.Count != 2 * parameters.Length)
        {
            var known = parameters.SelectMany(p => new[] { p.Name + ExpAvgSuffix, p.Name + ExpAvgSqSuffix })
                .ToHashSet(StringComparer.Ordinal);
            var extra = state.Tensors.Keys.Where(key => !known.Contains(key)).Order(StringComparer.Ordinal);
            throw new ArgumentException(
                $"The optimiser state has tensors for no parameter: {string.Join(", ", extra.Select(e => $"'{e}'"))}.",
                nameof(state));
        }
        for (var k = 0; k < parameters.Length; k++)
        {
            expAvg[k].CopyFromHost(first[k].Data);
            expAvgSq[k].CopyFromHost(second[k].Data);
        }
        StepCount = state.StepCount;
    }

    private static HostTensor StateTensor(AdamWState state, OptimizedParameter parameter, string suffix,
        bool mustBeNonNegative)
    {
        var name = parameter.Name + suffix;
        if (!state.Tensors.TryGetValue(name, out var tensor) || tensor is null)
            throw new ArgumentException($"The optimiser state has no tensor '{name}'.", nameof(state));
        if (!tensor.Shape.AsSpan().SequenceEqual(parameter.Value.Shape))
            throw new ArgumentException(
                $"The optimiser state's tensor '{name}' has shape {ShapeCheck.Format(tensor.Shape)}; expected " +
                $"{ShapeCheck.Format(parameter.Value.Shape)}, the shape of parameter '{parameter.Name}'.", nameof(state));
        for (var i = 0; i < tensor.Data.Length; i++)
        {
            var v = tensor.Data[i];
            if (!float.IsFinite(v) || (mustBeNonNegative && v < 0))
                throw new ArgumentException(
                    $"The optimiser state's tensor '{name}' holds {v.ToString("G9", CultureInfo.InvariantCulture)} at " +
                    $"{ShapeCheck.FormatIndex(i, tensor.Shape)}; expected finite values" +
                    (mustBeNonNegative ? " ≥ 0." : "."), nameof(state));
        }
        return tensor;
    }

    /// <summary>Frees the moments. The parameters belong to the caller and are left alone.</summary>
    public void Dispose()
    {
        if (disposed)
            return;
        disposed = true;
        foreach (var tensor in expAvg.Concat(expAvgSq))
            tensor?.Dispose();
    }
}
