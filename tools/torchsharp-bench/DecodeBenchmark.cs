namespace TorchSharpBench;

/// <summary>
/// ms/token of the <see cref="RetNetDecoder"/> step, the peer of <c>retnet bench decode --device cpu --positions 1024</c>:
/// steps at positions 0 … 1023 fill the state and serve as warm-up, then the steps from position 1024 are timed,
/// each one token per sequence in (random ids uploaded) and the logits out (copied to the host).
/// </summary>
internal static class DecodeBenchmark
{
    public static Result Run(int batch, int position, int steps)
    {
        using var decoder = new RetNetDecoder(batch, seed: 3);
        var random = new Random(5);
        long[] Tokens() => Enumerable.Range(0, batch).Select(_ => (long)random.Next(RetNetDecoder.Vocab)).ToArray();
        var times = Timing.Measure(() => decoder.Step(Tokens()), warmup: position, steps);
        var shape = $"small B{batch} position {position}";
        return new Result("decode", shape, times.MedianMs, batch * RetNetDecoder.FlopsPerToken() / (times.MedianMs * 1e6),
            times.MinMs);
    }
}
