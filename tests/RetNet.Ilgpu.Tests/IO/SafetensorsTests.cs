using System.Buffers.Binary;
using System.Text;
using RetNet.Ilgpu.IO;
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
}
