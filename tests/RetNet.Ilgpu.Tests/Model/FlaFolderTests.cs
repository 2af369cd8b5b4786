using System.Text.Json.Nodes;
using RetNet.Ilgpu.IO;
using RetNet.Ilgpu.Model;
using RetNet.Ilgpu.Tests.Support;

namespace RetNet.Ilgpu.Tests.Model;

/// <summary>
/// fla's Hugging Face folders: the config's key sets and refusals, the real models' sizes, sharded weights and their
/// failures (each with one clear error), and saving in fla's convention so that the folder loads back the same.
/// </summary>
[Collection(DeviceCollection.Name)]
public sealed class FlaFolderTests(DeviceFixture fixture)
{
    private readonly RetNetDevice device = fixture.Device;

    private static string Fixture(string name) => Path.Combine(FlaFixture.Root, name);

    [Fact]
    public void The_13b_preset_has_fla_hubs_parameter_count_and_tensor_count()
    {
        var config = FlaRetNetConfig.Preset("fla-1.3b");
        Assert.Equal(2816, config.FfnDim);
        Assert.Equal(1_351_727_104, config.ParameterCount());
        Assert.Equal(267, config.ExpectedWeights().Count);
        Assert.Equal(TensorDType.BFloat16, config.StoredType);
        Assert.Equal(3584, FlaRetNetConfig.Preset("fla-2.7b").FfnDim);
    }

    [Fact]
    public void Config_json_is_told_apart_from_torchscales_and_round_trips()
    {
        var json = File.ReadAllText(Path.Combine(Fixture("fp32-untied-h2"), "config.json"));
        var config = Assert.IsType<FlaRetNetConfig>(ModelConfig.FromJson(json));
        Assert.Equal("fla", config.Convention);
        Assert.Equal(config, FlaRetNetConfig.FromJson(config.ToJson()));
        var written = JsonNode.Parse(config.ToJson())!;
        Assert.Equal("RetNetForCausalLM", written["architectures"]![0]!.GetValue<string>());
        Assert.Equal("retnet", written["model_type"]!.GetValue<string>());
        Assert.Equal(32, written["hidden_size"]!.GetValue<int>());
    }

    [Fact]
    public void The_2024_key_set_loads_with_rms_norm_eps()
    {
        var json = """
            {"model_type": "retnet", "vocab_size": 48, "hidden_size": 32, "expand_k": 1, "expand_v": 2,
             "hidden_ratio": 2, "intermediate_size": null, "num_hidden_layers": 2, "num_heads": 2,
             "attn_mode": "fused_chunk", "hidden_act": "swish", "rms_norm_eps": 1e-5, "fuse_norm": true,
             "tie_word_embeddings": false}
            """;
        var config = Assert.IsType<FlaRetNetConfig>(ModelConfig.FromJson(json));
        Assert.Equal(1e-5, config.LayerNormEps);
        Assert.Equal(256, config.FfnDim);
    }

    [Theory]
    [InlineData("use_short_conv", "true", "short convolutions")]
    [InlineData("feature_map", "\"elu\"", "feature map")]
    [InlineData("attn", "{\"layers\": [1], \"num_heads\": 2}", "hybrid layers")]
    [InlineData("use_output_gate", "false", "without the output gate")]
    [InlineData("elementwise_affine", "false", "norms without weights")]
    [InlineData("attnres_block_size", "2", "AttnRes")]
    [InlineData("use_l2warp", "true", "L2-warp")]
    [InlineData("hidden_act", "\"powlu\"", "hidden_act")]
    [InlineData("num_kv_heads", "3", "num_kv_heads")]
    public void Options_the_library_does_not_implement_are_refused_by_name(string key, string value, string phrase)
    {
        var node = JsonNode.Parse(File.ReadAllText(Path.Combine(Fixture("fp32-untied-h2"), "config.json")))!.AsObject();
        node[key] = JsonNode.Parse(value);
        var error = Assert.Throws<ArgumentException>(() => ModelConfig.FromJson(node.ToJsonString()));
        Assert.Contains(key, error.Message);
        Assert.Contains(phrase, error.Message);
    }

