using RetNet.Ilgpu.Tensors;
using RetNet.Ilgpu.Tests.Support;

namespace RetNet.Ilgpu.Tests.Tensors;

[Collection(DeviceCollection.Name)]
public sealed class TensorTests(DeviceFixture fixture)
{
    private readonly RetNetDevice device = fixture.Device;

    [Fact]
    public void Host_round_trip_keeps_every_value_and_the_shape()
    {
        var data = Numerics.Uniform(1, 24);
        using var t = Tensor.FromHost(device, data, 2, 3, 4);
        Assert.Equal(data, t.ToHost());
        Assert.Equal([2, 3, 4], t.ShapeArray);
        Assert.Equal(24, t.Length);
        Assert.Equal(4, t.Dim(-1));
        Assert.Equal(TensorDType.Float32, t.DType);
    }

    [Fact]
    public void Reshape_and_slice_are_views_that_share_storage()
    {
        var memory = device.Memory.CurrentBytes;
        using var t = Tensor.FromHost(device, Enumerable.Range(0, 12).Select(i => (float)i).ToArray(), 3, 4);
        var allocated = device.Memory.CurrentBytes;
        var flat = t.Reshape(-1);
        var rows = t.Slice(1, 2);
        Assert.Equal(allocated, device.Memory.CurrentBytes);
        Assert.True(flat.IsView);
        Assert.Equal([12], flat.ShapeArray);
        Assert.Equal([4f, 5f, 6f, 7f, 8f, 9f, 10f, 11f], rows.ToHost());

        rows.CopyFromHost(new float[8]);
        Assert.Equal(0f, t.ToHost()[11]);
        rows.Dispose();
        Assert.Equal(allocated, device.Memory.CurrentBytes);

        t.Dispose();
        Assert.Equal(memory, device.Memory.CurrentBytes);
        Assert.Throws<ObjectDisposedException>(() => flat.ToHost());
    }

    [Fact]
    public void Device_copy_copies_elements()
    {
        using var a = Tensor.FromHost(device, [1f, 2f, 3f, 4f], 2, 2);
        using var b = Tensor.Zeros(device, 4);
        b.CopyFrom(a);
        Assert.Equal([1f, 2f, 3f, 4f], b.ToHost());
    }

    [Fact]
    public void Empty_and_scalar_like_tensors_work()
    {
        using var empty = Tensor.Zeros(device, 0, 5);
        Assert.Empty(empty.ToHost());
        using var one = Tensor.FromHost(device, [7f], 1);
        Assert.Equal([7f], one.ToHost());
    }

    [Fact]
    public void Bad_shapes_raise_errors_that_name_argument_expected_and_actual()
    {
        var error = Assert.Throws<ArgumentException>(() => Tensor.FromHost(device, new float[5], 2, 3));
        Assert.Equal("data", error.ParamName);
        Assert.Contains("5", error.Message);
        Assert.Contains("[2, 3]", error.Message);

        using var t = Tensor.Zeros(device, 2, 3);
        Assert.Throws<ArgumentException>(() => t.Reshape(4, 2));
        Assert.Throws<ArgumentException>(() => t.Reshape(-1, -1));
        Assert.Throws<ArgumentException>(() => t.Reshape(4, -1));
        Assert.Throws<ArgumentOutOfRangeException>(() => t.Slice(1, 2));
        Assert.Throws<ArgumentException>(() => Tensor.Zeros(device, -1));

        var shape = Assert.Throws<ArgumentException>(() => ShapeCheck.Expect(t, "q", 2, ShapeCheck.Any, 4));
        Assert.Equal("q", shape.ParamName);
        Assert.Contains("[2, 3]", shape.Message);
        Assert.Contains("[2, *, 4]", shape.Message);
    }

    [Fact]
    public void Index_tensor_round_trips_and_accounts_memory()
    {
        var before = device.Memory.CurrentBytes;
        using (var ids = IndexTensor.FromHost(device, [3, 1, 4, 1, 5, 9], 2, 3))
        {
            Assert.Equal([3, 1, 4, 1, 5, 9], ids.ToHost());
            Assert.Equal(before + 24, device.Memory.CurrentBytes);
        }
        Assert.Equal(before, device.Memory.CurrentBytes);
        Assert.Throws<ArgumentException>(() => IndexTensor.FromHost(device, [1, 2], 3));
    }
}
