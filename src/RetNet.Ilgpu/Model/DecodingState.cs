using System.Globalization;
using RetNet.Ilgpu.IO;
using RetNet.Ilgpu.Tensors;

namespace RetNet.Ilgpu.Model;

/// <summary>
/// What decoding carries from token to token for a batch of sequences, whichever the token mixer: per block, a
/// retention state [B, H, Dk, Dv] (fp32, its size independent of the position) or a KV cache (keys and values of every
/// position seen, growing with it); and per sequence its absolute position (the tokens seen, used by the rotation).
/// Every part is per sequence; <see cref="Reorder"/> moves all of them together. Also keeps a decoding step's
/// buffers, so a step allocates nothing on the device. Made by <see cref="ILanguageModel.Prefill"/> or
/// <see cref="ILanguageModel.CreateState"/>; owned by the caller: dispose it. Not thread-safe, like its model.
/// </summary>
public sealed class DecodingState : IDisposable
{
    private LayerState[] layers;
    private ModelWorkspace? stepWorkspace;
    private bool disposed;

    internal DecodingState(LanguageModel model, LayerState[] layers, int[] positions)
    {
        Model = model;
        this.layers = layers;
        PositionArray = positions;
    }

    /// <summary>The model the state belongs to.</summary>
    public ILanguageModel Model { get; }

    /// <summary>B, the number of sequences.</summary>
    public int Batch => PositionArray.Length;

    /// <summary>The position of the next token of each sequence (tokens seen so far).</summary>
    public IReadOnlyList<int> Positions => PositionArray;

    /// <summary>
    /// The state's tensors by name: <c>layers.{i}.retention_state</c> [B, H, Dk, Dv] for RetNet,
    /// <c>layers.{i}.keys</c> and <c>layers.{i}.values</c> [B, H, capacity, d/H] for a Transformer (positions past a
    /// sequence's own are zeros or stale and never read).
    /// </summary>
    public IReadOnlyDictionary<string, Tensor> Tensors
    {
        get
        {
            ObjectDisposedException.ThrowIf(disposed, this);
            return layers.SelectMany((layer, i) => layer.Tensors.Select(t => (Name: $"layers.{i}.{t.Name}",
                    Tensor: layer.Rows == Batch ? t.Tensor : t.Tensor.Slice(0, Batch))))
                .ToDictionary(t => t.Name, t => t.Tensor);
        }
    }

    /// <summary>Device bytes the state's tensors occupy (free sequence slots included, see
    /// <see cref="SequenceCapacity"/>): the same at every position for retention, growing with the capacity for a KV
    /// cache.</summary>
    public long Bytes => layers.Sum(l => l.Tensors.Sum(t => t.Tensor.Bytes));

    /// <summary>The sequences the state has room for before <see cref="Append"/> must reallocate it (≥
    /// <see cref="Batch"/>): <see cref="Keep"/> leaves the slots of the sequences it drops free for the next.</summary>
    public int SequenceCapacity => layers.Length > 0 ? layers[0].Rows : Batch;

    /// <summary>The positions each sequence can hold before the next step grows the state (a KV cache); null when
    /// the state does not grow (retention).</summary>
    public int? Capacity => layers.Length > 0 ? layers[0].Capacity : null;

    /// <summary>Whether <see cref="Truncate"/> can forget positions (a KV cache can; retention's state cannot).</summary>
    public bool CanTruncate => Shell.Mixers.CanTruncate;

    internal int[] PositionArray { get; private set; }

    internal LanguageModel Shell => (LanguageModel)Model;

    internal LayerStateView Layer(int layer, int first, int count) => layers[layer].View(first, count);

    internal static DecodingState Zeros(LanguageModel model, int batch, int capacity)
    {
        if (batch < 1)
            throw new ArgumentOutOfRangeException(nameof(batch), batch, $"Argument 'batch' is {batch}; expected ≥ 1.");
        return new DecodingState(model, Allocate(model.Layers, _ => model.Mixers.CreateState(batch, capacity)),
            new int[batch]);
    }

    /// <summary>An independent copy (device tensors copied).</summary>
    public DecodingState Clone()
    {
        ObjectDisposedException.ThrowIf(disposed, this);
        RequireSequences();
        var all = Enumerable.Range(0, Batch).ToArray();
        return new DecodingState(Shell, Allocate(layers.Length, l => layers[l].Gather(all)),
            (int[])PositionArray.Clone());
    }

