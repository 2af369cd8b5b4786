using RetNet.Ilgpu.IO;
using RetNet.Ilgpu.Kernels.Conversion;
using RetNet.Ilgpu.Model;
using RetNet.Ilgpu.Tensors;
using RetNet.Ilgpu.Tests.Support;

namespace RetNet.Ilgpu.Tests.Model;

/// <summary>
/// A model loaded with <c>mapWeights</c>: on the CPU accelerator its weights are read-only tensors over the
/// memory-mapped safetensors file, read in place by the operators. They compute exactly what copied weights compute,
/// refuse every write, and the file is unmapped when the model is disposed.
/// </summary>
[Collection(DeviceCollection.Name)]
public sealed class MappedWeightTests(DeviceFixture fixture) : IDisposable
{
    private readonly RetNetDevice device = fixture.Device;
    private readonly string folder = Directory.CreateTempSubdirectory("retnet-mapped-").FullName;

    public void Dispose() => Directory.Delete(folder, recursive: true);

    public static TheoryData<TensorDType, bool> Cases => new()
    {
        { TensorDType.Float32, false }, { TensorDType.BFloat16, false }, { TensorDType.BFloat16, true },
        { TensorDType.Float16, false },
    };

    /// <summary>Saves a micro model with its matrices in <paramref name="dtype"/> to a folder of its own.</summary>
    private string Saved(TensorDType dtype, bool tied, int seed, string name)
    {
        var config = ModelTestSupport.Micro(tied: tied);
        using var model = LanguageModel.FromWeights(device, config, ModelTestSupport.Weights(config, seed),
            weightType: dtype);
        var path = Path.Combine(folder, name);
        model.Save(path);
        return path;
    }

    /// <summary>Every form's logits and three decoding steps' logits after a prefill, flattened.</summary>
    private static float[] Outputs(LanguageModel model, int[,] tokens)
    {
        var outputs = new List<float>();
        foreach (var mode in ModelTestSupport.EveryForm(3))
        {
            using var logits = model.Forward(tokens, mode);
            outputs.AddRange(logits.ToHost());
        }
        var prefill = model.Prefill([ModelTestSupport.Row(tokens, 0, 3)]);
        using var state = prefill.State;
        outputs.AddRange(prefill.Logits[0]);
        for (var t = 3; t < 6; t++)
            outputs.AddRange(model.Step([tokens[0, t]], state)[0]);
        return outputs.ToArray();
    }

    private static bool BitIdentical(float[] a, float[] b) =>
        a.Length == b.Length && a.Zip(b).All(p => BitConverter.SingleToInt32Bits(p.First) ==
                                                  BitConverter.SingleToInt32Bits(p.Second));

    [Theory, MemberData(nameof(Cases))]
    public void Mapped_weights_give_bit_identical_outputs_to_copied_ones(TensorDType dtype, bool tied)
    {
        var path = Saved(dtype, tied, seed: 11, "model");
        var tokens = ModelTestSupport.Tokens(seed: 12, batch: 2, seqLen: 6, ModelTestSupport.Micro().VocabSize);
        using var copied = LanguageModel.Load(device, path);
        using var mapped = LanguageModel.Load(device, path, mapWeights: true);

        Assert.Equal(copied.WeightType, mapped.WeightType);
        Assert.All(copied.Parameters.Values, p => Assert.False(p.IsReadOnly));
        if (device.IsCpuSimulator)
        {
            // Every weight is stored in the file in the type the model keeps it in, so none is copied.
            Assert.All(mapped.Parameters, p => Assert.True(p.Value.IsReadOnly, p.Key));
        }
        var expected = Outputs(copied, tokens);
        var actual = Outputs(mapped, tokens);
        Assert.True(BitIdentical(expected, actual), $"{dtype} tied={tied}: mapped outputs differ from copied ones");
    }

    [Theory]
    [InlineData(TensorDType.Float32)]
    [InlineData(TensorDType.BFloat16)]
    public void A_transformer_reads_mapped_weights_exactly_like_copied_ones(TensorDType dtype)
    {
        var config = TransformerConfig.Matching(ModelTestSupport.Micro());
        var path = Path.Combine(folder, "transformer");
        using (var created = LanguageModel.Create(device, config, seed: 21, weightType: dtype))
            created.Save(path);
        var tokens = ModelTestSupport.Tokens(seed: 22, batch: 2, seqLen: 6, config.VocabSize);
        using var copied = LanguageModel.Load(device, path);
        using var mapped = LanguageModel.Load(device, path, mapWeights: true);

        float[] Run(LanguageModel model)
        {
            using var logits = model.Forward(tokens);
            var prefill = model.Prefill([ModelTestSupport.Row(tokens, 0, 3)]);
            using var state = prefill.State;
            return [.. logits.ToHost(), .. prefill.Logits[0], .. model.Step([tokens[0, 3]], state)[0]];
        }
        Assert.True(BitIdentical(Run(copied), Run(mapped)), $"{dtype}: mapped outputs differ from copied ones");
    }

