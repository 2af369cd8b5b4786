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

        var error = Assert.Throws<ArgumentException>(() => RetNetModel.FromWeights(device, config, weights));
        Assert.Contains("layers.1.ffn.fc2.weight at flat index 17", error.Message);
        Assert.Contains("2 non-finite values", error.Message);

        using var model = RetNetModel.FromWeights(device, config, weights, allowNonFiniteWeights: true);
        using var logits = model.Forward(new int[,] { { 1, 2, 3 } }, ForwardMode.Parallel);
        Assert.Contains(logits.ToHost(), v => !float.IsFinite(v));
    }

    [Fact]
    public void A_saved_folder_with_a_nan_is_refused_on_load_and_a_finite_one_loads()
    {
        var config = ModelTestSupport.Micro();
        var folder = Path.Combine(Path.GetTempPath(), $"retnet-nan-{Guid.NewGuid():N}");
        try
        {
            using (var model = RetNetModel.Create(device, config, seed: 1))
                model.Save(folder);
            using (RetNetModel.Load(device, folder))
            {
            }
            var path = Path.Combine(folder, "model.safetensors");
            var file = Safetensors.Read(path);
            var tensors = new Dictionary<string, HostTensor>(file.Tensors);
            tensors["embed_tokens.weight"].Data[0] = float.NaN;
            Safetensors.Write(path, tensors, file.Metadata);
            var error = Assert.Throws<ArgumentException>(() => RetNetModel.Load(device, folder));
            Assert.Contains("embed_tokens.weight", error.Message);
            using (RetNetModel.Load(device, folder, allowNonFiniteWeights: true))
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