    /// <summary>
    /// Rebuilds the batch from the given sequences, in place: new sequence i is old sequence
    /// <paramref name="batchIndices"/>[i] (repeats allowed, so the batch may grow or shrink — beam search, or one prompt
    /// fanned out to many samples). Every block's state and every position move together.
    /// </summary>
    /// <exception cref="ArgumentException">No index, or an index outside [0, B).</exception>
    public void Reorder(IReadOnlyList<int> batchIndices)
    {
        var gathered = Gather(batchIndices);
        foreach (var layer in layers)
            layer.Dispose();
        layers = gathered;
        PositionArray = batchIndices.Select(i => PositionArray[i]).ToArray();
        stepWorkspace?.Dispose();
        stepWorkspace = null;
    }

    /// <summary>A new state whose sequence i is a copy of this one's sequence <paramref name="batchIndices"/>[i]; this
    /// state is unchanged. The caller disposes the result.</summary>
    /// <exception cref="ArgumentException">No index, or an index is out of range.</exception>
    public DecodingState Select(IReadOnlyList<int> batchIndices) =>
        new(Shell, Gather(batchIndices), batchIndices.Select(i => PositionArray[i]).ToArray());

    /// <summary>
    /// A new state holding the sequences of every state of <paramref name="states"/>, in order (the join of continuous
    /// batching, where <see cref="Select"/> is the leave): each block's retention states stacked along the batch, or
    /// its KV caches stacked in one as wide as the widest (each sequence keeps its own position); the states are
    /// unchanged. The caller disposes the result. <see cref="Append"/> joins in place instead.
    /// </summary>
    /// <exception cref="ArgumentException">No state, a null state, or states of different models.</exception>
    public static DecodingState Concat(IReadOnlyList<DecodingState> states)
    {
        ArgumentNullException.ThrowIfNull(states);
        if (states.Count == 0)
            throw new ArgumentException("Argument 'states' is empty; expected at least one state.", nameof(states));
        for (var i = 0; i < states.Count; i++)
        {
            var state = states[i] ?? throw new ArgumentException($"Argument 'states' has null at index {i}.",
                nameof(states));
            ObjectDisposedException.ThrowIf(state.disposed, state);
            SameModel(states[0], state, $"at index {i}", nameof(states));
        }
        var first = states[0];
        var total = states.Sum(s => s.Batch);
        if (total == 0)
            throw new ArgumentException("Argument 'states' holds no sequences; expected at least one.", nameof(states));
        var widest = states.Max(s => s.layers.Length > 0 ? s.layers[0].Capacity ?? 0 : 0);
        var layers = Allocate(first.layers.Length, l => first.layers[l].Resized(total, first.Batch, widest));
        try
        {
            var at = first.Batch;
            foreach (var state in states.Skip(1))
            {
                for (var l = 0; l < layers.Length; l++)
                    layers[l].CopySequences(state.layers[l], 0, at, state.Batch, state.LongestPosition);
                at += state.Batch;
            }
        }
        catch
        {
            foreach (var layer in layers)
                layer.Dispose();
            throw;
        }
        return new DecodingState(first.Shell, layers, states.SelectMany(s => s.PositionArray).ToArray());
    }

    /// <summary>
    /// Joins <paramref name="other"/>'s sequences to this state's, in place, after its own (continuous batching's
    /// join without a copy of the batch): they take free slots (<see cref="SequenceCapacity"/>), and where there are
    /// too few the storage is reallocated with twice the room at least, so joining one by one reallocates O(log n)
    /// times. A KV cache grows to hold <paramref name="other"/>'s positions. <paramref name="other"/> is unchanged.
    /// </summary>
    /// <exception cref="ArgumentException"><paramref name="other"/> is this state or belongs to another model.</exception>
    public void Append(DecodingState other)
    {
        ObjectDisposedException.ThrowIf(disposed, this);
        ArgumentNullException.ThrowIfNull(other);
        ObjectDisposedException.ThrowIf(other.disposed, other);
        if (ReferenceEquals(other, this))
            throw new ArgumentException("Argument 'other' is this state; append a Clone of it instead.", nameof(other));
        SameModel(this, other, "", nameof(other));
        var total = Batch + other.Batch;
        if (total > SequenceCapacity)
            ReserveSequences(Math.Max(total, 2 * SequenceCapacity));
        var longest = other.LongestPosition;
        Grow(longest);
        for (var l = 0; l < layers.Length; l++)
            layers[l].CopySequences(other.layers[l], 0, Batch, other.Batch, longest);
        PositionArray = [.. PositionArray, .. other.PositionArray];
    }

