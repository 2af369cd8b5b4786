using RetNet.Ilgpu.Benchmarks;
using RetNet.Ilgpu.Model;
using RetNet.Ilgpu.Tests.Support;

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
        using var model = LanguageModel.Create(fixture.Device, options.Config);
        var c = options.Config;
        foreach (var r in results)
        {
            Assert.Equal("retnet", r.Model);
            Assert.True(r.MsPerToken > 0 && double.IsFinite(r.MsPerToken));
            // Measured (the device's memory accounting around making the state) against the size retention's state
            // must have: layers · B · H · Dk · Dv floats, whatever the position.
            Assert.Equal(4L * c.Layers * r.Batch * c.RetentionHeads * c.KeyHeadDim * c.ValueHeadDim, r.StateBytes);
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
        var matching = TransformerConfig.Matching(options.Config);
        using var transformer = LanguageModel.Create(fixture.Device, matching);
        foreach (var r in results.Where(r => r.Model == "transformer"))
        {
            // Measured against a KV cache's size: keys and values, layers · B · (position + timed steps) · d floats.
            Assert.Equal(8L * matching.Layers * r.Batch * (r.Position + options.Steps) * matching.EmbedDim, r.StateBytes);
            Assert.Equal(transformer.WeightBytes, r.WeightBytes);
        }
        Assert.Throws<ArgumentException>(() => DecodeBenchmark.Run(fixture.Device, options with { Architectures = ["gpt"] }));
        Assert.Throws<ArgumentException>(() => DecodeBenchmark.Run(fixture.Device, options with { Architectures = [] }));
    }

    [Fact]
    public void State_bytes_are_what_the_device_accounts_for_not_a_formula()
    {
        var device = fixture.Device;
        var matching = TransformerConfig.Matching(ModelTestSupport.Micro());
        using var transformer = LanguageModel.Create(device, matching);
        long CacheBytes(int batch, int positions) => 8L * matching.Layers * batch * positions * matching.EmbedDim;
        var reserved = DecodeBenchmark.Measured(device, () =>
        {
            var state = transformer.CreateState(2, capacity: 1);
            state.Reserve(12);
            return state;
        });
        using (reserved.Value)
            Assert.Equal(CacheBytes(2, 12), reserved.Bytes);

        // Negative controls: the measurement follows what was allocated, so a cache never grown is not the formula's
        // 12 positions, and what allocates nothing on the device measures 0.
        var created = DecodeBenchmark.Measured(device, () => transformer.CreateState(2, capacity: 1));
        using (created.Value)
        {
            Assert.NotEqual(CacheBytes(2, 12), created.Bytes);
            Assert.Equal(CacheBytes(2, 1), created.Bytes);
        }
        Assert.Equal(0, DecodeBenchmark.Measured(device, () => new int[1024]).Bytes);
    }
}
