using System.Buffers.Binary;
using System.Text;
using RetNet.Ilgpu.IO;
using RetNet.Ilgpu.Tensors;
using RetNet.Ilgpu.Tests.Support;

namespace RetNet.Ilgpu.Tests.IO;

public sealed class SafetensorsTests : IDisposable
{
    private readonly string folder = Directory.CreateTempSubdirectory("retnet-safetensors-").FullName;

    public void Dispose() => Directory.Delete(folder, recursive: true);

    private string PathOf(string name) => Path.Combine(folder, name);

    /// <summary>A file with the given header text and data bytes, written byte for byte.</summary>
    private string RawFile(string header, byte[] data, string name = "raw.safetensors")
    {
        var headerBytes = Encoding.UTF8.GetBytes(header);
        var bytes = new byte[8 + headerBytes.Length + data.Length];
        BinaryPrimitives.WriteUInt64LittleEndian(bytes, (ulong)headerBytes.Length);
        headerBytes.CopyTo(bytes, 8);
        data.CopyTo(bytes, 8 + headerBytes.Length);
        var path = PathOf(name);
        File.WriteAllBytes(path, bytes);
        return path;
    }

    [Fact]
    public void Write_then_read_round_trips_every_bit_shape_and_metadata()
    {
        var special = new[] { float.NaN, float.PositiveInfinity, -0f, float.Epsilon, float.MaxValue, 1.5f };
        var tensors = new Dictionary<string, HostTensor>
        {
            ["b.weight"] = new([2, 3], special),
            ["a.scalar"] = new([], [42f]),
            ["c.empty"] = new([0, 4], []),
            ["d.big"] = new([100, 300], Numerics.Uniform(3, 30000)),
        };
        var path = PathOf("model.safetensors");
        Safetensors.Write(path, tensors, new Dictionary<string, string> { ["format"] = "pt" });

        var file = Safetensors.Read(path);

        Assert.Equal(tensors.Keys.Order(), file.Tensors.Keys.Order());
        foreach (var (name, tensor) in tensors)
        {
            Assert.Equal(tensor.Shape, file.Tensors[name].Shape);
            Assert.Equal(tensor.Data.Select(BitConverter.SingleToInt32Bits), file.Tensors[name].Data.Select(BitConverter.SingleToInt32Bits));
        }
        Assert.Equal("pt", file.Metadata["format"]);
        Assert.All(file.Entries, e => Assert.Equal(SafetensorsDType.F32, e.DType));
        Assert.Equal(0, (8 + BinaryPrimitives.ReadInt64LittleEndian(File.ReadAllBytes(path))) % 8);
        Assert.Single(Directory.GetFiles(folder));
    }

    [Fact]
    public void F16_and_BF16_keep_their_bits_and_are_written_back_in_their_own_type()
    {
        ushort[] bf16 = [0x3F80, 0xC000, 0x7F80, 0x0001];
        ushort[] fp16 = [0x3C00, 0x8001, 0x7BFF];
        var path = PathOf("narrow.safetensors");
        Safetensors.Write(path, new Dictionary<string, HostTensor>
        {
            ["b"] = new([2, 2], bf16, TensorDType.BFloat16),
            ["h"] = new([3], fp16, TensorDType.Float16),
            ["f"] = new([1], [0.5f]),
        });

        var file = Safetensors.Read(path);

        Assert.Equal(bf16, file.Tensors["b"].Bits);
        Assert.Equal(TensorDType.BFloat16, file.Tensors["b"].DType);
        Assert.Equal(fp16, file.Tensors["h"].Bits);
        Assert.Null(file.Tensors["f"].Bits);
        Assert.Equal([SafetensorsDType.BF16, SafetensorsDType.F32, SafetensorsDType.F16],
            file.Entries.OrderBy(e => e.Name, StringComparer.Ordinal).Select(e => e.DType));
        // 2 bytes per element on disk: 4 + 3 halves and one single.
        Assert.Equal(7 * 2 + 4, file.Entries.Sum(e => e.End - e.Begin));
        Assert.Equal([1f, -2f, float.PositiveInfinity, BitConverter.UInt32BitsToSingle(0x0001_0000)], file.Tensors["b"].Data);
    }