    [Fact]
    public void A_missing_shard_is_named()
    {
        var folder = Copy("fp32-sharded-h2");
        try
        {
            File.Delete(Path.Combine(folder, "model-00002-of-00002.safetensors"));
            var error = Assert.Throws<FileNotFoundException>(() => LanguageModel.Load(device, folder));
            Assert.Contains("model-00002-of-00002.safetensors", error.Message);
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }

    [Fact]
    public void An_index_naming_a_tensor_its_shard_lacks_is_named()
    {
        var folder = Copy("fp32-sharded-h2");
        try
        {
            var indexPath = Path.Combine(folder, ShardedSafetensors.IndexFile);
            var index = JsonNode.Parse(File.ReadAllText(indexPath))!;
            var map = index["weight_map"]!.AsObject();
            // Point one tensor at the other shard.
            var (name, file) = map.First(p => p.Value!.GetValue<string>() == "model-00001-of-00002.safetensors");
            map[name] = "model-00002-of-00002.safetensors";
            File.WriteAllText(indexPath, index.ToJsonString());
            var error = Assert.Throws<SafetensorsFormatException>(() => LanguageModel.Load(device, folder));
            Assert.Contains(name, error.Message);
            Assert.Contains("model-0000", error.Message);
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }

    [Fact]
    public void Saving_in_fla_convention_loads_back_the_same_single_file_and_sharded()
    {
        var f = FlaFixture.Load("bf16-untied-h2");
        var single = Directory.CreateTempSubdirectory("retnet-fla-save-").FullName;
        var sharded = Directory.CreateTempSubdirectory("retnet-fla-shards-").FullName;
        try
        {
            using var model = LanguageModel.Load(device, f.Folder);
            using var before = model.Forward(f.Tokens, ForwardMode.Parallel);
            model.Save(single);
            Assert.True(File.Exists(Path.Combine(single, "model.safetensors")));
            var saved = FlaRetNetConfig.Load(Path.Combine(single, "config.json"));
            Assert.Equal("bfloat16", saved.TorchDtype);
            var names = Safetensors.ReadEntries(Path.Combine(single, "model.safetensors")).Select(e => e.Name).ToHashSet();
            var original = Safetensors.ReadEntries(Path.Combine(f.Folder, "model.safetensors")).Select(e => e.Name).ToHashSet();
            Assert.Equal(original, names);
            // fla's files keep every tensor in torch_dtype: the norms too.
            Assert.All(Safetensors.ReadEntries(Path.Combine(single, "model.safetensors")),
                e => Assert.Equal(SafetensorsDType.BF16, e.DType));

            // The same weights in shards of at most 16 KiB, then loaded from the index.
            ModelFolder.Write(sharded, saved.ToJson(), model.ExportWeights(), new Dictionary<string, string> { ["format"] = "pt" },
                maxShardBytes: 16 << 10);
            Assert.False(File.Exists(Path.Combine(sharded, "model.safetensors")));
            Assert.True(Directory.GetFiles(sharded, "model-*-of-*.safetensors").Length > 2);
            foreach (var folder in new[] { single, sharded })
            {
                using var loaded = LanguageModel.Load(device, folder);
                using var after = loaded.Forward(f.Tokens, ForwardMode.Parallel);
                Assert.Equal(before.ToHost(), after.ToHost());
            }
        }
        finally
        {
            Directory.Delete(single, recursive: true);
            Directory.Delete(sharded, recursive: true);
        }
    }

    [Fact]
    public void Shards_of_another_save_than_the_index_are_refused()
    {
        var folder = Directory.CreateTempSubdirectory("retnet-fla-mixed-").FullName;
        try
        {
            var f = FlaFixture.Load("fp32-untied-h2");
            using var model = LanguageModel.Load(device, f.Folder);
            var json = model.Config.ToJson();
            var weights = model.ExportWeights();
            var metadata = new Dictionary<string, string> { ["format"] = "pt" };
            ModelFolder.Write(folder, json, weights, metadata, maxShardBytes: 64 << 10);
            var firstIndex = File.ReadAllText(Path.Combine(folder, ShardedSafetensors.IndexFile));
            // A second save killed after its shards, before its index: the old index stays.
            ModelFolder.Write(folder, json, weights, metadata, maxShardBytes: 64 << 10);
            File.WriteAllText(Path.Combine(folder, ShardedSafetensors.IndexFile), firstIndex);
            var error = Assert.Throws<SafetensorsFormatException>(() => LanguageModel.Load(device, folder));
            Assert.Contains("interrupted", error.Message);
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }

    private static string Copy(string name)
    {
        var folder = Directory.CreateTempSubdirectory("retnet-fla-copy-").FullName;
        foreach (var file in Directory.GetFiles(Fixture(name)))
            File.Copy(file, Path.Combine(folder, Path.GetFileName(file)));
        return folder;
    }
}