    [Fact]
    public void Negative_control_one_changed_weight_byte_changes_the_mapped_outputs()
    {
        var path = Saved(TensorDType.BFloat16, tied: false, seed: 11, "model");
        var perturbed = Path.Combine(folder, "perturbed");
        Directory.CreateDirectory(perturbed);
        foreach (var file in Directory.GetFiles(path))
            File.Copy(file, Path.Combine(perturbed, Path.GetFileName(file)));
        var weights = Path.Combine(perturbed, ModelFolder.WeightsFile);
        var entry = Safetensors.ReadEntries(weights).Single(e => e.Name.EndsWith("ffn.fc1.weight") &&
                                                                 e.Name.Contains("layers.0."));
        var bytes = File.ReadAllBytes(weights);
        var dataStart = 8 + (long)BitConverter.ToUInt64(bytes, 0);
        bytes[dataStart + entry.Begin + 1] ^= 0x01; // the exponent's low bit of element 0 (bf16, little-endian)
        File.WriteAllBytes(weights, bytes);
        var tokens = ModelTestSupport.Tokens(seed: 12, batch: 2, seqLen: 6, ModelTestSupport.Micro().VocabSize);

        using var original = LanguageModel.Load(device, path, mapWeights: true);
        using var changed = LanguageModel.Load(device, perturbed, mapWeights: true);
        Assert.False(BitIdentical(Outputs(original, tokens), Outputs(changed, tokens)));
    }

    [Fact]
    public void A_write_to_a_mapped_weight_is_refused()
    {
        if (!device.IsCpuSimulator)
            return; // weights are mapped in place only on the CPU accelerator
        var path = Saved(TensorDType.Float32, tied: false, seed: 13, "model");
        using var model = LanguageModel.Load(device, path, mapWeights: true);
        var (name, weight) = model.Parameters.First(p => p.Value.Rank == 2);
        var before = weight.ToHost();

        var error = Assert.Throws<InvalidOperationException>(() => weight.CopyFromHost(new float[weight.Length]));
        Assert.Contains("read-only", error.Message);
        Assert.Contains(ModelFolder.WeightsFile, error.Message);
        using var source = Tensor.Zeros(device, weight.ShapeArray);
        Assert.Throws<InvalidOperationException>(() => weight.CopyFrom(source));
        Assert.Throws<InvalidOperationException>(() => Conversion.Convert(source, weight));
        using var gradients = model.CreateGradients();
        model.ForwardBackward(ModelTestSupport.Tokens(1, 1, 4, model.VocabSize), gradients, ForwardMode.Parallel);
        using var optimizer = RetNet.Ilgpu.Training.AdamW.For(model, new RetNet.Ilgpu.Training.AdamWOptions());
        Assert.Throws<InvalidOperationException>(() => optimizer.Step(gradients.Tensors, 1e-3));
        Assert.Equal(before, model.Parameters[name].ToHost());
    }

    [Fact]
    public void Disposing_the_model_unmaps_the_file()
    {
        if (!OperatingSystem.IsLinux())
            return; // reads /proc/self/maps
        var path = Saved(TensorDType.BFloat16, tied: false, seed: 14, "model");
        var weights = Path.GetFullPath(Path.Combine(path, ModelFolder.WeightsFile));
        var tokens = ModelTestSupport.Tokens(seed: 15, batch: 1, seqLen: 6, ModelTestSupport.Micro().VocabSize);
        float[] expected;
        using (var copied = LanguageModel.Load(device, path))
            expected = Outputs(copied, tokens);

        var model = LanguageModel.Load(device, path, mapWeights: true);
        // On the CPU accelerator the weights are the mapped bytes; elsewhere each tensor was uploaded once from them
        // and the mapping is gone already.
        if (device.IsCpuSimulator)
            Assert.Contains(weights, File.ReadAllText("/proc/self/maps"));
        else
            Assert.DoesNotContain(weights, File.ReadAllText("/proc/self/maps"));
        // The file may be deleted (or replaced by a save) while mapped: the mapping keeps its contents.
        File.Delete(weights);
        Assert.True(BitIdentical(expected, Outputs(model, tokens)));
        model.Dispose();

        Assert.DoesNotContain(weights, File.ReadAllText("/proc/self/maps"));
        Assert.DoesNotContain(device.UndisposedBuffers, b => b.Contains("memory-mapped"));
    }

    [Fact]
    public void The_mapping_lives_while_a_tensor_over_it_does()
    {
        if (!device.IsCpuSimulator)
            return; // weights are mapped in place only on the CPU accelerator
        var path = Path.Combine(folder, "t.safetensors");
        Safetensors.Write(path, new Dictionary<string, HostTensor> { ["w"] = new([2, 3], [1f, 2f, 3f, 4f, 5f, 6f]) });
        var mapping = MappedSafetensors.Open(path);
        var tensor = mapping.File.Tensors["w"].TryMapToDevice(device, TensorDType.Float32)!;
        mapping.Dispose();

        Assert.False(mapping.IsUnmapped);
        Assert.Equal([1f, 2f, 3f, 4f, 5f, 6f], tensor.ToHost());
        tensor.Dispose();
        Assert.True(mapping.IsUnmapped);
        Assert.Throws<ObjectDisposedException>(() => mapping.File.Tensors["w"].Data);
    }

    [Fact]
    public void A_tensor_whose_bytes_are_misaligned_for_its_type_is_copied_instead()
    {
        // One bf16 element puts the f32 tensor after it 2 bytes past a 4-byte boundary: legal safetensors.
        var path = Path.Combine(folder, "odd.safetensors");
        Safetensors.Write(path, new Dictionary<string, HostTensor>
        {
            ["a"] = new([1], [(ushort)0x3F80], TensorDType.BFloat16),
            ["b"] = new([2], [2.5f, -1f]),
        });
        using var mapping = MappedSafetensors.Open(path);
        var b = mapping.File.Tensors["b"];

        Assert.Null(b.TryMapToDevice(device, TensorDType.Float32));
        using var copy = b.ToDevice(device);
        Assert.Equal([2.5f, -1f], copy.ToHost());
        Assert.False(copy.IsReadOnly);
    }
}
