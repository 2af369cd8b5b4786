using RetNet.Ilgpu.Benchmarks;
using RetNet.Ilgpu.Tests.Support;

namespace RetNet.Ilgpu.Tests.Retention;

/// <summary>The benchmark produces well-formed records (speed is never asserted).</summary>
[Collection(DeviceCollection.Name)]
public sealed class RetentionBenchmarkTests(DeviceFixture fixture)
{
    private readonly RetNetDevice device = fixture.Device;

    [Fact]
    public void Benchmark_reports_every_form_and_direction_at_every_length()
    {
        var options = new RetentionBenchmarkOptions
        {
            Batch = 2, Heads = 2, KeyDim = 3, ValueDim = 5, ChunkSize = 4, SeqLens = [6, 13], Repetitions = 2,
        };
        var streamed = new List<RetentionBenchmarkResult>();
        var before = device.Memory.CurrentBytes;

        var results = RetentionBenchmark.Run(device, options, streamed.Add);

        Assert.Equal(results, streamed);
        Assert.Equal(before, device.Memory.CurrentBytes);
        Assert.Equal(10, results.Count);
        foreach (var seqLen in options.SeqLens)
        {
            var atLength = results.Where(r => r.SeqLen == seqLen).ToList();
            Assert.Equal(
                ["parallel forward", "chunkwise forward", "recurrent forward", "parallel forward+backward",
                 "chunkwise forward+backward"],
                atLength.Select(r => $"{r.Form} {r.Direction}"));
        }
        Assert.All(results, r =>
        {
            Assert.Contains(r.Form, RetentionBenchmark.Forms);
            Assert.Contains(r.Direction, RetentionBenchmark.Directions);
            Assert.Equal((2, 2, 3, 5, 4), (r.Batch, r.Heads, r.Dk, r.Dv, r.ChunkSize));
            Assert.True(r.MedianMs > 0 && double.IsFinite(r.MedianMs), r.ToString());
            // At least the outputs: o [B, T, H, Dv] in fp32.
            Assert.True(r.PeakBytes >= 4L * r.Batch * r.SeqLen * r.Heads * r.Dv, r.ToString());
            Assert.True(RetentionBenchmark.FlopCount(r) > 0 && double.IsFinite(RetentionBenchmark.GflopsPerSecond(r)));
        });
    }

    [Fact]
    public void Flop_counts_follow_the_pair_and_state_formulas()
    {
        // T = 4, C = 2: 10 causal pairs, 6 in-chunk pairs; B·H = 1, Dk + Dv = 5, Dk·Dv = 6.
        RetentionBenchmarkResult Case(string form, string direction) => new(form, direction, 1, 1, 2, 3, 4, 2, 1, 0);
        Assert.Equal(2 * 10 * 5, RetentionBenchmark.FlopCount(Case("parallel", "forward")));
        Assert.Equal(4 * 2 * 10 * 5, RetentionBenchmark.FlopCount(Case("parallel", "forward+backward")));
        Assert.Equal(2 * 6 * 5 + 2 * 2 * 4 * 6, RetentionBenchmark.FlopCount(Case("chunkwise", "forward")));
        Assert.Equal(4 * 2 * 6 * 5 + 7 * 2 * 4 * 6, RetentionBenchmark.FlopCount(Case("chunkwise", "forward+backward")));
        Assert.Equal(4 * 4 * 6, RetentionBenchmark.FlopCount(Case("recurrent", "forward")));
        Assert.Throws<ArgumentException>(() => RetentionBenchmark.FlopCount(Case("sideways", "forward")));
    }

    [Fact]
    public void Invalid_options_are_rejected()
    {
        Assert.Throws<ArgumentException>(() =>
            RetentionBenchmark.Run(device, new RetentionBenchmarkOptions { SeqLens = [] }));
        Assert.Throws<ArgumentException>(() =>
            RetentionBenchmark.Run(device, new RetentionBenchmarkOptions { ChunkSize = 0 }));
    }
}
