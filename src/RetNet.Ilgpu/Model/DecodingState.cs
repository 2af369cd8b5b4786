using System.Globalization;
using RetNet.Ilgpu.IO;
using RetNet.Ilgpu.Tensors;

namespace RetNet.Ilgpu.Model;

/// <summary>
/// What decoding carries from token to token for a batch of sequences: per layer the retention state [B, H, Dk, Dv]
/// (fp32, its size independent of the position) and per sequence its absolute position (the number of tokens seen,
/// used by the rotation). Every part is per sequence; <see cref="Reorder"/> moves all of them together. Also keeps
/// the step's scratch buffers, so a step allocates nothing on the device. Owned by the caller: dispose it.
/// </summary>
public sealed class DecodingState : IDisposable
{
    private const string FormatName = "retnet-decoding-state";
    private Tensor[] layers;
    private ModelWorkspace? workspace;
    private bool disposed;

    private DecodingState(RetNetModel model, Tensor[] layers, int[] positions)
    {
        Model = model;
        this.layers = layers;
        PositionArray = positions;
        StepInput = new int[2 * positions.Length];
    }

    /// <summary>The model the state belongs to.</summary>
    public RetNetModel Model { get; }

    /// <summary>B, the number of sequences.</summary>
    public int Batch => PositionArray.Length;

    /// <summary>The position of the next token of each sequence (tokens seen so far).</summary>
    public IReadOnlyList<int> Positions => PositionArray;

    /// <summary>Per layer, the retention state [B, H, Dk, Dv].</summary>
    public IReadOnlyList<Tensor> LayerStates
    {
        get
        {
            ObjectDisposedException.ThrowIf(disposed, this);
            return layers;
        }
    }

    /// <summary>Bytes of the retention states, the same at every position.</summary>
    public long Bytes => layers.Sum(l => 4L * l.Length);

    internal int[] PositionArray { get; private set; }

    /// <summary>Tokens then positions of the current step, uploaded in one copy.</summary>
    internal int[] StepInput { get; private set; }

    /// <summary>A state of zeros at position 0 for <paramref name="batch"/> sequences.</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="batch"/> is less than 1.</exception>
    public static DecodingState Zeros(RetNetModel model, int batch)
    {
        ArgumentNullException.ThrowIfNull(model);
        if (batch < 1)
            throw new ArgumentOutOfRangeException(nameof(batch), batch, $"Argument 'batch' is {batch}; expected ≥ 1.");
        return new DecodingState(model, Allocate(model, batch, l => Tensor.Zeros(model.Device, l)), new int[batch]);
    }

    /// <summary>An independent copy (device tensors copied).</summary>
    public DecodingState Clone()
    {
        ObjectDisposedException.ThrowIf(disposed, this);
        var copies = Allocate(Model, Batch, shape => Tensor.Uninitialized(Model.Device, shape));
        for (var i = 0; i < copies.Length; i++)
            copies[i].CopyFrom(layers[i]);
        return new DecodingState(Model, copies, (int[])PositionArray.Clone());
    }

    /// <summary>
    /// Rebuilds the batch from the given sequences, in place: new sequence i is old sequence
    /// <paramref name="batchIndices"/>[i] (repeats allowed, so the batch may grow or shrink — beam search). Every layer's
    /// state and every position move together.
    /// </summary>
    /// <exception cref="ArgumentException">No index, or an index outside [0, B).</exception>
    public void Reorder(IReadOnlyList<int> batchIndices)
    {
        ObjectDisposedException.ThrowIf(disposed, this);
        ArgumentNullException.ThrowIfNull(batchIndices);
        if (batchIndices.Count == 0)
            throw new ArgumentException("Argument 'batchIndices' is empty; expected at least one index.",
                nameof(batchIndices));
        for (var i = 0; i < batchIndices.Count; i++)
            if ((uint)batchIndices[i] >= (uint)Batch)
                throw new ArgumentException(
                    $"Argument 'batchIndices' has {batchIndices[i]} at index {i}; expected an index in [0, {Batch}).",
                    nameof(batchIndices));
        var reordered = Allocate(Model, batchIndices.Count, shape => Tensor.Uninitialized(Model.Device, shape));
        for (var l = 0; l < layers.Length; l++)
        {
            for (var i = 0; i < batchIndices.Count; i++)
                reordered[l].Slice(i, 1).CopyFrom(layers[l].Slice(batchIndices[i], 1));
            layers[l].Dispose();
        }
        layers = reordered;
        PositionArray = batchIndices.Select(i => PositionArray[i]).ToArray();
        if (StepInput.Length != 2 * PositionArray.Length)
        {
            StepInput = new int[2 * PositionArray.Length];
            workspace?.Dispose();
            workspace = null;
        }
    }

