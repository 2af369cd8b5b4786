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
            // Measured (the state's device tensors) against the size retention's state must have: layers · B · H ·
            // Dk · Dv floats, whatever the position.
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
}