    [Fact]
    public void Non_finite_16_bit_weights_are_refused_by_name_and_index()
    {
        var weights = new Dictionary<string, HostTensor>
        {
            ["ok"] = new([2], [(ushort)0x7BFF, (ushort)0xFBFF], TensorDType.Float16),
            ["bad"] = new([3], [(ushort)0x3F80, (ushort)0x3F80, (ushort)0x7FC0], TensorDType.BFloat16),
        };
        HostTensor.RequireFinite(weights, ["ok"]);
        var error = Assert.Throws<ArgumentException>(() => HostTensor.RequireFinite(weights, ["ok", "bad"]));
        Assert.Contains("NaN in bad at flat index 2", error.Message);
    }

    [Fact]
    public void F16_and_BF16_are_widened_exactly()
    {
        var data = new byte[8];
        BinaryPrimitives.WriteHalfLittleEndian(data, (Half)1.5f);
        BinaryPrimitives.WriteHalfLittleEndian(data.AsSpan(2), (Half)(-0.000123f));
        // bfloat16 of 3.140625 is the upper half of its binary32 bits.
        BinaryPrimitives.WriteUInt16LittleEndian(data.AsSpan(4), (ushort)(BitConverter.SingleToUInt32Bits(3.140625f) >> 16));
        BinaryPrimitives.WriteUInt16LittleEndian(data.AsSpan(6), (ushort)(BitConverter.SingleToUInt32Bits(-2f) >> 16));
        var path = RawFile(
            """{"h":{"dtype":"F16","shape":[2],"data_offsets":[0,4]},"b":{"dtype":"BF16","shape":[2],"data_offsets":[4,8]}}""",
            data);

        var file = Safetensors.Read(path);

        Assert.Equal([1.5f, (float)(Half)(-0.000123f)], file.Tensors["h"].Data);
        Assert.Equal([3.140625f, -2f], file.Tensors["b"].Data);
        Assert.Equal(SafetensorsDType.BF16, file.Entries.Single(e => e.Name == "b").DType);
    }

    public static TheoryData<string, string, int, string> Corruptions => new()
    {
        { "bad header JSON", """{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]""", 4, "not valid JSON" },
        { "header not an object", "[1,2]", 0, "expected an object" },
        { "overlapping offsets", """{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}""", 8, "overlapping tensors: 'b' [4, 8) overlaps 'a' [0, 8)" },
        { "gap", """{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}""", 8, "gap" },
        { "trailing bytes", """{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}""", 8, "4 bytes after the last tensor" },
        { "offsets out of range", """{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}""", 8, "outside the 8 data bytes" },
        { "size disagrees with shape", """{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}""", 8, "needs 12" },
        { "unsupported dtype", """{"a":{"dtype":"I64","shape":[1],"data_offsets":[0,8]}}""", 8, "as I64; supported" },
        { "negative dimension", """{"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,0]}}""", 0, "integers ≥ 0" },
        { "missing offsets", """{"a":{"dtype":"F32","shape":[1]}}""", 4, "no data_offsets" },
        { "duplicate name", """{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}""", 8, "twice" },
        { "metadata not strings", """{"__metadata__":{"n":1}}""", 0, "expected a string" },
    };

    [Theory, MemberData(nameof(Corruptions))]
    public void Malformed_files_are_rejected_with_the_fault_named(string what, string header, int dataBytes, string expected)
    {
        var path = RawFile(header, new byte[dataBytes]);
        var error = Assert.Throws<SafetensorsFormatException>(() => Safetensors.Read(path));
        Assert.True(error.Message.Contains(expected, StringComparison.Ordinal), $"{what}: {error.Message}");
        Assert.Contains(path, error.Message);
    }