    /// <summary>
    /// Writes the state to a safetensors file (atomically): tensors <c>layers.{i}.retention_state</c> [B, H, Dk, Dv]
    /// and metadata with the positions, so a processed prompt can be resumed later by <see cref="Load"/>.
    /// </summary>
    public void Save(string path)
    {
        ObjectDisposedException.ThrowIf(disposed, this);
        var tensors = new Dictionary<string, HostTensor>();
        for (var i = 0; i < layers.Length; i++)
            tensors.Add(TensorName(i), HostTensor.From(layers[i]));
        var metadata = new Dictionary<string, string>
        {
            ["format"] = FormatName,
            ["positions"] = string.Join(",", PositionArray.Select(p => p.ToString(CultureInfo.InvariantCulture))),
        };
        Safetensors.Write(path, tensors, metadata);
    }

    /// <summary>Reads a state written by <see cref="Save"/> for <paramref name="model"/>.</summary>
    /// <exception cref="InvalidDataException">The file is not a decoding state, or its tensors or positions do not fit
    /// the model (the message names them).</exception>
    public static DecodingState Load(string path, RetNetModel model)
    {
        ArgumentNullException.ThrowIfNull(model);
        var file = Safetensors.Read(path);
        if (!file.Metadata.TryGetValue("format", out var format) || format != FormatName ||
            !file.Metadata.TryGetValue("positions", out var text))
            throw new InvalidDataException($"{path} is not a RetNet decoding state (no '{FormatName}' metadata).");
        int[] positions;
        try
        {
            positions = text.Split(',').Select(p => int.Parse(p, NumberStyles.None, CultureInfo.InvariantCulture))
                .ToArray();
        }
        catch (Exception e) when (e is FormatException or OverflowException)
        {
            throw new InvalidDataException($"{path}: positions '{text}' are not non-negative integers.");
        }
        var expected = Enumerable.Range(0, model.Config.Layers)
            .Select(i => (Name: TensorName(i), Shape: model.StateShape(positions.Length))).ToList();
        var missing = expected.Where(e => !file.Tensors.ContainsKey(e.Name)).Select(e => e.Name).ToList();
        var unexpected = file.Tensors.Keys.Where(k => expected.All(e => e.Name != k)).ToList();
        var wrongShape = expected
            .Where(e => file.Tensors.TryGetValue(e.Name, out var t) && !t.Shape.SequenceEqual(e.Shape))
            .Select(e => $"{e.Name}: expected {ShapeCheck.Format(e.Shape)}, got {ShapeCheck.Format(file.Tensors[e.Name].Shape)}")
            .ToList();
        if (missing.Count > 0 || unexpected.Count > 0 || wrongShape.Count > 0)
            throw new InvalidDataException($"{path}: {new CheckpointMismatchException(missing, unexpected, wrongShape).Message}");
        var index = 0;
        var tensors = Allocate(model, positions.Length, _ => file.Tensors[TensorName(index++)].ToDevice(model.Device));
        return new DecodingState(model, tensors, positions);
    }

    internal ModelWorkspace StepWorkspace()
    {
        ObjectDisposedException.ThrowIf(disposed, this);
        return workspace ??= new ModelWorkspace(Model, Batch, Batch, Batch);
    }

    private static string TensorName(int layer) => $"layers.{layer}.retention_state";

    private static Tensor[] Allocate(RetNetModel model, int batch, Func<int[], Tensor> make)
    {
        var result = new List<Tensor>();
        try
        {
            for (var i = 0; i < model.Config.Layers; i++)
                result.Add(make(model.StateShape(batch)));
            return result.ToArray();
        }
        catch
        {
            foreach (var t in result)
                t.Dispose();
            throw;
        }
    }

    /// <summary>Frees the states and the step buffers.</summary>
    public void Dispose()
    {
        if (disposed)
            return;
        disposed = true;
        foreach (var t in layers)
            t.Dispose();
        workspace?.Dispose();
    }
}
