namespace RetNet.Ilgpu.Generation;

/// <summary>
/// How the next token is chosen from the logits and when generation stops. Every property is validated when it is
/// set: a bad value throws <see cref="ArgumentOutOfRangeException"/> (or <see cref="ArgumentException"/>) whose
/// <see cref="ArgumentException.ParamName"/> is the property's name. A record: derive variants with
/// <c>with { … }</c> (validated the same way); two options are equal when every setting is, the stop tokens compared
/// as sets.
/// </summary>
public sealed record SamplingOptions
{
    private readonly double temperature = 1.0;
    private readonly int topK;
    private readonly double topP = 1.0;
    private readonly int maxTokens = 64;
    private readonly IReadOnlySet<int> stopTokens = new HashSet<int>();

    /// <summary>Greedy decoding (temperature 0) with the other defaults.</summary>
    public static SamplingOptions Greedy { get; } = new() { Temperature = 0 };

    /// <summary>
    /// Softmax temperature, finite and ≥ 0 (default 1). 0 means greedy: the highest logit wins, ties going to the
    /// lowest id, and <see cref="TopK"/>, <see cref="TopP"/> and <see cref="Seed"/> play no part.
    /// </summary>
    public double Temperature
    {
        get => temperature;
        init => temperature = double.IsFinite(value) && value >= 0
            ? value
            : throw new ArgumentOutOfRangeException(nameof(Temperature), value,
                $"Temperature must be finite and ≥ 0 (0 = greedy); got {value}.");
    }

    /// <summary>Keep only the K most likely tokens before sampling; K ≥ 0, 0 = off (default). K = 1 is greedy.</summary>
    public int TopK
    {
        get => topK;
        init => topK = value >= 0
            ? value
            : throw new ArgumentOutOfRangeException(nameof(TopK), value, $"TopK must be ≥ 0 (0 = off); got {value}.");
    }

    /// <summary>
    /// Nucleus sampling: after <see cref="TopK"/>, keep the smallest set of most likely tokens whose probability
    /// sums to at least P (always at least one token). P in (0, 1]; 1 = off (default).
    /// </summary>
    public double TopP
    {
        get => topP;
        init => topP = value > 0 && value <= 1
            ? value
            : throw new ArgumentOutOfRangeException(nameof(TopP), value, $"TopP must be in (0, 1] (1 = off); got {value}.");
    }

    /// <summary>
    /// Seed of the random draws; with a seed, generation is reproducible. Sequence b of a batch draws from a
    /// generator seeded with Seed + b, so it samples exactly what it would sample alone with that seed. Null
    /// (default) seeds from the system.
    /// </summary>
    public int? Seed { get; init; }

    /// <summary>The most tokens generated per sequence, ≥ 1 (default 64).</summary>
    public int MaxTokens
    {
        get => maxTokens;
        init => maxTokens = value >= 1
            ? value
            : throw new ArgumentOutOfRangeException(nameof(MaxTokens), value, $"MaxTokens must be ≥ 1; got {value}.");
    }

    /// <summary>
    /// Token ids that end a sequence when sampled (default none). A stop token is not emitted. Ids must be ≥ 0; the
    /// generator also checks them against the vocabulary size.
    /// </summary>
    public IReadOnlySet<int> StopTokens
    {
        get => stopTokens;
        init
        {
            ArgumentNullException.ThrowIfNull(value, nameof(StopTokens));
            foreach (var id in value)
                if (id < 0)
                    throw new ArgumentOutOfRangeException(nameof(StopTokens), id,
                        $"Stop token ids must be ≥ 0; got {id}.");
            stopTokens = new HashSet<int>(value);
        }
    }

    /// <summary>True when the choice is deterministic argmax: temperature 0 or top-k 1.</summary>
    public bool IsGreedy => Temperature == 0 || TopK == 1;

    /// <inheritdoc/>
    public bool Equals(SamplingOptions? other) =>
        other is not null && temperature == other.temperature && topK == other.topK && topP == other.topP &&
        maxTokens == other.maxTokens && Seed == other.Seed && stopTokens.SetEquals(other.stopTokens);

    /// <inheritdoc/>
    public override int GetHashCode() =>
        HashCode.Combine(temperature, topK, topP, maxTokens, Seed, stopTokens.Count);
}