    [Theory, MemberData(nameof(Corruptions))]
    public void The_mapped_reader_rejects_malformed_files_with_the_same_error(string what, string header, int dataBytes,
        string expected)
    {
        var path = RawFile(header, new byte[dataBytes]);
        var read = Assert.Throws<SafetensorsFormatException>(() => Safetensors.Read(path));
        var mapped = Assert.Throws<SafetensorsFormatException>(() => MappedSafetensors.Open(path));
        Assert.True(mapped.Message.Contains(expected, StringComparison.Ordinal), $"{what}: {mapped.Message}");
        Assert.Equal(read.Message, mapped.Message);
    }

    [Fact]
    public void The_mapped_reader_rejects_truncated_files_and_maps_the_whole_one_bit_for_bit()
    {
        var path = PathOf("whole.safetensors");
        var values = Enumerable.Range(0, 16).Select(i => i * 0.37f - 2f).ToArray();
        var bits = Enumerable.Range(0, 6).Select(i => (ushort)(0x3F80 + 3 * i)).ToArray();
        Safetensors.Write(path, new Dictionary<string, HostTensor>
        {
            ["w"] = new([4, 4], values), ["h"] = new([2, 3], bits, TensorDType.BFloat16),
        }, new Dictionary<string, string> { ["k"] = "v" });
        var bytes = File.ReadAllBytes(path);

        foreach (var length in new[] { 0, 5, 8, 20, bytes.Length - 1 })
        {
            var cut = PathOf($"cut{length}.safetensors");
            File.WriteAllBytes(cut, bytes[..length]);
            var read = Assert.Throws<SafetensorsFormatException>(() => Safetensors.Read(cut));
            var mapped = Assert.Throws<SafetensorsFormatException>(() => MappedSafetensors.Open(cut));
            Assert.Equal(read.Message, mapped.Message);
        }
        using var whole = MappedSafetensors.Open(path);
        Assert.Equal(bytes.Length, whole.Length);
        Assert.Equal("v", whole.File.Metadata["k"]);
        Assert.True(whole.File.Tensors["w"].IsMapped);
        Assert.Equal(values, whole.File.Tensors["w"].Data);
        Assert.Equal(bits, whole.File.Tensors["h"].Bits);
        Assert.Equal(TensorDType.BFloat16, whole.File.Tensors["h"].DType);
    }

    // The law of the robustness properties (properties/RetNet.Ilgpu.Properties/Robustness): a reader returns a valid
    // file or throws a SafetensorsFormatException naming it, never anything else. The cases below each broke it.

    [Theory]
    [InlineData("""["0","4"]""")]
    [InlineData("""[[0],[4]]""")]
    [InlineData("""[0,null]""")]
    public void Returns_or_throws_a_format_error_for_data_offsets_that_are_not_numbers(string offsets)
    {
        var path = RawFile($$$"""{"a":{"dtype":"F32","shape":[1],"data_offsets":{{{offsets}}}}}""", new byte[4]);
        var error = Assert.Throws<SafetensorsFormatException>(() => Safetensors.Read(path));
        Assert.Contains("no data_offsets [begin, end] of two integers", error.Message);
    }

    [Fact]
    public void Returns_or_throws_a_format_error_for_a_header_that_is_not_UTF8()
    {
        var header = Encoding.UTF8.GetBytes("""{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}""");
        header[2] = 0xED;
        var bytes = new byte[8 + header.Length + 4];
        BinaryPrimitives.WriteUInt64LittleEndian(bytes, (ulong)header.Length);
        header.CopyTo(bytes, 8);
        var path = PathOf("utf8.safetensors");
        File.WriteAllBytes(path, bytes);

        var error = Assert.Throws<SafetensorsFormatException>(() => Safetensors.ReadEntries(path));
        Assert.Contains("not valid UTF-8", error.Message);
    }

