using System.Globalization;
using RetNet.Ilgpu.Attention;
using RetNet.Ilgpu.IO;
using RetNet.Ilgpu.Model;
using RetNet.Ilgpu.Tensors;

namespace RetNet.Ilgpu.Transformer;

/// <summary>
/// The decoding state of a <see cref="TransformerModel"/>: per layer, the keys and values of every position each
/// sequence has seen, [B, H, capacity, d/H] each, and each sequence's length. Unlike RetNet's state it grows with the
/// position: <see cref="BytesInUse"/> = 2 · layers · B · position · d · 4. Not thread-safe.
/// </summary>
public sealed class KvCache : IDisposable
{
    private Tensor[] keys;
    private Tensor[] values;
    private TransformerRows? stepRows;
    private IndexTensor? stepStarts, stepEnds;
    private int[] stepEndsHost = [];
    private bool disposed;

    private KvCache(TransformerModel model, int batch, int capacity, Tensor[] keys, Tensor[] values)
    {
        Model = model;
        Batch = batch;
        Capacity = capacity;
        this.keys = keys;
        this.values = values;
        Lengths = new int[batch];
    }

    /// <summary>The model the cache belongs to.</summary>
    public TransformerModel Model { get; }

    /// <summary>The sequences held.</summary>
    public int Batch { get; private set; }

    /// <summary>The most positions a sequence can hold before the cache grows (<see cref="EnsureCapacity"/>).</summary>
    public int Capacity { get; private set; }

    /// <summary>The positions each sequence holds (its next token's position).</summary>
    public IReadOnlyList<int> Positions => Lengths;

    internal int[] Lengths { get; private set; }

    /// <summary>Bytes allocated: 2 · layers · B · capacity · d · 4.</summary>
    public long AllocatedBytes => Model.KvCacheBytes(Batch, Capacity);

    /// <summary>Bytes holding cached positions: 2 · layers · d · 4 per position of every sequence.</summary>
    public long BytesInUse => Model.KvCacheBytes(1, Lengths.Sum());

    /// <summary>An empty cache for <paramref name="batch"/> sequences of up to <paramref name="capacity"/> positions.</summary>
    /// <exception cref="ArgumentOutOfRangeException">The batch or capacity is below 1.</exception>
    public static KvCache Create(TransformerModel model, int batch, int capacity)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentOutOfRangeException.ThrowIfLessThan(batch, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(capacity, 1);
        var c = model.Config;
        var tensors = new List<Tensor>();
        try
        {
            var k = new Tensor[c.Layers];
            var v = new Tensor[c.Layers];
            for (var i = 0; i < c.Layers; i++)
            {
                tensors.Add(k[i] = Tensor.Zeros(model.Device, batch, c.Heads, capacity, c.HeadDim));
                tensors.Add(v[i] = Tensor.Zeros(model.Device, batch, c.Heads, capacity, c.HeadDim));
            }
            return new KvCache(model, batch, capacity, k, v);
        }
        catch
        {
            foreach (var t in tensors)
                t.Dispose();
            throw;
        }
    }

    /// <summary>Makes sequence i a copy of sequence <paramref name="batchIndices"/>[i] (a beam search's reorder, or
    /// one prompt fanned out to many samples); indices may repeat and their count becomes the batch size.</summary>
    /// <exception cref="ArgumentException">No index, or an index is out of range.</exception>
    public void Reorder(IReadOnlyList<int> batchIndices)
    {
        var (newKeys, newValues, lengths) = Gather(batchIndices);
        foreach (var t in keys.Concat(values))
            t.Dispose();
        (keys, values, Lengths) = (newKeys, newValues, lengths);
        if (Batch != batchIndices.Count)
        {
            stepRows?.Dispose();
            stepRows = null;
        }
        Batch = batchIndices.Count;
    }

