using System.Globalization;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Text;
using RetNet.Ilgpu.Model;
using RetNet.Ilgpu.Tensors;

namespace RetNet.Ilgpu.Training.Distributed;

/// <summary>
/// Data-parallel gradient reduction over MPI with bits that do not depend on timing: the gradients go device → host
/// into one flat buffer, which travels in buckets of at most <see cref="BucketFloats"/> floats; each bucket is
/// allgathered (every rank receives every rank's bucket, in rank order) and summed locally in rank order
/// (<see cref="RankOrderSum"/>), never by MPI_SUM, whose order of addition MPI leaves to the implementation; the sums
/// go back host → device. Memory: the flat buffer (one float per parameter) and Size buckets.
/// </summary>
public sealed class MpiGradientReducer : IGradientReducer
{
    /// <summary>The default bucket: 4M floats (16 MiB sent, Size × 16 MiB received per call).</summary>
    public const int DefaultBucketFloats = 4 << 20;

    // A fact travels as the SHA-256 of its name and value and the start of its value, for the message.
    private const int HashBytes = 32;
    private const int PreviewBytes = 96;
    private const int FactBytes = HashBytes + PreviewBytes;

    private readonly MpiWorld world;
    private float[] flat = [];
    private float[] gathered = [];
    private readonly double[] losses;

    /// <summary>A reducer over <paramref name="world"/> with buckets of <paramref name="bucketFloats"/> floats.</summary>
    /// <exception cref="ArgumentOutOfRangeException">The bucket is below 1 float.</exception>
    public MpiGradientReducer(MpiWorld world, int bucketFloats = DefaultBucketFloats)
    {
        ArgumentNullException.ThrowIfNull(world);
        ArgumentOutOfRangeException.ThrowIfLessThan(bucketFloats, 1);
        this.world = world;
        BucketFloats = bucketFloats;
        losses = new double[world.Size];
    }

    /// <summary>The most floats one allgather sends.</summary>
    public int BucketFloats { get; }

    /// <inheritdoc/>
    public int Workers => world.Size;

    /// <inheritdoc/>
    public int Rank => world.Rank;

    /// <summary>This worker's index among the workers on its machine (it picks the device).</summary>
    public int LocalRank => world.LocalRank;

    /// <inheritdoc/>
    public double Reduce(ModelGradients gradients, double loss)
    {
        ArgumentNullException.ThrowIfNull(gradients);
        var tensors = gradients.Tensors.Values;
        var total = tensors.Sum(t => (long)t.Length);
        if (total > Array.MaxLength)
            throw new NotSupportedException(
                $"The model has {total} gradient elements; reducing through one host buffer holds at most " +
                $"{Array.MaxLength}.");
        if (flat.Length != total)
        {
            flat = new float[total];
            gathered = new float[(long)Math.Min(BucketFloats, Math.Max(total, 1)) * world.Size];
        }
        var offset = 0L;
        foreach (var tensor in tensors)
        {
            tensor.CopyToHost(flat.AsSpan((int)offset, tensor.Length));
            offset += tensor.Length;
        }
        for (var start = 0L; start < total; start += BucketFloats)
        {
            var bucket = flat.AsSpan((int)start, (int)Math.Min(BucketFloats, total - start));
            var all = gathered.AsSpan(0, bucket.Length * world.Size);
            world.Allgather(bucket, all);
            RankOrderSum.Sum(all, world.Size, bucket);
        }
        offset = 0;
        foreach (var tensor in tensors)
        {
            tensor.CopyFromHost(flat.AsSpan((int)offset, tensor.Length));
            offset += tensor.Length;
        }
        Span<double> mine = [loss];
        world.Allgather(MemoryMarshal.AsBytes(mine), MemoryMarshal.AsBytes(losses.AsSpan()));
        return RankOrderSum.Sum(losses);
    }

    /// <inheritdoc/>
    public void Broadcast(IReadOnlyList<Tensor> tensors)
    {
        ArgumentNullException.ThrowIfNull(tensors);
        foreach (var tensor in tensors)
        {
            var values = new float[tensor.Length];
            tensor.CopyToHost(values);
            world.Broadcast(values.AsSpan());
            tensor.CopyFromHost(values);
        }
    }

    /// <inheritdoc/>
    public void Agree(IReadOnlyList<KeyValuePair<string, string>> facts)
    {
        ArgumentNullException.ThrowIfNull(facts);
        var size = world.Size;
        Span<int> count = [facts.Count];
        var counts = new int[size];
        world.Allgather(MemoryMarshal.AsBytes(count), MemoryMarshal.AsBytes(counts.AsSpan()));
        if (counts.Any(c => c != facts.Count))
            throw new RanksDisagreeException(
                "The ranks describe their runs by different numbers of facts (" +
                string.Join(", ", counts.Select((c, r) => $"rank {r}: {c}")) + "): they run different programs.");
        var records = Encode(facts);
        var all = new byte[records.Length * size];
        world.Allgather(records, all);
        var differences = Differences(facts, all, size);
        if (differences.Count > 0)
            throw new RanksDisagreeException(
                $"The {size} ranks of this run disagree on {string.Join("; ", differences)}. Start every rank with the " +
                "same arguments and the same data files.");
    }

    /// <summary>Each fact as SHA-256(name, value) and the start of its value, <see cref="FactBytes"/> bytes each.</summary>
    internal static byte[] Encode(IReadOnlyList<KeyValuePair<string, string>> facts)
    {
        var records = new byte[facts.Count * FactBytes];
        for (var i = 0; i < facts.Count; i++)
        {
            var (name, value) = facts[i];
            var record = records.AsSpan(i * FactBytes, FactBytes);
            SHA256.HashData(Encoding.UTF8.GetBytes(name + "\0" + value), record[..HashBytes]);
            var preview = Encoding.UTF8.GetBytes(value.Length > PreviewBytes / 2 ? value[..(PreviewBytes / 2)] + "…" : value);
            preview.AsSpan(0, Math.Min(preview.Length, PreviewBytes)).CopyTo(record[HashBytes..]);
        }
        return records;
    }

    /// <summary>"name: rank 0 has X, rank 1 has Y" for every fact whose hash differs between ranks, from the
    /// allgathered records [ranks, facts, <see cref="FactBytes"/>].</summary>
    internal static List<string> Differences(IReadOnlyList<KeyValuePair<string, string>> facts, byte[] all, int ranks)
    {
        var stride = facts.Count * FactBytes;
        var differences = new List<string>();
        for (var i = 0; i < facts.Count; i++)
        {
            var fact = i;
            ReadOnlySpan<byte> Record(int rank) => all.AsSpan(rank * stride + fact * FactBytes, FactBytes);
            if (Enumerable.Range(1, ranks - 1).All(r => Record(r)[..HashBytes].SequenceEqual(Record(0)[..HashBytes])))
                continue;
            var values = Enumerable.Range(0, ranks).Select(r =>
            {
                var preview = Encoding.UTF8.GetString(Record(r)[HashBytes..]).TrimEnd('\0');
                return string.Create(CultureInfo.InvariantCulture, $"rank {r} has '{preview}'");
            });
            differences.Add($"{facts[i].Key} ({string.Join(", ", values)})");
        }
        return differences;
    }
}
