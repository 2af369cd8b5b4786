using RetNet.Ilgpu.IO;
using RetNet.Ilgpu.Model;
using RetNet.Ilgpu.Tests.Support;

namespace RetNet.Ilgpu.Tests.Model;

/// <summary>A checkpoint holding NaN or ±∞ is refused at load with the tensor named (it would otherwise load and
/// give NaN logits); the debugging flag loads it anyway.</summary>
[Collection(DeviceCollection.Name)]
public sealed class NonFiniteWeightTests(DeviceFixture fixture)
{
    private readonly RetNetDevice device = fixture.Device;

    [Theory]
    [InlineData(float.NaN)]
    [InlineData(float.PositiveInfinity)]
    [InlineData(float.NegativeInfinity)]
    public void A_non_finite_weight_is_refused_with_its_tensor_and_index(float poison)
    {
        var config = ModelTestSupport.Micro();
        var weights = ModelTestSupport.Weights(config, seed: 3);
        weights["layers.1.ffn.fc2.weight"].Data[17] = poison;
        weights["layers.1.ffn.fc2.weight"].Data[20] = poison;

        var error = Assert.Throws<ArgumentException>(() => LanguageModel.FromWeights(device, config, weights));
        Assert.Contains("layers.1.ffn.fc2.weight at flat index 17", error.Message);
        Assert.Contains("2 non-finite values", error.Message);

        // Loaded anyway, the model refuses to return the non-finite logits and names the block they come from.
        using var model = LanguageModel.FromWeights(device, config, weights, allowNonFiniteWeights: true);
        var refused = Assert.Throws<NonFiniteValuesException>(() => model.Forward(new int[,] { { 1, 2, 3 } }));
        Assert.StartsWith("block 1 (layers.1", refused.Stage);
        Assert.Contains("block 1", refused.Message);
    }

    [Fact]
    public void A_saved_folder_with_a_nan_is_refused_on_load_and_a_finite_one_loads()
    {
        var config = ModelTestSupport.Micro();
        var folder = Path.Combine(Path.GetTempPath(), $"retnet-nan-{Guid.NewGuid():N}");
        try
        {
            using (var model = LanguageModel.Create(device, config, seed: 1))
                model.Save(folder);
            using (LanguageModel.Load(device, folder))
            {
            }
            var path = Path.Combine(folder, "model.safetensors");
            var file = Safetensors.Read(path);
            var tensors = new Dictionary<string, HostTensor>(file.Tensors);
            tensors["embed_tokens.weight"].Data[0] = float.NaN;
            Safetensors.Write(path, tensors, file.Metadata);
            var error = Assert.Throws<ArgumentException>(() => LanguageModel.Load(device, folder));
            Assert.Contains("embed_tokens.weight", error.Message);
            using (LanguageModel.Load(device, folder, allowNonFiniteWeights: true))
            {
            }
        }
        finally
        {
            if (Directory.Exists(folder))
                Directory.Delete(folder, recursive: true);
        }
    }
}