    /// <summary>
    /// Keeps only the sequences <paramref name="batchIndices"/> (strictly increasing, possibly none), in place and in
    /// their order (continuous batching's leave without a copy of the batch): the kept ones move down to fill the
    /// gaps, and the slots freed stay allocated for <see cref="Append"/>. A state left with no sequence can only be
    /// appended to, reserved or disposed.
    /// </summary>
    /// <exception cref="ArgumentException">An index outside [0, B), or not greater than the one before it.</exception>
    public void Keep(IReadOnlyList<int> batchIndices)
    {
        ObjectDisposedException.ThrowIf(disposed, this);
        ArgumentNullException.ThrowIfNull(batchIndices);
        for (var i = 0; i < batchIndices.Count; i++)
            if ((uint)batchIndices[i] >= (uint)Batch || (i > 0 && batchIndices[i] <= batchIndices[i - 1]))
                throw new ArgumentException(
                    $"Argument 'batchIndices' has {batchIndices[i]} at index {i}; expected strictly increasing " +
                    $"indices in [0, {Batch}).", nameof(batchIndices));
        for (var i = 0; i < batchIndices.Count; i++)
            if (batchIndices[i] != i)
                foreach (var layer in layers)
                    layer.CopySequences(layer, batchIndices[i], i, 1, PositionArray[batchIndices[i]]);
        PositionArray = batchIndices.Select(i => PositionArray[i]).ToArray();
    }

    /// <summary>Makes room for <paramref name="sequences"/> sequences now (reallocating the storage once, keeping the
    /// current ones), so that <see cref="Append"/> up to there copies only the sequences it joins.</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="sequences"/> is negative.</exception>
    public void ReserveSequences(int sequences)
    {
        ObjectDisposedException.ThrowIf(disposed, this);
        ArgumentOutOfRangeException.ThrowIfNegative(sequences);
        if (sequences <= SequenceCapacity)
            return;
        var resized = Allocate(layers.Length, l => layers[l].Resized(sequences, Batch, 0));
        foreach (var layer in layers)
            layer.Dispose();
        layers = resized;
        stepWorkspace?.Dispose();
        stepWorkspace = null;
    }

    /// <summary>The most positions any sequence holds (0 for none).</summary>
    private int LongestPosition => PositionArray.Length == 0 ? 0 : PositionArray.Max();

    private static void SameModel(DecodingState first, DecodingState other, string where, string parameter)
    {
        if (!ReferenceEquals(other.Model, first.Model))
            throw new ArgumentException(
                $"Argument '{parameter}' has a state of another model{(where.Length > 0 ? " " + where : "")} (a " +
                $"{other.Model.Architecture} with {other.Model.ParameterCount:N0} parameters, not the " +
                $"{first.Model.Architecture} of this state); states join only within one model.", parameter);
    }

