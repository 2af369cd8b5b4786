using RetNet.Ilgpu.Generation;
using RetNet.Ilgpu.Tokenizers;

namespace RetNet.Ilgpu.Tests.Generation;

/// <summary>A cancelled token stops generation at a step boundary: what was sampled before it is delivered, no decoder
/// call starts after it, and the enumeration ends in <see cref="OperationCanceledException"/>.</summary>
public sealed class GenerationCancellationTests
{
    private static readonly SamplingOptions Greedy = new() { Temperature = 0, MaxTokens = 20 };

    [Fact]
    public void A_cancelled_token_stops_before_the_prefill()
    {
        var decoder = GenerationBigramDecoder.Successor(10);
        var tokens = Generator.Generate(decoder, [1], Greedy, new CancellationToken(canceled: true));
        Assert.Throws<OperationCanceledException>(() => tokens.ToList());
        Assert.Equal(0, decoder.PrefillCalls);
        Assert.Throws<OperationCanceledException>(() =>
            Generator.Complete(decoder, [[1]], Greedy, new CancellationToken(canceled: true)));
    }

    [Fact]
    public void Cancelling_mid_run_stops_at_the_next_step_after_the_tokens_sampled_so_far()
    {
        var decoder = GenerationBigramDecoder.Successor(10);
        using var source = new CancellationTokenSource();
        var seen = new List<int>();
        Assert.Throws<OperationCanceledException>(() =>
        {
            foreach (var token in Generator.Generate(decoder, [1], Greedy, source.Token))
            {
                seen.Add(token.TokenId);
                if (seen.Count == 3)
                    source.Cancel();
            }
        });
        Assert.Equal([2, 3, 4], seen);
        Assert.Equal(2, decoder.StepCalls);

        // Negative control: the same run without cancelling goes on to MaxTokens.
        Assert.Equal(20, Generator.Generate(GenerationBigramDecoder.Successor(10), [1], Greedy).Count());
    }

    [Fact]
    public void Text_generation_flushes_the_text_so_far_then_reports_the_cancellation()
    {
        // Byte ids: 'a' (97) is followed greedily by 'b', 'c', …
        var decoder = GenerationBigramDecoder.Successor(256);
        using var source = new CancellationTokenSource();
        var pieces = new List<string>();
        Assert.Throws<OperationCanceledException>(() =>
        {
            foreach (var piece in TextGenerator.Generate(decoder, ByteTokenizer.Instance, "a", Greedy, source.Token))
            {
                pieces.Add(piece);
                if (pieces.Count == 2)
                    source.Cancel();
            }
        });
        Assert.Equal(["b", "c"], pieces);
    }
}
