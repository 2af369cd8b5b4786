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
            var silu = output.ToHost();
            var siluReference = ElementwiseReference.Map(x, ElementwiseReference.Silu);
            Numerics.AssertClose("silu", silu, siluReference);
            Elementwise.SiluBackward(tx, tdy, output);
            var siluBackwardReference =
                ElementwiseReference.Zip(x, dy, (v, g) => g * ElementwiseReference.SiluDerivative(v));
            Numerics.AssertClose("silu backward", output.ToHost(), siluBackwardReference);
            AssertWrongActivationsAreRejected("silu", x, silu, siluReference, siluBackwardReference,
                ElementwiseReference.SiluDerivative, "gelu", ElementwiseReference.Gelu);

            Elementwise.Gelu(tx, output);
            var gelu = output.ToHost();
            var geluReference = ElementwiseReference.Map(x, ElementwiseReference.Gelu);
            Numerics.AssertClose("gelu", gelu, geluReference);
            Elementwise.GeluBackward(tx, tdy, output);
            var geluBackwardReference =
                ElementwiseReference.Zip(x, dy, (v, g) => g * ElementwiseReference.GeluDerivative(v));
            Numerics.AssertClose("gelu backward", output.ToHost(), geluBackwardReference);
            AssertWrongActivationsAreRejected("gelu", x, gelu, geluReference, geluBackwardReference,
                ElementwiseReference.GeluDerivative, "silu", ElementwiseReference.Silu);
        });

    /// <summary>
    /// Negative controls of an activation's comparisons, on the drawn inputs and by the same rule: zeros, always; the
    /// output one element off and the backward without its dy (the bare derivative), where there are at least 8
    /// elements (adjacent random inputs, and dy uniform in [−1, 1), then differ somewhere by far more than 1e-4); the
    /// other activation in its place where some input has 0.5 ≤ |x| ≤ 4: there |GELU(x) − SiLU(x)| ≥ 0.034, and both
    /// are at most 40 in magnitude at the largest drawn scale, so the difference is at least 8.6e-4 of the reference's
    /// largest magnitude.
    /// </summary>
    private static void AssertWrongActivationsAreRejected(string name, float[] x, float[] output, double[] reference,
        double[] backwardReference, Func<double, double> derivative, string otherName, Func<double, double> other)
    {
        Numerics.AssertRejected(Numerics.Check($"{name}: zeros", new float[x.Length], reference));
        if (x.Length >= 8)
        {
            Numerics.AssertRejected(Numerics.Check($"{name}: one element off", NegativeControls.OneEntryOff(output),
                reference));
            Numerics.AssertRejected(Numerics.Check($"{name} backward: the derivative without dy",
                NegativeControls.ToFloat(ElementwiseReference.Map(x, derivative)), backwardReference));
        }
        if (x.Any(v => Math.Abs(v) is >= 0.5f and <= 4f))
            Numerics.AssertRejected(Numerics.Check($"{name}: {otherName} in its place",
                NegativeControls.ToFloat(ElementwiseReference.Map(x, other)), reference));
    }

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
