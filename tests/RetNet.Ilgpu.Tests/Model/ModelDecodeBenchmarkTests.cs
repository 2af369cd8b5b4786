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
        using var model = RetNetModel.Create(fixture.Device, options.Config);
        foreach (var r in results)
        {
            Assert.Equal("retnet", r.Model);
            Assert.True(r.MsPerToken > 0 && double.IsFinite(r.MsPerToken));
            Assert.Equal(model.StateBytes(r.Batch), r.StateBytes);
            Assert.Equal(model.WeightBytes, r.WeightBytes);
        }
        Assert.Throws<ArgumentException>(() => DecodeBenchmark.Run(fixture.Device, options with { Positions = [5, 3] }));
    }
}
