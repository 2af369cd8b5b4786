namespace RetNet.Ilgpu.Generation;

/// <summary>One generated token, as <see cref="Generator.Generate(ITokenDecoder, IReadOnlyList{IReadOnlyList{int}}, SamplingOptions, CancellationToken)"/> streams it.</summary>
/// <param name="Sequence">Which prompt of the batch it continues (0 for a single prompt).</param>
/// <param name="Index">Its position among that sequence's generated tokens, from 0.</param>
/// <param name="TokenId">The token id, in [0, V).</param>
public readonly record struct GeneratedToken(int Sequence, int Index, int TokenId);

/// <summary>Why a sequence stopped generating.</summary>
public enum FinishReason
{
    /// <summary>It sampled one of <see cref="SamplingOptions.StopTokens"/> (which is not part of its output).</summary>
    StopToken,

    /// <summary>It reached <see cref="SamplingOptions.MaxTokens"/> (or, in a <see cref="BatchedGenerator"/>, the end of
    /// the context it allows).</summary>
    MaxTokens,

    /// <summary>Its text reached one of the stop sequences of a text request (not part of its output).</summary>
    StopSequence,

    /// <summary>Its caller cancelled it, or the generator shut down, before it finished.</summary>
    Cancelled,
}

/// <summary>A finished sequence's generated tokens (prompt excluded) and why it stopped.</summary>
/// <param name="Tokens">The generated token ids, in order; a stop token is not included.</param>
/// <param name="Reason">Why generation ended.</param>
public sealed record GeneratedSequence(IReadOnlyList<int> Tokens, FinishReason Reason);
