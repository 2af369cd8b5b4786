using System.Text.Json.Nodes;
using RetNet.Ilgpu.IO;
using RetNet.Ilgpu.Model;
using RetNet.Ilgpu.Tests.Support;

namespace RetNet.Ilgpu.Tests.Model;

/// <summary>Model folders as torchscale tooling would write them, read through <see cref="LanguageModel.Load"/>.</summary>
[Collection(DeviceCollection.Name)]
public sealed class ModelCheckpointFolderTests(DeviceFixture fixture) : IDisposable
{
    private readonly RetNetDevice device = fixture.Device;
    private readonly string folder = Directory.CreateTempSubdirectory("retnet-checkpoint-").FullName;

    public void Dispose() => Directory.Delete(folder, recursive: true);

    /// <summary>config.json with torchscale's extra fields, and every key under a <c>model.</c> prefix.</summary>
    private (RetNetConfig Config, IReadOnlyDictionary<string, HostTensor> Weights) WriteTorchscaleFolder(bool tied)
    {
        var config = ModelTestSupport.Micro("gelu", tied, scaleEmbedding: true);
        var weights = ModelTestSupport.Weights(config, seed: 21);
        var json = JsonNode.Parse(config.ToJson())!.AsObject();
        json["dropout"] = 0.1;
        json["decoder_normalize_before"] = true;
        json["max_target_positions"] = 2048;
        File.WriteAllText(Path.Combine(folder, "config.json"), json.ToJsonString());
        Safetensors.Write(Path.Combine(folder, "model.safetensors"),
            weights.ToDictionary(kv => "model." + kv.Key, kv => kv.Value));
        return (config, weights);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void A_torchscale_layout_folder_loads_and_matches_the_float64_forward_in_every_form(bool tied)
    {
        var (config, weights) = WriteTorchscaleFolder(tied);
        var tokens = ModelTestSupport.Tokens(seed: 8, batch: 2, seqLen: 6, config.VocabSize);
        var expected = ModelReference.Forward(config, weights, tokens);

        using var model = LanguageModel.Load(device, folder);
        ModelTestSupport.AssertEveryFormMatches(model, tokens, expected, $"torchscale folder tied={tied}", 4);
    }

    [Fact]
    public void A_truncated_weights_file_is_refused_and_nothing_is_allocated()
    {
        WriteTorchscaleFolder(tied: false);
        var path = Path.Combine(folder, "model.safetensors");
        var bytes = File.ReadAllBytes(path);
        File.WriteAllBytes(path, bytes[..(bytes.Length / 2)]);
        var before = device.Memory.CurrentBytes;

        var error = Assert.Throws<SafetensorsFormatException>(() => LanguageModel.Load(device, folder));

        Assert.Contains("model.safetensors", error.Message);
        Assert.Equal(before, device.Memory.CurrentBytes);
    }

    [Fact]
    public void A_missing_and_a_wrongly_shaped_tensor_are_named_together()
    {
        var (config, weights) = WriteTorchscaleFolder(tied: false);
        var broken = weights.ToDictionary(kv => kv.Key, kv => kv.Value);
        broken.Remove("layers.1.ffn.gate.weight");
        broken["layer_norm.weight"] = new HostTensor([config.EmbedDim + 1], new float[config.EmbedDim + 1]);
        Safetensors.Write(Path.Combine(folder, "model.safetensors"), broken);

        var error = Assert.Throws<CheckpointMismatchException>(() => LanguageModel.Load(device, folder));

        Assert.Contains("layers.1.ffn.gate.weight", error.Message);
        Assert.Contains("layer_norm.weight", error.Message);
    }
}
