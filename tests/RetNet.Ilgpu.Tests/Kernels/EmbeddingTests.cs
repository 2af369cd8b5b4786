using RetNet.Ilgpu.Kernels.Embedding;
using RetNet.Ilgpu.Tensors;
using RetNet.Ilgpu.Tests.Support;

namespace RetNet.Ilgpu.Tests.Kernels;

[Collection(DeviceCollection.Name)]
public sealed class EmbeddingTests(DeviceFixture fixture)
{
    private readonly RetNetDevice device = fixture.Device;

    public static TheoryData<int, int, int[]> Shapes => new()
    {
        { 1, 1, [1] },
        { 7, 5, [3] },
        { 50, 33, [2, 9] },
        { 1000, 17, [4, 16] },
        { 4099, 3, [2, 3, 5] },
        { 3, 64, [40] },
    };

    [Theory, MemberData(nameof(Shapes))]
    public void Forward_gathers_the_rows_of_the_ids(int vocabulary, int width, int[] idsShape)
    {
        var table = Numerics.Uniform(vocabulary + width, vocabulary * width, 2f);
        var ids = RandomIds(vocabulary * 3 + width, idsShape, vocabulary);
        using var tTable = Tensor.FromHost(device, table, vocabulary, width);
        using var tIds = IndexTensor.FromHost(device, ids, idsShape);
        using var output = Tensor.Zeros(device, [.. idsShape, width]);

        Embedding.Forward(tTable, tIds, output);

        Numerics.AssertClose("embedding", output.ToHost(), EmbeddingReference.Forward(table, vocabulary, width, ids));
    }

    public static TheoryData<TensorDType> NarrowTypes => [TensorDType.BFloat16, TensorDType.Float16];

    [Theory, MemberData(nameof(NarrowTypes))]
    public void Forward_widens_a_16_bit_table_exactly(TensorDType dtype)
    {
        const int vocabulary = 50, width = 33;
        var table = Numerics.Uniform(5, vocabulary * width, 2f);
        var ids = RandomIds(9, [2, 9], vocabulary);
        using var tTable = Tensor.FromHost(device, table, dtype, vocabulary, width);
        using var tIds = IndexTensor.FromHost(device, ids, 2, 9);
        using var output = Tensor.Zeros(device, 2, 9, width);

        Embedding.Forward(tTable, tIds, output);

        var rounded = table.Select(v => TensorDTypes.Round(v, dtype)).ToArray();
        Numerics.AssertClose("16-bit embedding", output.ToHost(), EmbeddingReference.Forward(rounded, vocabulary, width, ids),
            tolerance: 0);
        // Negative control: the unrounded table's rows are not what a 16-bit table holds.
        Assert.False(Numerics.Check("fp32 rows", output.ToHost(), EmbeddingReference.Forward(table, vocabulary, width, ids),
            tolerance: 1e-4).Passed);
    }

    [Theory, MemberData(nameof(Shapes))]
    public void Backward_accumulates_the_rows_of_repeated_ids_into_the_table_gradient(int vocabulary, int width,
        int[] idsShape)
    {
        var ids = RandomIds(vocabulary * 5 + width, idsShape, vocabulary);
        var dOutput = Numerics.Uniform(vocabulary + 2 * width, ids.Length * width);
        var initial = Numerics.Uniform(vocabulary + 3 * width, vocabulary * width, 0.5f);
        using var tIds = IndexTensor.FromHost(device, ids, idsShape);
        using var tdOutput = Tensor.FromHost(device, dOutput, [.. idsShape, width]);
        using var dTable = Tensor.FromHost(device, initial, vocabulary, width);

        Embedding.Backward(tIds, tdOutput, dTable);

        Numerics.AssertClose("dTable", dTable.ToHost(),
            EmbeddingReference.Backward(ids, dOutput, initial, vocabulary, width));
    }

    [Fact]
    public void Backward_sums_every_occurrence_of_one_id()
    {
        const int width = 4;
        int[] ids = [2, 0, 2, 2, 1, 2];
        var dOutput = Enumerable.Range(0, ids.Length * width).Select(i => (float)(i + 1)).ToArray();
        using var tIds = IndexTensor.FromHost(device, ids, 2, 3);
        using var tdOutput = Tensor.FromHost(device, dOutput, 2, 3, width);
        using var dTable = Tensor.Zeros(device, 4, width);

        Embedding.Backward(tIds, tdOutput, dTable);

        // Row 2 collects positions 0, 2, 3 and 5; row 3 never occurs and stays 0.
        float[] expected =
        [
            5, 6, 7, 8,
            17, 18, 19, 20,
            1 + 9 + 13 + 21, 2 + 10 + 14 + 22, 3 + 11 + 15 + 23, 4 + 12 + 16 + 24,
            0, 0, 0, 0,
        ];
        Assert.Equal(expected, dTable.ToHost());
    }

