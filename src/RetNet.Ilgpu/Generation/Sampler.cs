using System.Numerics;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using RetNet.Ilgpu.Tensors;

namespace RetNet.Ilgpu.Generation;

/// <summary>
/// Chooses a token id from one sequence's logits [V] under <see cref="SamplingOptions"/>: greedy argmax, or
/// temperature softmax (in double, shifted by the maximum so it cannot overflow) restricted by top-k, then top-p.
/// One sampler holds one random generator; draws are reproducible when the options carry a seed.
/// </summary>
public sealed class Sampler
{
    private readonly SamplingOptions options;
    private readonly Random random;

    /// <summary>A sampler whose random generator is seeded with <paramref name="seed"/> (null: from the system).</summary>
    public Sampler(SamplingOptions options, int? seed)
    {
        ArgumentNullException.ThrowIfNull(options);
        this.options = options;
        random = seed is { } s ? new Random(s) : new Random();
    }

    /// <summary>A sampler seeded with <see cref="SamplingOptions.Seed"/>.</summary>
    public Sampler(SamplingOptions options) : this(options, options?.Seed)
    {
    }

    /// <summary>
    /// The next token id. Greedy options never consume a random draw; otherwise exactly one draw is consumed.
    /// </summary>
    /// <exception cref="ArgumentException">The logits are empty or contain NaN or ±∞.</exception>
    public int Next(ReadOnlySpan<float> logits)
    {
        if (options.IsGreedy)
            return ArgMax(logits);
        var (ids, probabilities) = Distribution(logits, options);
        var u = random.NextDouble();
        var cumulative = 0.0;
        for (var i = 0; i < ids.Length; i++)
        {
            cumulative += probabilities[i];
            if (u < cumulative)
                return ids[i];
        }
        // u is within rounding of 1 of a sum that is 1 up to rounding: the last kept token takes that sliver.
        return ids[^1];
    }

    /// <summary>The index of the largest logit; ties go to the lowest id.</summary>
    /// <exception cref="ArgumentException">The logits are empty or contain NaN or ±∞.</exception>
    /// <remarks>Eight at a time: the largest value, then the first index that holds it. Every value is finite, so the
    /// vector maximum is the scalar one up to the sign of zero, and == (for which −0 and +0 are equal, as they are
    /// for &gt;) finds the lowest id of the tied values, the id the one-at-a-time scan returns.</remarks>
    public static int ArgMax(ReadOnlySpan<float> logits)
    {
        CheckLogits(logits);
        var width = Vector256<float>.Count;
        var vectors = Vector256.IsHardwareAccelerated && logits.Length >= width;
        ref var start = ref MemoryMarshal.GetReference(logits);
        var max = logits[0];
        var i = 1;
        if (vectors)
        {
            var lanes = Vector256.LoadUnsafe(ref start);
            for (i = width; i + width <= logits.Length; i += width)
                lanes = Vector256.Max(lanes, Vector256.LoadUnsafe(ref start, (nuint)i));
            for (var lane = 0; lane < width; lane++)
                if (lanes[lane] > max)
                    max = lanes[lane];
        }
        for (; i < logits.Length; i++)
            if (logits[i] > max)
                max = logits[i];

        i = 0;
        if (vectors)
        {
            var target = Vector256.Create(max);
            for (; i + width <= logits.Length; i += width)
            {
                var equal = Vector256.Equals(Vector256.LoadUnsafe(ref start, (nuint)i), target).ExtractMostSignificantBits();
                if (equal != 0)
                    return i + BitOperations.TrailingZeroCount(equal);
            }
        }
        for (; i < logits.Length; i++)
            if (logits[i] == max)
                return i;
        throw new InvalidOperationException("Unreachable: the largest logit is one of the logits.");
    }

    /// <summary>
    /// The distribution <see cref="Next"/> samples from: the kept token ids, most likely first (ties: lowest id
    /// first), and their probabilities, which sum to 1. Greedy options give the argmax with probability 1.
    /// </summary>
    /// <exception cref="ArgumentException">The logits are empty or contain NaN or ±∞.</exception>
    public static (int[] Ids, double[] Probabilities) Distribution(ReadOnlySpan<float> logits,
        SamplingOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (options.IsGreedy)
            return ([ArgMax(logits)], [1.0]);
        CheckLogits(logits);

        var order = new int[logits.Length];
        for (var i = 0; i < order.Length; i++)
            order[i] = i;
        var values = logits.ToArray();
        // Stable by id, so which of several tied tokens top-k and top-p keep does not depend on the sort.
        Array.Sort(order, (a, b) => values[a] != values[b] ? values[b].CompareTo(values[a]) : a.CompareTo(b));

        var kept = options.TopK > 0 ? Math.Min(options.TopK, order.Length) : order.Length;
        var weights = new double[kept];
        var max = (double)values[order[0]];
        var total = 0.0;
        for (var i = 0; i < kept; i++)
        {
            weights[i] = Math.Exp((values[order[i]] - max) / options.Temperature);
            total += weights[i];
        }

        if (options.TopP < 1)
        {
            var cumulative = 0.0;
            var nucleus = 0;
            while (nucleus < kept)
            {
                cumulative += weights[nucleus++] / total;
                if (cumulative >= options.TopP)
                    break;
            }
            kept = nucleus;
            total = 0;
            for (var i = 0; i < kept; i++)
                total += weights[i];
        }

        var ids = new int[kept];
        var probabilities = new double[kept];
        for (var i = 0; i < kept; i++)
        {
            ids[i] = order[i];
            probabilities[i] = weights[i] / total;
        }
        return (ids, probabilities);
    }

    private static void CheckLogits(ReadOnlySpan<float> logits)
    {
        if (logits.IsEmpty)
            throw new ArgumentException("Argument 'logits' is empty; expected at least one value.", nameof(logits));
        if (FiniteValues.First(logits) is var i and >= 0)
            throw new ArgumentException(
                $"Argument 'logits' has {logits[i]} at index {i}; expected finite values (the model produced NaN or ∞).",
                nameof(logits));
    }
}