    /// <summary>A new cache whose sequence i is a copy of this cache's sequence <paramref name="batchIndices"/>[i];
    /// this cache is unchanged. The caller disposes the result.</summary>
    /// <exception cref="ArgumentException">No index, or an index is out of range.</exception>
    public KvCache Select(IReadOnlyList<int> batchIndices)
    {
        var (newKeys, newValues, lengths) = Gather(batchIndices);
        return new KvCache(Model, batchIndices.Count, Capacity, newKeys, newValues) { Lengths = lengths };
    }

    private (Tensor[] Keys, Tensor[] Values, int[] Lengths) Gather(IReadOnlyList<int> batchIndices)
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
        var made = new List<Tensor>();
        Tensor[] Copy(Tensor[] layers)
        {
            var result = new Tensor[layers.Length];
            for (var l = 0; l < layers.Length; l++)
            {
                var shape = layers[l].ShapeArray;
                shape[0] = batchIndices.Count;
                made.Add(result[l] = Tensor.Uninitialized(layers[l].Device, shape));
                for (var i = 0; i < batchIndices.Count; i++)
                    result[l].Slice(i, 1).CopyFrom(layers[l].Slice(batchIndices[i], 1));
            }
            return result;
        }
        try
        {
            return (Copy(keys), Copy(values), batchIndices.Select(i => Lengths[i]).ToArray());
        }
        catch
        {
            foreach (var t in made)
                t.Dispose();
            throw;
        }
    }

    /// <summary>Grows every layer's storage to at least <paramref name="positions"/> per sequence (to twice the
    /// current capacity at least, so a decoding loop grows it O(log n) times), keeping what is cached.</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="positions"/> is negative.</exception>
    public void EnsureCapacity(int positions)
    {
        ObjectDisposedException.ThrowIf(disposed, this);
        ArgumentOutOfRangeException.ThrowIfNegative(positions);
        if (positions <= Capacity)
            return;
        var capacity = (int)Math.Min(int.MaxValue, Math.Max(positions, 2L * Capacity));
        var made = new List<Tensor>();
        Tensor[] Grow(Tensor[] layers)
        {
            var result = new Tensor[layers.Length];
            for (var l = 0; l < layers.Length; l++)
            {
                var old = layers[l];
                int batch = old.Dim(0), heads = old.Dim(1), dh = old.Dim(3);
                made.Add(result[l] = Tensor.Zeros(old.Device, batch, heads, capacity, dh));
                var from = old.Reshape(batch * heads, Capacity * dh);
                var to = result[l].Reshape(batch * heads, capacity * dh);
                for (var row = 0; row < batch * heads; row++)
                    to.Slice(row, 1).Reshape(capacity * dh).Slice(0, Capacity * dh)
                        .CopyFrom(from.Slice(row, 1).Reshape(Capacity * dh));
            }
            return result;
        }
        Tensor[] newKeys, newValues;
        try
        {
            newKeys = Grow(keys);
            newValues = Grow(values);
        }
        catch
        {
            foreach (var t in made)
                t.Dispose();
            throw;
        }
        foreach (var t in keys.Concat(values))
            t.Dispose();
        (keys, values, Capacity) = (newKeys, newValues, capacity);
    }

    private const string FormatName = "retnet-ilgpu-kv-cache";

    /// <summary>
    /// Writes the cache to a safetensors file (atomically): <c>layers.{i}.keys</c> and <c>layers.{i}.values</c>
    /// [B, H, P, d/H] with P the longest sequence's length (positions past a sequence's own length are zeros or stale
    /// and never read), and the positions in the metadata, so a processed prompt can be resumed by <see cref="Load"/>.
    /// </summary>
    public void Save(string path)
    {
        ObjectDisposedException.ThrowIf(disposed, this);
        var longest = Math.Max(1, Lengths.Max());
        var tensors = new Dictionary<string, HostTensor>();
        for (var l = 0; l < keys.Length; l++)
        {
            tensors.Add($"layers.{l}.keys", Prefix(keys[l], longest));
            tensors.Add($"layers.{l}.values", Prefix(values[l], longest));
        }
        Safetensors.Write(path, tensors, new Dictionary<string, string>
        {
            ["format"] = FormatName,
            ["positions"] = string.Join(",", Lengths.Select(p => p.ToString(CultureInfo.InvariantCulture))),
        });
    }

    /// <summary>Reads a cache written by <see cref="Save"/> for <paramref name="model"/>, with room for
    /// <paramref name="capacity"/> positions per sequence (at least what the file holds).</summary>
    /// <exception cref="InvalidDataException">The file is not a KV cache, or its tensors or positions do not fit the
    /// model (the message names them).</exception>
    public static KvCache Load(string path, TransformerModel model, int capacity = 0)
    {
        ArgumentNullException.ThrowIfNull(model);
        var file = Safetensors.Read(path);
        if (!file.Metadata.TryGetValue("format", out var format) || format != FormatName ||
            !file.Metadata.TryGetValue("positions", out var text))
            throw new InvalidDataException($"{path} is not a Transformer KV cache (no '{FormatName}' metadata).");
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
        var c = model.Config;
        var held = Math.Max(1, positions.Max());
        var expected = Enumerable.Range(0, c.Layers)
            .SelectMany(l => new[] { $"layers.{l}.keys", $"layers.{l}.values" })
            .Select(name => (Name: name, Shape: new[] { positions.Length, c.Heads, held, c.HeadDim })).ToList();
        var missing = expected.Where(e => !file.Tensors.ContainsKey(e.Name)).Select(e => e.Name).ToList();
        var unexpected = file.Tensors.Keys.Where(k => expected.All(e => e.Name != k)).ToList();
        var wrongShape = expected
            .Where(e => file.Tensors.TryGetValue(e.Name, out var t) && !t.Shape.SequenceEqual(e.Shape))
            .Select(e => $"{e.Name}: expected {ShapeCheck.Format(e.Shape)}, got {ShapeCheck.Format(file.Tensors[e.Name].Shape)}")
            .ToList();
        if (missing.Count > 0 || unexpected.Count > 0 || wrongShape.Count > 0)
            throw new InvalidDataException(
                $"{path}: {new CheckpointMismatchException(missing, unexpected, wrongShape).Message}");
        var cache = Create(model, positions.Length, Math.Max(capacity, held));
        try
        {
            for (var l = 0; l < c.Layers; l++)
            {
                Fill(cache.keys[l], file.Tensors[$"layers.{l}.keys"], held);
                Fill(cache.values[l], file.Tensors[$"layers.{l}.values"], held);
            }
            positions.CopyTo(cache.Lengths, 0);
            return cache;
        }
        catch
        {
            cache.Dispose();
            throw;
        }
    }

    /// <summary>Positions [0, count) of every (sequence, head) of a [B, H, capacity, d/H] layer, on the host.</summary>
    private static HostTensor Prefix(Tensor layer, int count)
    {
        int rows = layer.Dim(0) * layer.Dim(1), capacity = layer.Dim(2), dh = layer.Dim(3);
        var all = layer.ToHost();
        var data = new float[rows * count * dh];
        for (var r = 0; r < rows; r++)
            Array.Copy(all, (long)r * capacity * dh, data, (long)r * count * dh, count * dh);
        return new HostTensor([layer.Dim(0), layer.Dim(1), count, dh], data);
    }

    private static void Fill(Tensor layer, HostTensor prefix, int count)
    {
        int rows = layer.Dim(0) * layer.Dim(1), capacity = layer.Dim(2), dh = layer.Dim(3);
        var data = new float[layer.Length];
        for (var r = 0; r < rows; r++)
            Array.Copy(prefix.Data, (long)r * count * dh, data, (long)r * capacity * dh, count * dh);
        layer.CopyFromHost(data);
    }

    /// <summary>Forgets every position at or past <paramref name="positions"/> in every sequence (a rollback): the
    /// next step writes there. Sequences shorter than that are left as they are.</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="positions"/> is negative.</exception>
    public void Truncate(int positions)
    {
        ObjectDisposedException.ThrowIf(disposed, this);
        ArgumentOutOfRangeException.ThrowIfNegative(positions);
        for (var b = 0; b < Batch; b++)
            Lengths[b] = Math.Min(Lengths[b], positions);
    }

    /// <summary>The one-sequence view a prefill writes.</summary>
    internal View Sequence(int b) => new(this, b, 1, IsPrefill: true);

    /// <summary>The whole-batch view of a decoding step, and the rows the step runs on (allocated once).</summary>
    internal TransformerRows StepRows() => stepRows ??= new TransformerRows(Model, Batch, Batch);

    internal View Step => new(this, 0, Batch, IsPrefill: false);

    /// <summary>
    /// Uploads, once per decoding step, where each sequence's new token goes (its length) and how many positions its
    /// query then sees (length + 1), so that every layer's append and attention read them on the device without a
    /// host round trip. The host has checked the capacity (<see cref="EnsureCapacity"/>).
    /// </summary>
    internal void PrepareStep()
    {
        if (stepStarts is null || stepStarts.Length != Batch)
        {
            stepStarts?.Dispose();
            stepEnds?.Dispose();
            stepStarts = stepEnds = null;
            stepStarts = IndexTensor.FromHost(Model.Device, new int[Batch], Batch);
            stepEnds = IndexTensor.FromHost(Model.Device, new int[Batch], Batch);
            stepEndsHost = new int[Batch];
            StepInput = new int[2 * Batch];
        }
        for (var b = 0; b < Batch; b++)
            stepEndsHost[b] = Lengths[b] + 1;
        stepStarts.CopyFromHost(Lengths);
        stepEnds!.CopyFromHost(stepEndsHost);
    }

    /// <summary>The host buffer a step's token ids and positions are gathered in before their upload ([2·B]),
    /// kept with the cache so that a step allocates nothing.</summary>
    internal int[] StepInput { get; private set; } = [];

    /// <summary>
    /// Sequences [First, First + Count) of the cache: what one pass of the model appends to and attends through.
    /// A prefill view starts at position 0; a step view appends at each sequence's length.
    /// </summary>
    internal sealed record View(KvCache Cache, int First, int Count, bool IsPrefill)
    {
        /// <summary>Writes k4, v4 [Count, T, H, d/H] at positions Lengths[b] … Lengths[b] + T − 1 of layer
        /// <paramref name="layer"/>.</summary>
        public void Append(int layer, Tensor k4, Tensor v4)
        {
            var keys = Cache.keys[layer].Slice(First, Count);
            var values = Cache.values[layer].Slice(First, Count);
            if (!IsPrefill && Cache.stepStarts is { } starts)
            {
                CausalAttention.AppendToCache(k4, keys, starts);
                CausalAttention.AppendToCache(v4, values, starts);
                return;
            }
            var lengths = Cache.Lengths.AsSpan(First, Count).ToArray();
            CausalAttention.AppendToCache(k4, keys, lengths);
            CausalAttention.AppendToCache(v4, values, lengths);
        }

        /// <summary>o4 [Count, 1, H, d/H] = attention of q4 over every position cached for each sequence, the one
        /// just appended included.</summary>
        public void Attend(int layer, Tensor q4, float scale, Tensor o4) =>
            CausalAttention.Step(q4, Cache.keys[layer].Slice(First, Count), Cache.values[layer].Slice(First, Count),
                Cache.stepEnds ?? throw new InvalidOperationException("A step's lengths were not prepared."), scale,
                o4);
    }

    /// <summary>Frees the cache.</summary>
    public void Dispose()
    {
        if (disposed)
            return;
        disposed = true;
        foreach (var t in keys.Concat(values))
            t.Dispose();
        stepRows?.Dispose();
        stepStarts?.Dispose();
        stepEnds?.Dispose();
    }
}
