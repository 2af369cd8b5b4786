using RetNet.Ilgpu.Devices;
using RetNet.Ilgpu.Tensors;

namespace RetNet.Ilgpu.Retention;

/// <summary>
/// Documents packed into the rows of a batch, given as fla's <c>cu_seqlens</c>: offsets into the flattened tokens
/// [B·T], document i holding tokens [cuSeqlens[i], cuSeqlens[i + 1]). Retention never crosses a boundary
/// (docs/MATH.md §2, packed documents): the decay between tokens of different documents is 0 in the parallel form,
/// the recurrent state restarts from zeros at each document start, and the chunkwise form masks within a chunk and
/// carries no state across a boundary.
/// Documents do not cross rows: every row start b·T is an offset (with B = 1, fla's layout, that is only 0).
/// </summary>
public static class PackedSequences
{
    /// <summary>Offsets of documents of the given lengths, in order: [0, l₀, l₀ + l₁, …].</summary>
    /// <exception cref="ArgumentException">No length is given, or a length is less than 1.</exception>
    public static int[] Offsets(params int[] lengths)
    {
        ArgumentNullException.ThrowIfNull(lengths);
        if (lengths.Length == 0)
            throw new ArgumentException("Argument 'lengths' is empty; expected at least one document.",
                nameof(lengths));
        var offsets = new int[lengths.Length + 1];
        for (var i = 0; i < lengths.Length; i++)
        {
            if (lengths[i] < 1)
                throw new ArgumentException(
                    $"Argument 'lengths' has lengths[{i}] = {lengths[i]}; expected every document to hold ≥ 1 token.",
                    nameof(lengths));
            offsets[i + 1] = checked(offsets[i] + lengths[i]);
        }
        return offsets;
    }

    /// <summary>
    /// Checks <paramref name="cuSeqlens"/> against a batch of <paramref name="batch"/> rows of
    /// <paramref name="seqLen"/> tokens: it starts at 0, increases strictly, ends at B·T and holds every row start.
    /// </summary>
    /// <exception cref="ArgumentException">One of those fails; the message names <paramref name="argument"/>, what was
    /// expected and what was found.</exception>
    public static void Check(IReadOnlyList<int> cuSeqlens, int batch, int seqLen, string argument = "cuSeqlens")
    {
        ArgumentNullException.ThrowIfNull(cuSeqlens, argument);
        var total = (long)batch * seqLen;
        if (cuSeqlens.Count < 2)
            throw new ArgumentException(
                $"Argument '{argument}' has {cuSeqlens.Count} offset(s); expected at least 2: 0, then each document's " +
                $"end, up to the total length B·T = {total}.", argument);
        if (cuSeqlens[0] != 0)
            throw new ArgumentException($"Argument '{argument}' starts at {cuSeqlens[0]}; expected 0.", argument);
        for (var i = 1; i < cuSeqlens.Count; i++)
        {
            if (cuSeqlens[i] <= cuSeqlens[i - 1])
                throw new ArgumentException(
                    $"Argument '{argument}' is not strictly increasing: [{i}] = {cuSeqlens[i]} after [{i - 1}] = " +
                    $"{cuSeqlens[i - 1]}; expected every document to hold at least one token.", argument);
        }
        if (cuSeqlens[^1] != total)
            throw new ArgumentException(
                $"Argument '{argument}' ends at {cuSeqlens[^1]}; expected the total length B·T = {batch}·{seqLen} = " +
                $"{total}.", argument);
        var next = 0;
        for (var b = 1; b < batch; b++)
        {
            var rowStart = b * seqLen;
            while (cuSeqlens[next] < rowStart)
                next++;
            if (cuSeqlens[next] != rowStart)
                throw new ArgumentException(
                    $"Argument '{argument}' has no offset at {rowStart}, the start of row {b} of [B, T] = [{batch}, " +
                    $"{seqLen}]; expected every row to start a document (a document crossing rows is offsets " +
                    $"{cuSeqlens[next - 1]} … {cuSeqlens[next]}).", argument);
        }
    }

    /// <summary>
    /// The bounds the kernels read, [B·T, 2]: for token b·T + t, the first token and one past the last token of its
    /// document, both counted within row b. Checks <paramref name="cuSeqlens"/> first (<see cref="Check"/>).
    /// </summary>
    public static int[] TokenBounds(IReadOnlyList<int> cuSeqlens, int batch, int seqLen, string argument = "cuSeqlens")
    {
        Check(cuSeqlens, batch, seqLen, argument);
        var bounds = new int[2 * batch * seqLen];
        for (var i = 0; i + 1 < cuSeqlens.Count; i++)
        {
            var (first, end) = (cuSeqlens[i], cuSeqlens[i + 1]);
            var rowStart = first / seqLen * seqLen;
            for (var token = first; token < end; token++)
            {
                bounds[2 * token] = first - rowStart;
                bounds[2 * token + 1] = end - rowStart;
            }
        }
        return bounds;
    }

    /// <summary>The bounds of <see cref="TokenBounds"/> on <paramref name="device"/>; the caller disposes them.</summary>
    internal static IndexTensor Upload(RetNetDevice device, IReadOnlyList<int> cuSeqlens, int batch, int seqLen,
        string argument) =>
        IndexTensor.FromHost(device, TokenBounds(cuSeqlens, batch, seqLen, argument), batch * seqLen, 2);
}
