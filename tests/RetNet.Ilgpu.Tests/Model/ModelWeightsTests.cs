using RetNet.Ilgpu.IO;
using RetNet.Ilgpu.Model;
using RetNet.Ilgpu.Tests.Support;

namespace RetNet.Ilgpu.Tests.Model;

[Collection(DeviceCollection.Name)]
public sealed class ModelWeightsTests(DeviceFixture fixture)
{
    private readonly RetNetDevice device = fixture.Device;

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void ExportWeights_then_FromWeights_round_trips_bit_for_bit(bool tied)
    {
        var config = ModelTestSupport.Micro(tied: tied);
        using var model = LanguageModel.Create(device, config, seed: 21);
        var exported = model.ExportWeights();
        Assert.Equal(!tied, exported.ContainsKey("output_projection.weight"));
        Assert.Equal(WeightLayout.Expected(config).Select(e => e.Name), exported.Keys);
        using var again = LanguageModel.FromWeights(device, config, exported);
        foreach (var (name, tensor) in again.ExportWeights())
            Assert.True(tensor.Data.AsSpan().SequenceEqual(exported[name].Data), name);
    }

    [Fact]
    public void Initialisation_is_reproducible_from_the_seed_and_follows_torchscale_scales()
    {
        var config = RetNetConfig.Preset("tiny");
        var a = WeightLayout.Initialize(config, 3);
        var b = WeightLayout.Initialize(config, 3);
        var c = WeightLayout.Initialize(config, 4);
        Assert.True(a["layers.1.ffn.fc2.weight"].Data.AsSpan().SequenceEqual(b["layers.1.ffn.fc2.weight"].Data));
        Assert.False(a["embed_tokens.weight"].Data.AsSpan().SequenceEqual(c["embed_tokens.weight"].Data));
        var q = a["layers.0.retention.q_proj.weight"].Data;
        var bound = Math.Pow(2, -2.5) * Math.Sqrt(6.0 / (64 + 64));
        Assert.All(q, v => Assert.InRange(Math.Abs(v), 0, bound));
        Assert.True(q.Max(Math.Abs) > 0.9 * bound);
        var embed = a["embed_tokens.weight"].Data;
        var std = Math.Sqrt(embed.Select(v => (double)v * v).Average());
        Assert.InRange(std, 0.9 / 8, 1.1 / 8);
        Assert.All(a["layer_norm.weight"].Data, v => Assert.Equal(1f, v));
    }

    [Fact]
    public void Prefixed_names_are_accepted_and_a_tied_duplicate_is_dropped()
    {
        var config = ModelTestSupport.Micro(tied: true);
        var weights = WeightLayout.Initialize(config, 2);
        var prefixed = weights.ToDictionary(kv => "decoder." + kv.Key, kv => kv.Value);
        prefixed["model.output_projection.weight"] = weights["embed_tokens.weight"];
        using var model = LanguageModel.FromWeights(device, config, prefixed);
        Assert.Equal(weights.Count, model.ExportWeights().Count);
    }

    [Fact]
    public void Mismatched_weights_are_all_listed_and_nothing_is_allocated()
    {
        var config = ModelTestSupport.Micro();
        var weights = WeightLayout.Initialize(config, 2).ToDictionary(kv => kv.Key, kv => kv.Value);
        weights.Remove("layers.1.ffn.gate.weight");
        weights.Remove("layer_norm.weight");
        weights["layers.0.retention.v_proj.weight"] = new HostTensor([3, 4], new float[12]);
        weights["layers.7.extra.weight"] = new HostTensor([1], [0f]);
        var before = device.Memory.CurrentBytes;
        var error = Assert.Throws<CheckpointMismatchException>(() => LanguageModel.FromWeights(device, config, weights));
        Assert.Equal(before, device.Memory.CurrentBytes);
        Assert.Equal(["layers.1.ffn.gate.weight", "layer_norm.weight"], error.Missing);
        Assert.Equal(["layers.7.extra.weight"], error.Unexpected);
        Assert.Single(error.WrongShape);
        Assert.Contains("layers.0.retention.v_proj.weight: expected [64, 32], got [3, 4]", error.Message);
        Assert.Contains("layers.1.ffn.gate.weight", error.Message);
    }

    [Fact]
    public void Save_then_Load_round_trips_the_folder()
    {
        var config = ModelTestSupport.Micro(activation: "gelu");
        var folder = Path.Combine(Path.GetTempPath(), $"retnet-model-{Guid.NewGuid():N}");
        try
        {
            using var model = LanguageModel.Create(device, config, seed: 5);
            model.Save(folder);
            using var loaded = LanguageModel.Load(device, folder);
            Assert.Equal(config, loaded.Config);
            var expected = model.ExportWeights();
            foreach (var (name, tensor) in loaded.ExportWeights())
                Assert.True(tensor.Data.AsSpan().SequenceEqual(expected[name].Data), name);
            File.Delete(Path.Combine(folder, "model.safetensors"));
            Assert.Throws<FileNotFoundException>(() => LanguageModel.Load(device, folder));
        }
        finally
        {
            if (Directory.Exists(folder))
                Directory.Delete(folder, recursive: true);
        }
    }
}
