using System.Runtime.InteropServices;

namespace RetNet.Ilgpu.Training.Data;

/// <summary>
/// Draws training windows: each row of a batch is T + 1 consecutive ids (inputs are the first T, targets the last T)
/// starting at a position drawn uniformly from [0, Count − T − 1].
/// </summary>
/// <remarks>
/// The generator is xoshiro256** seeded through SplitMix64, implemented here rather than taken from
/// <see cref="System.Random"/>, whose algorithm is not specified and may change between runtimes: a run resumed from
/// <see cref="State"/> continues with exactly the windows it would have drawn, on any .NET version.
/// </remarks>
public sealed class WindowSampler : IWindowSource
{
    private readonly TokenDataset data;
    private readonly int seqLen;
    private ulong s0, s1, s2, s3;

    /// <summary>A sampler of windows of <paramref name="seqLen"/> + 1 ids from <paramref name="data"/>, seeded.</summary>
    /// <exception cref="ArgumentOutOfRangeException">seqLen is below 1.</exception>
    /// <exception cref="ArgumentException">The dataset holds fewer than seqLen + 1 ids.</exception>
    public WindowSampler(TokenDataset data, int seqLen, ulong seed)
        : this(data, seqLen)
    {
        var x = seed;
        s0 = SplitMix64(ref x);
        s1 = SplitMix64(ref x);
        s2 = SplitMix64(ref x);
        s3 = SplitMix64(ref x);
    }

    private WindowSampler(TokenDataset data, int seqLen)
    {
        ArgumentNullException.ThrowIfNull(data);
        ArgumentOutOfRangeException.ThrowIfLessThan(seqLen, 1);
        if (data.Count < seqLen + 1L)
            throw new ArgumentException(
                $"The dataset holds {data.Count} tokens, fewer than one window of seqLen + 1 = {seqLen + 1L}.",
                nameof(data));
        this.data = data;
        this.seqLen = seqLen;
    }

    /// <summary>T: each window holds T + 1 ids.</summary>
    public int SeqLen => seqLen;

    /// <summary>
    /// The generator's state, four words (a copy): <see cref="Restore"/> with it continues the same sequence of windows.
    /// </summary>
    public ulong[] State => [s0, s1, s2, s3];

    /// <summary>A sampler that continues from <paramref name="state"/>, as read from <see cref="State"/>.</summary>
    /// <exception cref="ArgumentException">The state is not four words, or is all zeros (not a xoshiro256** state).</exception>
    public static WindowSampler Restore(TokenDataset data, int seqLen, ulong[] state)
    {
        ArgumentNullException.ThrowIfNull(state);
        if (state.Length != 4)
            throw new ArgumentException($"A sampler state has 4 words; this one has {state.Length}.", nameof(state));
        if (state.All(w => w == 0))
            throw new ArgumentException("A sampler state of all zeros is not a valid xoshiro256** state.", nameof(state));
        return new WindowSampler(data, seqLen) { s0 = state[0], s1 = state[1], s2 = state[2], s3 = state[3] };
    }

    /// <summary>Fills each row of <paramref name="windows"/> [B, T + 1] with a window from a fresh random start.</summary>
    /// <exception cref="ArgumentException">The second dimension is not T + 1, or B is 0.</exception>
    public void Next(int[,] windows)
    {
        ArgumentNullException.ThrowIfNull(windows);
        if (windows.GetLength(1) != seqLen + 1 || windows.GetLength(0) == 0)
            throw new ArgumentException(
                $"Argument 'windows' has shape [{windows.GetLength(0)}, {windows.GetLength(1)}]; expected [B ≥ 1, " +
                $"seqLen + 1 = {seqLen + 1}].", nameof(windows));
        var starts = (ulong)(data.Count - seqLen);
        for (var b = 0; b < windows.GetLength(0); b++)
        {
            var start = (long)NextBelow(starts);
            data.CopyTo(start, MemoryMarshal.CreateSpan(ref windows[b, 0], seqLen + 1));
        }
    }

    /// <summary>The next start position, for tests of the distribution; advances the generator like one row of <see cref="Next"/>.</summary>
    internal long NextStart() => (long)NextBelow((ulong)(data.Count - seqLen));

    // Lemire's multiply-and-reject: uniform on [0, n) without the bias of a modulo.
    private ulong NextBelow(ulong n)
    {
        var high = Math.BigMul(NextUInt64(), n, out var low);
        if (low < n)
        {
            var threshold = (0 - n) % n;
            while (low < threshold)
                high = Math.BigMul(NextUInt64(), n, out low);
        }
        return high;
    }

    private ulong NextUInt64()
    {
        var result = ulong.RotateLeft(s1 * 5, 7) * 9;
        var t = s1 << 17;
        s2 ^= s0;
        s3 ^= s1;
        s1 ^= s2;
        s0 ^= s3;
        s2 ^= t;
        s3 = ulong.RotateLeft(s3, 45);
        return result;
    }

    private static ulong SplitMix64(ref ulong x)
    {
        x += 0x9E3779B97F4A7C15UL;
        var z = x;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }
}
