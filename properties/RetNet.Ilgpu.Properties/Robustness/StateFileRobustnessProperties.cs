using System.Text.Json.Nodes;
using FsCheck;
using FsCheck.Fluent;
using RetNet.Ilgpu.Model;
using RetNet.Ilgpu.Tests.Support;

namespace RetNet.Ilgpu.Properties.Robustness;

/// <summary>
/// <see cref="DecodingState.Load"/> and <see cref="DecodingState.Load"/> on saved states with the positions metadata
/// rewritten (empty, negative, fractional, beyond int32, ragged, thousands of sequences), a tensor renamed, dropped or
/// reshaped, or any mutation of the safetensors file itself: each returns a state whose batch, positions and tensor
/// shapes fit the model, or throws a typed exception.
/// </summary>
[Collection(PropertyDeviceCollection.Name)]
public sealed class StateFileRobustnessProperties(DeviceFixture fixture) : IDisposable
{
    private static readonly string[] Positions =
    [
        "", ",", "0", "3", "-1", "+1", " 1", "1 ", "1.5", "1e3", "0x10", "2147483647", "2147483648", "99999999999999999999",
        "1,,2", "1,2", "1,2,3", "٣", "NaN", string.Join(",", Enumerable.Repeat("1", 5000)),
    ];

    private readonly RetNetDevice device = fixture.Device;
    private readonly string folder = Fuzz.TemporaryFolder("state");

    /// <inheritdoc/>
    public void Dispose() => Directory.Delete(folder, recursive: true);

    private static MutatedFile Mutate(byte[] valid, Random random)
    {
        var image = SafetensorsImage.Parse(valid);
        var metadata = image.Header.FindIndex(p => p.Key == SafetensorsImage.MetadataKey);
        var tensors = image.TensorIndices();
        var t = tensors[random.Next(tensors.Count)];
        switch (random.Next(6))
        {
            case 0:
                return new("unchanged", image.Serialize(), MustBeAccepted: true);
            case 1:
            {
                var positions = Positions[random.Next(Positions.Length)];
                image.Header[metadata].Value!["positions"] = positions;
                return new($"positions '{(positions.Length > 20 ? positions[..20] + "…" : positions)}'", image.Serialize());
            }
            case 2:
            {
                var format = new[] { "pt", "", "retnet-decoding-state", "retnet-ilgpu-kv-cache" }[random.Next(4)];
                image.Header[metadata].Value!["format"] = format;
                return new($"format '{format}'", image.Serialize());
            }
            case 3:
            {
                var name = image.Header[t].Key;
                var renamed = new[] { name + "x", "layers.9.retention_state", "layers.0.keys", "layers.1.values", "" }[random.Next(5)];
                image.Header[t] = new(renamed, image.Header[t].Value);
                return new($"'{name}' renamed '{renamed}'", image.Serialize());
            }
            case 4:
            {
                // The same bytes under another shape of the same element count.
                var entry = image.Header[t].Value!.AsObject();
                var shape = entry["shape"]!.AsArray().Select(d => d!.GetValue<int>()).ToArray();
                var count = shape.Aggregate(1, (a, b) => a * b);
                var reshaped = new[] { new[] { count }, new[] { 1, count }, shape.Reverse().ToArray(), [.. shape, 1] }[random.Next(4)];
                entry["shape"] = new JsonArray(reshaped.Select(d => (JsonNode?)d).ToArray());
                return new($"'{image.Header[t].Key}' reshaped [{string.Join(", ", reshaped)}]", image.Serialize());
            }
            default:
                return SafetensorsMutations.Mutate(image, random);
        }
    }

    private Arbitrary<MutatedFile> States(byte[] valid) =>
        Fuzz.Seeds.Generator.Select(seed => Mutate(valid, new Random(seed))).ToArbitrary();

    private byte[] Saved(Action<string> save)
    {
        var path = Path.Combine(folder, "valid.safetensors");
        save(path);
        return File.ReadAllBytes(path);
    }

    private bool Holds<T>(MutatedFile file, Func<string, T> load, Action<T> invariants)
    {
        var path = Path.Combine(folder, $"{Guid.NewGuid():N}.safetensors");
        File.WriteAllBytes(path, file.Bytes);
        try
        {
            return Fuzz.ReturnsValidOrThrowsTyped(() => load(path), invariants) || !file.MustBeAccepted;
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public void Decoding_states_load_fitting_the_model_or_throw_a_typed_error_for_any_mutation_of_a_saved_state()
    {
        var config = Tests.Model.ModelTestSupport.Micro(heads: 1, layers: 2);
        using var model = LanguageModel.Create(device, config, seed: 1);
        var prefill = model.Prefill([[1, 2, 3], [4, 5]]);
        using var state = prefill.State;
        var valid = Saved(state.Save);
        Fuzz.Check(Prop.ForAll(States(valid), file => Holds(file, path => DecodingState.Load(path, model), loaded =>
        {
            using (loaded)
            {
                Assert.Equal(loaded.Batch, loaded.Positions.Count);
                Assert.All(loaded.Positions, p => Assert.True(p >= 0));
                int[] shape = [loaded.Batch, config.RetentionHeads, config.KeyHeadDim, config.ValueHeadDim];
                Assert.All(loaded.Tensors.Values, s => Assert.Equal(shape, s.ShapeArray));
                Assert.Equal(config.Layers, loaded.Tensors.Count);
            }
        })), ciCases: 60);
    }

    [Fact]
    public void Kv_caches_load_fitting_the_model_or_throw_a_typed_error_for_any_mutation_of_a_saved_cache()
    {
        using var model = LanguageModel.Create(device, new TransformerConfig
        {
            EmbedDim = 8, Heads = 2, FfnEmbedDim = 8, Layers = 2, VocabSize = 20,
        }, seed: 1);
        var (_, cache) = model.Prefill([[1, 2, 3], [4, 5]]);
        using (cache)
        {
            var valid = Saved(cache.Save);
            Fuzz.Check(Prop.ForAll(States(valid), file => Holds(file, path => DecodingState.Load(path, model), loaded =>
            {
                using (loaded)
                {
                    Assert.Equal(loaded.Batch, loaded.Positions.Count);
                    Assert.All(loaded.Positions, p => Assert.InRange(p, 0, loaded.Capacity!.Value));
                }
            })), ciCases: 60);
        }
    }
}
