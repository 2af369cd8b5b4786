using RetNet.Ilgpu.Kernels.Rotation;
using RetNet.Ilgpu.Tensors;

namespace RetNet.Ilgpu.Model;

/// <summary>
/// The activations of one pass over up to <see cref="Capacity"/> token rows, allocated once and reused: a forward
/// pass allocates one, a decoding state keeps one for its steps so that a step allocates nothing on the device.
/// Ids holds the token ids followed by one start position per sequence.
/// </summary>
internal sealed class ModelWorkspace : IDisposable
{
    private readonly Tensor x, normed, q, k, v, g, o, sum, hidden, gate, decaySums;

    public ModelWorkspace(RetNetModel model, int capacity, int sequences, int logitRows)
    {
        var c = model.Config;
        var device = model.Device;
        Capacity = capacity;
        var tensors = new List<Tensor>();
        Tensor Make(params int[] shape)
        {
            var t = Tensor.Uninitialized(device, shape);
            tensors.Add(t);
            return t;
        }
        try
        {
            x = Make(capacity, c.EmbedDim);
            normed = Make(capacity, c.EmbedDim);
            q = Make(capacity, c.EmbedDim);
            k = Make(capacity, c.EmbedDim);
            v = Make(capacity, c.ValueEmbedDim);
            g = Make(capacity, c.ValueEmbedDim);
            o = Make(capacity, c.ValueEmbedDim);
            sum = Make(capacity, c.EmbedDim);
            hidden = Make(capacity, c.FfnEmbedDim);
            gate = Make(capacity, c.FfnEmbedDim);
            decaySums = Make(capacity, c.RetentionHeads);
            Logits = Make(Math.Max(logitRows, 1), c.VocabSize);
            Ids = IndexTensor.Zeros(device, capacity + sequences);
        }
        catch
        {
            foreach (var t in tensors)
                t.Dispose();
            throw;
        }
    }

    public int Capacity { get; }

    /// <summary>Token ids [rows] then start positions [sequences].</summary>
    public IndexTensor Ids { get; }

    /// <summary>Logits of the rows whose logits are read ([logitRows, V]).</summary>
    public Tensor Logits { get; }

    /// <summary>Views of the first <paramref name="rows"/> rows of every activation.</summary>
    public ModelRows Rows(int rows) => new(x.Slice(0, rows), normed.Slice(0, rows), q.Slice(0, rows),
        k.Slice(0, rows), v.Slice(0, rows), g.Slice(0, rows), o.Slice(0, rows), sum.Slice(0, rows),
        hidden.Slice(0, rows), gate.Slice(0, rows), decaySums.Slice(0, rows).Reshape(rows * decaySums.Dim(1)));

    public void Dispose()
    {
        foreach (var t in new[] { x, normed, q, k, v, g, o, sum, hidden, gate, decaySums, Logits })
            t.Dispose();
        Ids.Dispose();
    }
}

/// <summary>Row views [N, ·] of a workspace: the residual stream X, its normalised copy, the retention projections
/// Q, K [N, d], V, G, O [N, value dim], a branch output Branch [N, d], the FFN's Hidden, Gate [N, ffn] and the decay
/// sums s_t of every row and head [N·H], the head norm's per-row eps scale.</summary>
internal sealed record ModelRows(Tensor X, Tensor Normed, Tensor Q, Tensor K, Tensor V, Tensor G, Tensor O,
    Tensor Branch, Tensor Hidden, Tensor Gate, Tensor DecaySums)
{
    public int Count => X.Dim(0);

    /// <summary>The block's tensors as inference runs them: updated in place, each intermediate overwriting the one
    /// it came from (nothing is kept for a backward pass).</summary>
    public BlockTensors Block(bool preNorm)
    {
        var sublayer = new SublayerTensors(X, X, preNorm ? Normed : X, null);
        return new BlockTensors(sublayer, new RetentionTensors(Q, K, V, G, O, O, G, O, null, Branch), sublayer,
            new FeedForwardTensors(Hidden, Gate, Hidden, Hidden, Branch));
    }
}
