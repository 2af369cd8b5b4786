using static TorchSharp.torch;

namespace TorchSharpBench;

/// <summary>
/// Chunkwise retention forward, and forward+backward, the peer of the "chunkwise" rows of <c>retnet bench retention
/// --device cpu</c> (B 1, H 4, Dk = Dv = 64, C 64, torchscale's γ schedule). Inputs and dO uniform in [−1, 1), fp32.
/// </summary>
internal static class RetentionBenchmark
{
    public const int Batch = 1, Heads = 4, Dim = 64, ChunkSize = 64;

    /// <summary>
    /// Times the forward (o) and the forward+backward (loss = (o ⊙ dO).sum(), autograd into q, k, v; gradients are
    /// returned, not accumulated into .grad, so every call does the same work) at T = <paramref name="seqLen"/>.
    /// </summary>
    public static Result[] Run(int seqLen, int repetitions)
    {
        using var scope = NewDisposeScope();
        using var decay = new ChunkDecay(ChunkDecay.TorchscaleGammas(Heads), ChunkSize, ScalarType.Float32);
        var generator = new Generator(11);
        Tensor Input() => rand([Batch, seqLen, Heads, Dim], ScalarType.Float32, generator: generator) * 2 - 1;
        Tensor q = Input().requires_grad_(true), k = Input().requires_grad_(true), v = Input().requires_grad_(true);
        var dO = Input();
        var shape = $"B{Batch} H{Heads} Dk=Dv={Dim} C={ChunkSize} T={seqLen}";

        Times forward;
        using (no_grad())
            forward = Timing.Measure(() => ChunkwiseRetention.Forward(q, k, v, decay)[0, 0, 0, 0].item<float>(),
                warmup: 3, repetitions, minSeconds: 1);

        var both = Timing.Measure(() =>
        {
            var loss = (ChunkwiseRetention.Forward(q, k, v, decay) * dO).sum();
            var gradients = autograd.grad([loss], [q, k, v]);
            gradients[0][0, 0, 0, 0].item<float>();
        }, warmup: 3, repetitions, minSeconds: 1);
        return
        [
            new Result("chunkwise forward", shape, forward.MedianMs,
                FlopCount(seqLen, backward: false) / (forward.MedianMs * 1e6), forward.MinMs),
            new Result("chunkwise forward+backward", shape, both.MedianMs,
                FlopCount(seqLen, backward: true) / (both.MedianMs * 1e6), both.MinMs),
        ];
    }

    /// <summary>
    /// The operation count <c>retnet bench retention</c> uses for its chunkwise rows, so the GFLOP/s of the two sides
    /// are inverse times on one scale: the in-chunk pairs j ≤ i only, 2·P·(Dk + Dv) per product with P = B·H·Σ c(c+1)/2
    /// over the chunks (one product forward, four forward+backward), plus 2·B·H·T·Dk·Dv per state pass (two forward,
    /// seven forward+backward). The torch form multiplies whole C×C blocks, about twice the in-chunk work counted here.
    /// </summary>
    private static double FlopCount(int seqLen, bool backward)
    {
        double heads = Batch * Heads, width = 2 * Dim;
        double pairs = 0;
        for (var start = 0; start < seqLen; start += ChunkSize)
        {
            double n = Math.Min(ChunkSize, seqLen - start);
            pairs += n * (n + 1) / 2;
        }
        var statePass = 2 * heads * seqLen * Dim * Dim;
        return backward
            ? 4 * 2 * pairs * heads * width + 7 * statePass
            : 2 * pairs * heads * width + 2 * statePass;
    }
}
