using RetNet.Ilgpu.Benchmarks;
using RetNet.Ilgpu.Model;
using RetNet.Ilgpu.Tests.Support;
using RetNet.Ilgpu.Transformer;

namespace RetNet.Ilgpu.Tests.Model;

[Collection(DeviceCollection.Name)]
public sealed class ModelDecodeBenchmarkTests(DeviceFixture fixture)
{
    [Fact]
    public void Results_cover_every_batch_and_position_with_a_constant_state_size()
    {
        var options = new DecodeBenchmarkOptions
        {
            Config = ModelTestSupport.Micro(), Positions = [5, 12], Batches = [1, 2], Steps = 3, ChunkSize = 4,
        };
        var results = DecodeBenchmark.Run(fixture.Device, options);
        Assert.Equal([(1, 5), (1, 12), (2, 5), (2, 12)], results.Select(r => (r.Batch, r.Position)));
        using var model = RetNetModel.Create(fixture.Device, options.Config);
        foreach (var r in results)
        {
            Assert.Equal("retnet", r.Model);
            Assert.True(r.MsPerToken > 0 && double.IsFinite(r.MsPerToken));
            // Measured on the device, held to the formula.
            Assert.Equal(model.StateBytes(r.Batch), r.StateBytes);
            Assert.Equal(model.WeightBytes, r.WeightBytes);
        }
        Assert.Throws<ArgumentException>(() => DecodeBenchmark.Run(fixture.Device, options with { Positions = [5, 3] }));
    }

    [Fact]
    public void The_transformers_kv_cache_grows_with_the_position_while_retnets_state_stays()
    {
        var options = new DecodeBenchmarkOptions
        {
            Config = ModelTestSupport.Micro(), Positions = [5, 12], Batches = [1, 2], Steps = 2, ChunkSize = 4,
            Architectures = ["retnet", "transformer"],
        };
        var results = DecodeBenchmark.Run(fixture.Device, options);
        Assert.Equal(8, results.Count);
        Assert.Equal(["retnet", "retnet", "retnet", "retnet", "transformer", "transformer", "transformer", "transformer"],
            results.Select(r => r.Model));
        using var transformer = TransformerModel.Create(fixture.Device, TransformerConfig.Matching(options.Config));
        foreach (var r in results.Where(r => r.Model == "transformer"))
        {
            // Measured on the device, held to the formula.
            Assert.Equal(transformer.KvCacheBytes(r.Batch, r.Position), r.StateBytes);
            Assert.Equal(transformer.WeightBytes, r.WeightBytes);
        }
        Assert.Throws<ArgumentException>(() => DecodeBenchmark.Run(fixture.Device, options with { Architectures = ["gpt"] }));
        Assert.Throws<ArgumentException>(() => DecodeBenchmark.Run(fixture.Device, options with { Architectures = [] }));
    }

    [Fact]
    public void State_bytes_are_what_the_device_accounts_for_not_a_formula()
    {
        var device = fixture.Device;
        using var transformer = TransformerModel.Create(device, TransformerConfig.Matching(ModelTestSupport.Micro()));
        var grown = DecodeBenchmark.Measured(device, () =>
        {
            var cache = KvCache.Create(transformer, 2, capacity: 1);
            cache.EnsureCapacity(12);
            return cache;
        });
        using (grown.Value)
            Assert.Equal(transformer.KvCacheBytes(2, 12), grown.Bytes);

        // Negative controls: the measurement follows what was allocated, so a cache never grown is not the formula's
        // 12 positions, and what allocates nothing on the device measures 0.
        var created = DecodeBenchmark.Measured(device, () => KvCache.Create(transformer, 2, capacity: 1));
        using (created.Value)
        {
            Assert.NotEqual(transformer.KvCacheBytes(2, 12), created.Bytes);
            Assert.Equal(transformer.KvCacheBytes(2, 1), created.Bytes);
        }
        Assert.Equal(0, DecodeBenchmark.Measured(device, () => new int[1024]).Bytes);
    }
}