    [Theory]
    [InlineData(9223372036854775808UL)]
    [InlineData(18446744073709551615UL)]
    [InlineData(9223372036854775807UL)]
    [InlineData(99_999_999UL)]
    public void A_header_length_near_2_to_the_64_is_refused_before_allocating(ulong prefix)
    {
        var bytes = new byte[64];
        BinaryPrimitives.WriteUInt64LittleEndian(bytes, prefix);
        var path = PathOf("prefix.safetensors");
        File.WriteAllBytes(path, bytes);

        var before = GC.GetAllocatedBytesForCurrentThread();
        Assert.Throws<SafetensorsFormatException>(() => Safetensors.Read(path));
        Assert.True(GC.GetAllocatedBytesForCurrentThread() - before < 1 << 20, "the refusal allocated over 1 MiB");
    }

    [Theory]
    [InlineData("[40000,40000]", 6_400_000_000L)]
    [InlineData("[536870912]", 2_147_483_648L)]
    [InlineData("[1,2147483647]", 8_589_934_588L)]
    public void A_tensor_declaring_gigabytes_is_refused_against_the_file_length_before_allocating(string shape, long bytes)
    {
        var path = RawFile($$$"""{"a":{"dtype":"F32","shape":{{{shape}}},"data_offsets":[0,{{{bytes}}}]}}""", new byte[16]);

        var before = GC.GetAllocatedBytesForCurrentThread();
        var error = Assert.Throws<SafetensorsFormatException>(() => Safetensors.Read(path));
        Assert.True(GC.GetAllocatedBytesForCurrentThread() - before < 1 << 20, "the refusal allocated over 1 MiB");
        Assert.Contains("outside the 16 data bytes", error.Message);
    }

    [Fact]
    public void Truncated_files_are_rejected()
    {
        var path = PathOf("whole.safetensors");
        Safetensors.Write(path, new Dictionary<string, HostTensor> { ["w"] = new([4, 4], new float[16]) });
        var bytes = File.ReadAllBytes(path);

        foreach (var length in new[] { 0, 5, 8, 20, bytes.Length - 1 })
        {
            var cut = PathOf($"cut{length}.safetensors");
            File.WriteAllBytes(cut, bytes[..length]);
            var error = Assert.Throws<SafetensorsFormatException>(() => Safetensors.Read(cut));
            Assert.True(error.Message.Contains("truncated") || error.Message.Contains("outside the"), error.Message);
        }
    }

    [Fact]
    public void Writing_over_a_file_replaces_it_whole_and_leaves_no_temporary()
    {
        var path = PathOf("model.safetensors");
        Safetensors.Write(path, new Dictionary<string, HostTensor> { ["old"] = new([1], [1f]) });
        Safetensors.Write(path, new Dictionary<string, HostTensor> { ["new"] = new([2], [2f, 3f]) });

        Assert.Equal(["new"], Safetensors.Read(path).Tensors.Keys);
        Assert.Equal([path], Directory.GetFiles(folder));
    }

    [Fact]
    public void Reserved_or_empty_names_are_refused_before_anything_is_written()
    {
        var path = PathOf("bad.safetensors");
        var error = Assert.Throws<ArgumentException>(() => Safetensors.Write(path,
            new Dictionary<string, HostTensor> { ["__metadata__"] = new([1], [1f]) }));
        Assert.Equal("tensors", error.ParamName);
        Assert.False(File.Exists(path));
    }

    [Fact]
    public void A_host_tensor_gives_the_innermost_row_at_an_index()
    {
        var logits = new HostTensor([2, 3, 4], Enumerable.Range(0, 24).Select(i => (float)i).ToArray());
        Assert.Equal([20f, 21f, 22f, 23f], logits.Row(1, 2).ToArray());
        Assert.Equal([4f, 5f, 6f, 7f], logits.Row(0, 1).ToArray());
        Assert.Throws<ArgumentException>(() => logits.Row(1));
        Assert.Throws<ArgumentException>(() => logits.Row(2, 0));
    }
}
