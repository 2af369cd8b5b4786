using RetNet.Ilgpu.Kernels.Elementwise;
using RetNet.Ilgpu.Tensors;
using RetNet.Ilgpu.Tests.Support;

namespace RetNet.Ilgpu.Tests.Kernels;

[Collection(DeviceCollection.Name)]
public sealed class ElementwiseTests(DeviceFixture fixture)
{
    private readonly RetNetDevice device = fixture.Device;

    public static TheoryData<int> Sizes => [1, 7, 1000, 4099];

    [Theory, MemberData(nameof(Sizes))]
    public void Add_scale_add_multiply_and_scale_match_the_reference(int n)
    {
        var a = Numerics.Uniform(1, n, 3f);
        var b = Numerics.Uniform(2, n, 3f);
        using var ta = Tensor.FromHost(device, a, n);
        using var tb = Tensor.FromHost(device, b, n);
        using var output = Tensor.Zeros(device, n);

        Elementwise.Add(ta, tb, output);
        Numerics.AssertClose("add", output.ToHost(), ElementwiseReference.Zip(a, b, (x, y) => x + y));
        Elementwise.ScaleAdd(ta, 2.5f, tb, output);
        Numerics.AssertClose("scale-add", output.ToHost(), ElementwiseReference.Zip(a, b, (x, y) => 2.5 * x + y));
        Elementwise.Multiply(ta, tb, output);
        Numerics.AssertClose("multiply", output.ToHost(), ElementwiseReference.Zip(a, b, (x, y) => x * y));
        Elementwise.Scale(ta, -0.25f, output);
        Numerics.AssertClose("scale", output.ToHost(), ElementwiseReference.Map(a, x => -0.25 * x));
    }

    [Theory, MemberData(nameof(Sizes))]
    public void Multiply_backward_gives_each_input_the_other_times_the_gradient(int n)
    {
        var a = Numerics.Uniform(3, n);
        var b = Numerics.Uniform(4, n);
        var dy = Numerics.Uniform(5, n);
        using var ta = Tensor.FromHost(device, a, n);
        using var tb = Tensor.FromHost(device, b, n);
        using var tdy = Tensor.FromHost(device, dy, n);
        using var da = Tensor.Zeros(device, n);
        using var db = Tensor.Zeros(device, n);

        Elementwise.MultiplyBackward(ta, tb, tdy, da, db);

        Numerics.AssertClose("da", da.ToHost(), ElementwiseReference.Zip(dy, b, (g, y) => g * y));
        Numerics.AssertClose("db", db.ToHost(), ElementwiseReference.Zip(dy, a, (g, x) => g * x));
    }

    [Theory, MemberData(nameof(Sizes))]
    public void Silu_forward_and_backward_match_the_reference(int n)
    {
        var x = Numerics.Uniform(6, n, 12f);
        var dy = Numerics.Uniform(7, n);
        using var tx = Tensor.FromHost(device, x, n);
        using var tdy = Tensor.FromHost(device, dy, n);
        using var y = Tensor.Zeros(device, n);
        using var dx = Tensor.Zeros(device, n);

        Elementwise.Silu(tx, y);
        Elementwise.SiluBackward(tx, tdy, dx);

        Numerics.AssertClose("silu", y.ToHost(), ElementwiseReference.Map(x, ElementwiseReference.Silu));
        Numerics.AssertClose("silu backward", dx.ToHost(),
            ElementwiseReference.Zip(x, dy, (v, g) => g * ElementwiseReference.SiluDerivative(v)));
    }

    [Theory, MemberData(nameof(Sizes))]
    public void Gelu_forward_and_backward_match_the_exact_erf_reference(int n)
    {
        var x = Numerics.Uniform(8, n, 6f);
        var dy = Numerics.Uniform(9, n);
        using var tx = Tensor.FromHost(device, x, n);
        using var tdy = Tensor.FromHost(device, dy, n);
        using var y = Tensor.Zeros(device, n);
        using var dx = Tensor.Zeros(device, n);

        Elementwise.Gelu(tx, y);
        Elementwise.GeluBackward(tx, tdy, dx);

        Numerics.AssertClose("gelu", y.ToHost(), ElementwiseReference.Map(x, ElementwiseReference.Gelu));
        Numerics.AssertClose("gelu backward", dx.ToHost(),
            ElementwiseReference.Zip(x, dy, (v, g) => g * ElementwiseReference.GeluDerivative(v)));
    }

    [Fact]
    public void Reference_derivatives_agree_with_finite_differences()
    {
        foreach (var x in new[] { -7.5, -2.0, -0.3, 0.0, 0.4, 1.7, 8.0 })
        {
            const double h = 1e-5;
            var silu = (ElementwiseReference.Silu(x + h) - ElementwiseReference.Silu(x - h)) / (2 * h);
            var gelu = (ElementwiseReference.Gelu(x + h) - ElementwiseReference.Gelu(x - h)) / (2 * h);
            Assert.Equal(silu, ElementwiseReference.SiluDerivative(x), 1e-8);
            Assert.Equal(gelu, ElementwiseReference.GeluDerivative(x), 1e-8);
        }
    }

    [Fact]
    public void In_place_operation_is_allowed()
    {
        using var x = Tensor.FromHost(device, [1f, 2f, 3f], 3);
        Elementwise.Add(x, x, x);
        Assert.Equal([2f, 4f, 6f], x.ToHost());
    }

    [Fact]
    public void Wrong_shapes_and_shifted_aliases_are_rejected_naming_the_argument()
    {
        using var a = Tensor.Zeros(device, 2, 3);
        using var b = Tensor.Zeros(device, 3, 2);
        using var output = Tensor.Zeros(device, 2, 3);
        var error = Assert.Throws<ArgumentException>(() => Elementwise.Add(a, b, output));
        Assert.Equal("b", error.ParamName);
        Assert.Contains("[3, 2]", error.Message);
        Assert.Contains("[2, 3]", error.Message);

        using var row = Tensor.Zeros(device, 4, 2);
        var shifted = Assert.Throws<ArgumentException>(() => Elementwise.Silu(row.Slice(0, 3), row.Slice(1, 3)));
        Assert.Equal("output", shifted.ParamName);

        Assert.Throws<ArgumentOutOfRangeException>(() => Elementwise.Scale(a, float.NaN, output));
    }
}