    private LayerState[] Gather(IReadOnlyList<int> batchIndices)
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
        return Allocate(layers.Length, l => layers[l].Gather(batchIndices));
    }

    /// <summary>Forgets every position at or past <paramref name="positions"/> in every sequence (a rollback): the next
    /// step writes there. Sequences shorter than that are left as they are. Only a KV cache can forget
    /// (<see cref="CanTruncate"/>): retention's state has summed every token into one matrix.</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="positions"/> is negative.</exception>
    /// <exception cref="NotSupportedException">The state cannot forget positions (retention).</exception>
    public void Truncate(int positions)
    {
        ObjectDisposedException.ThrowIf(disposed, this);
        ArgumentOutOfRangeException.ThrowIfNegative(positions);
        if (!CanTruncate)
            throw new NotSupportedException(
                $"A {Model.Architecture} decoding state cannot forget positions: retention sums every token into one " +
                "state. Clone the state (Clone) before the tokens you may want to undo instead.");
        for (var b = 0; b < Batch; b++)
            PositionArray[b] = Math.Min(PositionArray[b], positions);
    }

    /// <summary>Makes room for <paramref name="positions"/> positions per sequence now, so that decoding up to there
    /// never grows the state (a KV cache; nothing for retention).</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="positions"/> is negative.</exception>
    public void Reserve(int positions)
    {
        ObjectDisposedException.ThrowIf(disposed, this);
        ArgumentOutOfRangeException.ThrowIfNegative(positions);
        foreach (var layer in layers)
            layer.Reserve(positions, amortized: false);
    }

    /// <summary>Makes room for <paramref name="positions"/> before a pass writes there, growing a full KV cache to
    /// twice its size at least.</summary>
    internal void Grow(int positions)
    {
        foreach (var layer in layers)
            layer.Reserve(positions, amortized: true);
    }

    /// <summary>
    /// Writes the state to a safetensors file (atomically): the tensors of <see cref="Tensors"/> (a KV cache up to the
    /// longest sequence's position) and metadata with the positions, so a processed prompt can be resumed later by
    /// <see cref="Load"/>.
    /// </summary>
    public void Save(string path)
    {
        ObjectDisposedException.ThrowIf(disposed, this);
        RequireSequences();
        var longest = Math.Max(1, PositionArray.Max());
        var tensors = new Dictionary<string, HostTensor>();
        for (var i = 0; i < layers.Length; i++)
            foreach (var (name, tensor) in layers[i].Export(longest, Batch))
                tensors.Add($"layers.{i}.{name}", tensor);
        Safetensors.Write(path, tensors, new Dictionary<string, string>
        {
            ["format"] = Shell.Mixers.StateFormat,
            ["positions"] = string.Join(",", PositionArray.Select(p => p.ToString(CultureInfo.InvariantCulture))),
        });
    }

    /// <summary>Reads a state written by <see cref="Save"/> for <paramref name="model"/>, with room for
    /// <paramref name="capacity"/> positions per sequence where the state grows (at least what the file holds).</summary>
    /// <exception cref="InvalidDataException">The file is not a decoding state of this architecture, or its tensors or
    /// positions do not fit the model (the message names them).</exception>
    public static DecodingState Load(string path, ILanguageModel model, int capacity = 0)
    {
        ArgumentNullException.ThrowIfNull(model);
        var shell = model as LanguageModel ?? throw new ArgumentException(
            $"Argument 'model' is a {model.GetType().Name}; decoding states belong to the library's models.",
            nameof(model));
        var mixers = shell.Mixers;
        var file = Safetensors.Read(path);
        if (!file.Metadata.TryGetValue("format", out var format) || format != mixers.StateFormat ||
            !file.Metadata.TryGetValue("positions", out var text))
            throw new InvalidDataException(
                $"{path} is not a {model.Architecture} decoding state (no '{mixers.StateFormat}' metadata).");
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
        var longest = Math.Max(1, positions.Max());
        var expected = Enumerable.Range(0, shell.Layers)
            .SelectMany(i => mixers.SavedState($"layers.{i}.", positions.Length, longest)).ToList();
        var missing = expected.Where(e => !file.Tensors.ContainsKey(e.Name)).Select(e => e.Name).ToList();
        var unexpected = file.Tensors.Keys.Where(k => expected.All(e => e.Name != k)).ToList();
        var wrongShape = expected
            .Where(e => file.Tensors.TryGetValue(e.Name, out var t) && !t.Shape.SequenceEqual(e.Shape))
            .Select(e => $"{e.Name}: expected {ShapeCheck.Format(e.Shape)}, got {ShapeCheck.Format(file.Tensors[e.Name].Shape)}")
            .ToList();
        if (missing.Count > 0 || unexpected.Count > 0 || wrongShape.Count > 0)
            throw new InvalidDataException(
                $"{path}: {new CheckpointMismatchException(missing, unexpected, wrongShape).Message}");
        var layers = Allocate(shell.Layers,
            i => mixers.LoadState(file.Tensors, $"layers.{i}.", positions.Length, longest, capacity));
        return new DecodingState(shell, layers, positions);
    }

    /// <summary>The buffers of a decoding step of this batch, made on first use for every slot
    /// (<see cref="SequenceCapacity"/>), so a batch that changes within its slots keeps them.</summary>
    internal ModelWorkspace StepWorkspace()
    {
        ObjectDisposedException.ThrowIf(disposed, this);
        RequireSequences();
        if (stepWorkspace is { } w && w.Sequences >= Batch)
            return w;
        stepWorkspace?.Dispose();
        stepWorkspace = null;
        var rows = Math.Max(Batch, SequenceCapacity);
        return stepWorkspace = ModelWorkspace.ForInference(Shell, rows, rows, rows);
    }

    /// <summary>Throws unless the state holds a sequence (after <see cref="Keep"/> dropped them all it holds none).</summary>
    internal void RequireSequences()
    {
        if (Batch == 0)
            throw new InvalidOperationException(
                "The decoding state holds no sequences (Keep dropped them all); Append one before using it.");
    }

    private static LayerState[] Allocate(int count, Func<int, LayerState> make)
    {
        var result = new List<LayerState>();
        try
        {
            for (var i = 0; i < count; i++)
                result.Add(make(i));
            return [.. result];
        }
        catch
        {
            foreach (var s in result)
                s.Dispose();
            throw;
        }
    }

    /// <summary>Frees the states and the step buffers.</summary>
    public void Dispose()
    {
        if (disposed)
            return;
        disposed = true;
        foreach (var layer in layers)
            layer.Dispose();
        stepWorkspace?.Dispose();
    }
}
