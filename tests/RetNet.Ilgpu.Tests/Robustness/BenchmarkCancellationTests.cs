using RetNet.Ilgpu.Benchmarks;
using RetNet.Ilgpu.Model;
using RetNet.Ilgpu.Tests.Model;
using RetNet.Ilgpu.Tests.Support;

namespace RetNet.Ilgpu.Tests.Robustness;

/// <summary>A cancelled token stops a benchmark before its next measurement and returns what was measured so far
/// (the documented partial result that <c>retnet bench</c> still prints and writes).</summary>
[Collection(DeviceCollection.Name)]
public sealed class BenchmarkCancellationTests(DeviceFixture fixture)
{
    private readonly RetNetDevice device = fixture.Device;

    [Fact]
    public void A_cancelled_token_measures_nothing()
    {
        var cancelled = new CancellationToken(canceled: true);
        Assert.Empty(GemmBenchmark.Run(device, [(8, 8, 8)], warmup: 0, repetitions: 1, cancelled));
        Assert.Empty(RetentionBenchmark.Run(device, SmallRetention, cancellationToken: cancelled));
        Assert.Empty(DecodeBenchmark.Run(device, SmallDecode, cancellationToken: cancelled));
        Assert.Empty(TrainBenchmark.Run(device, SmallTrain, cancellationToken: cancelled));
    }

    [Fact]
    public void Cancelling_after_the_first_result_returns_exactly_that_result()
    {
        using (var source = new CancellationTokenSource())
            Assert.Single(RetentionBenchmark.Run(device, SmallRetention, _ => source.Cancel(), source.Token));
        using (var source = new CancellationTokenSource())
            Assert.Single(DecodeBenchmark.Run(device, SmallDecode, _ => source.Cancel(), source.Token));
        using (var source = new CancellationTokenSource())
            Assert.Single(TrainBenchmark.Run(device, SmallTrain, _ => source.Cancel(), source.Token));

        // Negative control: uncancelled, each measures more than one case.
        Assert.True(DecodeBenchmark.Run(device, SmallDecode).Count > 1);
    }

    private static RetentionBenchmarkOptions SmallRetention => new()
    {
        Heads = 2, KeyDim = 8, ValueDim = 8, ChunkSize = 4, SeqLens = [8], Repetitions = 1, SecondsPerCase = 0.01,
    };

    private static DecodeBenchmarkOptions SmallDecode => new()
    {
        Config = ModelTestSupport.Micro(), Positions = [5, 12], Batches = [1], Steps = 1, ChunkSize = 4,
    };

    private static TrainBenchmarkOptions SmallTrain => new()
    {
        Config = ModelTestSupport.Micro(), SeqLens = [8, 16], Steps = 1, Mode = ForwardMode.Chunkwise(4),
    };
}
