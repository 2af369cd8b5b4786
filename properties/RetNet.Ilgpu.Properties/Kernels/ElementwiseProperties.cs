using FsCheck;
using FsCheck.Fluent;
using FsCheck.Xunit;
using RetNet.Ilgpu.Kernels.Elementwise;
using RetNet.Ilgpu.Tests.Support;

namespace RetNet.Ilgpu.Properties.Kernels;

[Collection(PropertyDeviceCollection.Name)]
public sealed class ElementwiseProperties(DeviceFixture fixture)
{
    private readonly RetNetDevice device = fixture.Device;

    private static Arbitrary<(int Length, float Scale, int Seed)> Inputs =>
        (from length in Gen.Choose(1, 3000)
         from scale in Gen.Elements(1e-3f, 1f, 40f)
         from seed in Gen.Choose(0, int.MaxValue - 1)
         select (length, scale, seed)).ToArbitrary();

    [Property(MaxTest = 40)]
    public Property Activations_and_their_gradients_match_the_double_reference_at_any_length_and_magnitude() =>
        Prop.ForAll(Inputs, input =>
        {
            var x = Numerics.Uniform(input.Seed, input.Length, input.Scale);
            var dy = Numerics.Uniform(input.Seed + 1, input.Length);
            using var tx = Tensor.FromHost(device, x, input.Length);
            using var tdy = Tensor.FromHost(device, dy, input.Length);
            using var output = Tensor.Zeros(device, input.Length);

            Elementwise.Silu(tx, output);
            Numerics.AssertClose("silu", output.ToHost(), ElementwiseReference.Map(x, ElementwiseReference.Silu));
            Elementwise.SiluBackward(tx, tdy, output);
            Numerics.AssertClose("silu backward", output.ToHost(),
                ElementwiseReference.Zip(x, dy, (v, g) => g * ElementwiseReference.SiluDerivative(v)));
            Elementwise.Gelu(tx, output);
            Numerics.AssertClose("gelu", output.ToHost(), ElementwiseReference.Map(x, ElementwiseReference.Gelu));
            Elementwise.GeluBackward(tx, tdy, output);
            Numerics.AssertClose("gelu backward", output.ToHost(),
                ElementwiseReference.Zip(x, dy, (v, g) => g * ElementwiseReference.GeluDerivative(v)));
        });

    [Property(MaxTest = 40)]
    public Property Reshaped_views_see_the_same_elements_as_their_owner() =>
        Prop.ForAll(Gen.Choose(1, 64).Two().ToArbitrary(), shape =>
        {
            var (rows, columns) = shape;
            var data = Numerics.Uniform(rows * 31 + columns, rows * columns);
            using var t = Tensor.FromHost(device, data, rows, columns);
            var flat = t.Reshape(-1);
            var transposedShape = t.Reshape(columns, rows);
            return flat.ToHost().SequenceEqual(data) && transposedShape.ToHost().SequenceEqual(data) &&
                   t.Slice(rows - 1, 1).ToHost().SequenceEqual(data.Skip((rows - 1) * columns));
        });
}
