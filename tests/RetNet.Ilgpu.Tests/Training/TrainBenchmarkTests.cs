using RetNet.Ilgpu.Tensors;
using RetNet.Ilgpu.Benchmarks;
using RetNet.Ilgpu.Model;
using RetNet.Ilgpu.Tests.Model;
using RetNet.Ilgpu.Tests.Support;

namespace RetNet.Ilgpu.Tests.Training;

[Collection(DeviceCollection.Name)]
public sealed class TrainBenchmarkTests(DeviceFixture fixture)
{
    [Fact]
    public void Every_length_gets_a_record_whose_memory_grows_with_the_length()
    {
        var options = new TrainBenchmarkOptions
        {
            Config = ModelTestSupport.Micro(), SeqLens = [8, 32], Steps = 1, Mode = ForwardMode.Chunkwise(4),
        };
        var results = TrainBenchmark.Run(fixture.Device, options);
        Assert.Equal([8, 32], results.Select(r => r.SeqLen));
        Assert.All(results, r =>
        {
            Assert.Equal("retnet", r.Model);
            Assert.Equal("chunkwise(4)", r.Form);
            Assert.True(r.MsPerStep > 0 && double.IsFinite(r.TokensPerSecond));
        });
        Assert.True(results[1].PeakBytes > results[0].PeakBytes, "the activations of 32 tokens need more than of 8");
    }

    [Fact]
    public void Both_architectures_are_measured_at_every_length()
    {
        var options = new TrainBenchmarkOptions
        {
            Config = ModelTestSupport.Micro(), SeqLens = [8, 16], Steps = 1, Architectures = ["transformer", "retnet"],
        };
        var results = TrainBenchmark.Run(fixture.Device, options);
        Assert.Equal(["transformer", "transformer", "retnet", "retnet"], results.Select(r => r.Model));
        Assert.Equal(["attention", "attention"], results.Take(2).Select(r => r.Form));
        Assert.Equal([8, 16, 8, 16], results.Select(r => r.SeqLen));
        Assert.All(results, r => Assert.True(r.PeakBytes > 0 && double.IsFinite(r.TokensPerSecond)));
    }

    [Fact]
    public void Linear_gflops_count_six_times_the_multiplied_weights_per_token()
    {
        using var untied = LanguageModel.Create(fixture.Device, ModelTestSupport.Micro());
        using var tied = LanguageModel.Create(fixture.Device, ModelTestSupport.Micro(tied: true));
        long Matrices(LanguageModel m) => m.Parameters.Where(p => p.Value.Rank == 2).Sum(p => (long)p.Value.Length);
        var table = untied.Parameters["embed_tokens.weight"].Length;
        // Untied: the embedding is a gather, not a product; tied: the table is the output projection, counted once.
        Assert.Equal(Matrices(untied) - table, TrainBenchmark.LinearWeights(untied.Parameters));
        Assert.Equal(Matrices(tied), TrainBenchmark.LinearWeights(tied.Parameters));

        var results = TrainBenchmark.Run(fixture.Device, new TrainBenchmarkOptions
        {
            Config = ModelTestSupport.Micro(), SeqLens = [8], Steps = 1, Mode = ForwardMode.Chunkwise(4),
        });
        var r = results[0];
        var expected = 6.0 * TrainBenchmark.LinearWeights(untied.Parameters) * r.TokensPerSecond / 1e9;
        Assert.Equal(expected, r.LinearGflops, 9);
        Assert.True(r.LinearGflops > 0);
    }

    [Fact]
    public void Decode_bandwidth_is_the_weights_and_the_state_read_per_step()
    {
        var r = new DecodeBenchmarkResult("retnet", 1, 64, MsPerToken: 0.5, StateBytes: 1_000_000, WeightBytes: 2_000_000,
            TensorDType.BFloat16, DeviceBytes: 4_000_000);
        Assert.Equal(3_000_000 / 0.5e6, r.GigabytesPerSecond, 12);
    }

    [Fact]
    public void Bad_options_are_refused()
    {
        Assert.Throws<ArgumentException>(() => TrainBenchmark.Run(fixture.Device, new TrainBenchmarkOptions { Architectures = ["mamba"] }));
        Assert.Throws<ArgumentException>(() => TrainBenchmark.Run(fixture.Device, new TrainBenchmarkOptions { Architectures = ["retnet", "retnet"] }));
        Assert.Throws<ArgumentException>(() => TrainBenchmark.Run(fixture.Device, new TrainBenchmarkOptions { Architectures = [] }));
        Assert.Throws<ArgumentException>(() => TrainBenchmark.Run(fixture.Device, new TrainBenchmarkOptions { SeqLens = [0] }));
        Assert.Throws<ArgumentException>(() => TrainBenchmark.Run(fixture.Device, new TrainBenchmarkOptions { Mode = ForwardMode.Recurrent }));
    }
}