    [Fact]
    public void Backward_is_bit_identical_run_to_run()
    {
        const int vocabulary = 37, width = 29;
        var ids = RandomIds(41, [8, 64], vocabulary);
        var dOutput = Numerics.Uniform(42, ids.Length * width, 3f);
        var initial = Numerics.Uniform(43, vocabulary * width);
        using var tIds = IndexTensor.FromHost(device, ids, 8, 64);
        using var tdOutput = Tensor.FromHost(device, dOutput, 8, 64, width);

        float[] RunOnce()
        {
            using var dTable = Tensor.FromHost(device, initial, vocabulary, width);
            Embedding.Backward(tIds, tdOutput, dTable);
            return dTable.ToHost();
        }

        var first = RunOnce();
        var second = RunOnce();
        Assert.Equal(first.Select(BitConverter.SingleToInt32Bits), second.Select(BitConverter.SingleToInt32Bits));
    }

    [Fact]
    public void Grouping_lists_distinct_ids_in_order_with_their_positions_in_order()
    {
        var (unique, offsets, positions) = Embedding.GroupPositions([3, 1, 3, 0, 1, 3], 5);
        Assert.Equal([0, 1, 3], unique);
        Assert.Equal([0, 1, 3, 6], offsets);
        Assert.Equal([3, 1, 4, 0, 2, 5], positions);
    }

    [Fact]
    public void Empty_ids_write_nothing()
    {
        using var table = Tensor.Zeros(device, 5, 3);
        using var ids = IndexTensor.FromHost(device, [], 0);
        using var output = Tensor.Zeros(device, 0, 3);
        Embedding.Forward(table, ids, output);
        Embedding.Backward(ids, output, table);
        Assert.All(table.ToHost(), v => Assert.Equal(0f, v));
    }

    [Fact]
    public void Out_of_range_ids_are_rejected_naming_the_id_its_position_and_the_vocabulary()
    {
        using var table = Tensor.Zeros(device, 10, 4);
        using var output = Tensor.Zeros(device, 2, 3, 4);
        using var tooLarge = IndexTensor.FromHost(device, [0, 1, 9, 3, 10, 2], 2, 3);
        var error = Assert.Throws<ArgumentException>(() => Embedding.Forward(table, tooLarge, output));
        Assert.Equal("ids", error.ParamName);
        Assert.Contains("id 10 at position 4 (index [1, 1])", error.Message);
        Assert.Contains("V = 10", error.Message);

        using var negative = IndexTensor.FromHost(device, [0, -3, 9, 3, 1, 2], 2, 3);
        var backward = Assert.Throws<ArgumentException>(() => Embedding.Backward(negative, output, table));
        Assert.Equal("ids", backward.ParamName);
        Assert.Contains("id -3 at position 1", backward.Message);
        Assert.All(table.ToHost(), v => Assert.Equal(0f, v));
    }

    [Fact]
    public void Wrong_shapes_and_aliases_are_rejected_naming_the_argument()
    {
        using var table = Tensor.Zeros(device, 10, 4);
        using var ids = IndexTensor.FromHost(device, [1, 2, 3], 3);
        using var wrongOutput = Tensor.Zeros(device, 3, 5);
        using var flatTable = Tensor.Zeros(device, 40);
        using var output = Tensor.Zeros(device, 3, 4);

        var shape = Assert.Throws<ArgumentException>(() => Embedding.Forward(table, ids, wrongOutput));
        Assert.Equal("output", shape.ParamName);
        Assert.Contains("[3, 4]", shape.Message);
        Assert.Equal("table", Assert.Throws<ArgumentException>(() => Embedding.Forward(flatTable, ids, output)).ParamName);
        Assert.Equal("output", Assert.Throws<ArgumentException>(() =>
            Embedding.Forward(table, ids, table.Slice(0, 3))).ParamName);
        Assert.Equal("dOutput", Assert.Throws<ArgumentException>(() =>
            Embedding.Backward(ids, wrongOutput, table)).ParamName);
        Assert.Equal("dTable", Assert.Throws<ArgumentException>(() =>
            Embedding.Backward(ids, table.Slice(0, 3), table)).ParamName);
    }

    private static int[] RandomIds(int seed, int[] shape, int vocabulary)
    {
        var random = new Random(seed);
        var count = shape.Aggregate(1, (a, b) => a * b);
        // Draw from a few ids more often than not, so the backward sees repeats at every size.
        return Enumerable.Range(0, count)
            .Select(_ => random.Next(2) == 0 ? random.Next(Math.Min(vocabulary, 3)) : random.Next(vocabulary))
            .ToArray();
    }
}
