using RetNet.Ilgpu.IO;
using RetNet.Ilgpu.Model;
using RetNet.Ilgpu.Tests.Support;

namespace RetNet.Ilgpu.Tests.Model;

/// <summary>
/// A model folder is two files; <see cref="ModelFolder"/> makes model.safetensors the commit point. These tests build
/// the folder a kill between the two renames leaves (new weights beside the superseded config.json) and check that it
/// loads as the new version, while a config.json edited after a save still wins.
/// </summary>
[Collection(DeviceCollection.Name)]
public sealed class ModelFolderTests(DeviceFixture fixture) : IDisposable
{
    private readonly RetNetDevice device = fixture.Device;
    private readonly string folder = Directory.CreateTempSubdirectory("retnet-folder-").FullName;

    public void Dispose() => Directory.Delete(folder, recursive: true);

    private string ConfigPath => Path.Combine(folder, ModelFolder.ConfigFile);

    /// <summary>Saves <paramref name="first"/>, then <paramref name="second"/> as if killed before its config.json
    /// rename: the second save's weights beside the first save's config.json.</summary>
    private void SaveInterruptedBetweenTheFiles(ILanguageModel first, ILanguageModel second)
    {
        first.Save(folder);
        var superseded = File.ReadAllBytes(ConfigPath);
        second.Save(folder);
        File.WriteAllBytes(ConfigPath, superseded);
    }

    [Fact]
    public void Save_embeds_the_config_and_a_whole_folder_loads_without_notices()
    {
        using var model = LanguageModel.Create(device, ModelTestSupport.Micro(), seed: 1);
        model.Save(folder);
        var metadata = Safetensors.Read(Path.Combine(folder, ModelFolder.WeightsFile)).Metadata;
        Assert.Equal(File.ReadAllText(ConfigPath), metadata[ModelFolder.ConfigKey]);
        Assert.Equal("pt", metadata["format"]);
        using var loaded = LanguageModel.Load(device, folder);
        Assert.Empty(loaded.Notices);
    }

    [Fact]
    public void An_interrupted_save_loads_the_new_weights_with_their_config_even_when_the_shapes_agree()
    {
        // Same tensor shapes, another activation: only the saved hash can tell the superseded config.json apart.
        var old = ModelTestSupport.Micro("swish");
        var current = ModelTestSupport.Micro("gelu");
        using var first = LanguageModel.Create(device, old, seed: 1);
        using var second = LanguageModel.Create(device, current, seed: 2);
        SaveInterruptedBetweenTheFiles(first, second);

        using var loaded = LanguageModel.Load(device, folder);
        Assert.Equal(current, loaded.Config);
        Assert.Contains("interrupted", Assert.Single(loaded.Notices));
        var expected = second.ExportWeights();
        foreach (var (name, tensor) in loaded.ExportWeights())
            Assert.True(tensor.Data.AsSpan().SequenceEqual(expected[name].Data), name);
    }

    [Fact]
    public void An_interrupted_save_from_a_RetNet_to_a_Transformer_loads_the_Transformer()
    {
        using var first = LanguageModel.Create(device, ModelTestSupport.Micro(), seed: 1);
        using var second = LanguageModel.Create(device, new TransformerConfig
        {
            EmbedDim = 32, Heads = 2, FfnEmbedDim = 40, Layers = 1, VocabSize = 40,
        }, seed: 3);
        SaveInterruptedBetweenTheFiles(first, second);

        using var loaded = LanguageModel.Load(device, folder);
        var transformer = Assert.IsType<LanguageModel>(loaded);
        Assert.Equal(second.Config, transformer.Config);
        Assert.Single(loaded.Notices);
    }

    [Fact]
    public void A_config_json_edited_after_the_save_is_used_and_said()
    {
        var saved = ModelTestSupport.Micro("swish");
        using var model = LanguageModel.Create(device, saved, seed: 1);
        model.Save(folder);
        File.WriteAllText(ConfigPath, (saved with { ActivationFn = "gelu" }).ToJson());

        using var loaded = LanguageModel.Load(device, folder);
        Assert.Equal("gelu", Assert.IsType<RetNetConfig>(loaded.Config).ActivationFn);
        Assert.Contains("edited", Assert.Single(loaded.Notices));

        // Negative control: the same text reformatted is the same config, and says nothing.
        File.WriteAllText(ConfigPath, saved.ToJson().Replace("\n", "\r\n", StringComparison.Ordinal));
        using var reformatted = LanguageModel.Load(device, folder);
        Assert.Empty(reformatted.Notices);
    }

    [Fact]
    public void A_config_json_that_does_not_fit_the_weights_gives_way_to_the_saved_config()
    {
        var saved = ModelTestSupport.Micro();
        using var model = LanguageModel.Create(device, saved, seed: 1);
        model.Save(folder);
        File.WriteAllText(ConfigPath, (saved with { Layers = 3 }).ToJson());

        using var loaded = LanguageModel.Load(device, folder);
        Assert.Equal(saved, loaded.Config);
        Assert.Contains("does not fit", Assert.Single(loaded.Notices));
    }

    [Fact]
    public void A_missing_config_json_is_replaced_by_the_saved_config_but_a_missing_weights_file_is_refused()
    {
        var saved = ModelTestSupport.Micro();
        using var model = LanguageModel.Create(device, saved, seed: 1);
        model.Save(folder);
        File.Delete(ConfigPath);
        using (var loaded = LanguageModel.Load(device, folder))
            Assert.Equal(saved, loaded.Config);

        File.Delete(Path.Combine(folder, ModelFolder.WeightsFile));
        Assert.Throws<FileNotFoundException>(() => LanguageModel.Load(device, folder));
    }
}
