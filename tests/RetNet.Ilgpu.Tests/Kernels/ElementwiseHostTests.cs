using RetNet.Ilgpu.Kernels;
using RetNet.Ilgpu.Kernels.Elementwise;
using RetNet.Ilgpu.Kernels.Gemm;
using RetNet.Ilgpu.Tensors;
using RetNet.Ilgpu.Tests.Support;

namespace RetNet.Ilgpu.Tests.Kernels;

/// <summary>
/// The host backend's elementwise loops (<see cref="ElementwiseLaunch.HostWith"/>) on every instruction-set path:
/// each op's vector form against the double reference, element by element; an element's bits independent of its
/// index and of the tensor's length (a decoding step's rows must not depend on the batch); NaN carried through.
/// Lengths cut the 8- and 16-lane vectors and the split over threads.
/// </summary>
[Collection(DeviceCollection.Name)]
public sealed class ElementwiseHostTests(DeviceFixture fixture, HostCpu hostCpu) : IClassFixture<HostCpu>
{
    private RetNetDevice Cpu => hostCpu.For(fixture.Device);

    // Per element, relative to the reference value itself (not to the largest, as the project's rule is): a few fp32
    // ulps of the exponential, the division and the multiplications; GELU's Abramowitz–Stegun erf is good to 1.5e-7
    // absolute, ~30 ulps near 1.
    private const double ExpRelative = 2e-6;
    private const double GeluRelative = 4e-6;

    public static TheoryData<string, int> PathsAndThreads => new()
    {
        { nameof(HostGemmPath.Auto), 2 },
        { nameof(HostGemmPath.Vector512), 2 },
        { nameof(HostGemmPath.Vector256), 1 },
        { nameof(HostGemmPath.Scalar), 1 },
    };

    private static readonly int[] Lengths = [1, 7, 8, 15, 16, 17, 33, 1000, (1 << 16) + 9];

    private delegate void Run(ElementwiseLaunch launch, Tensor a, Tensor b, Tensor y);

    /// <param name="Relative">The bound on |actual − expected| / max(|expected|, Floor) per element; 0 demands the
    /// reference rounded to fp32, bit for bit (the ops without transcendental functions).</param>
    /// <param name="Floor">Where a result is a difference of terms near 1 (erf near ±1, SiLU's derivative near its
    /// zero), the error is absolute, so the bound is relative to at least 1 there; 1e-30 elsewhere.</param>
    /// <param name="Scale">The inputs' range: SiLU out to where σ saturates, GELU to where erf does.</param>
    private sealed record Op(string Name, Run Launch, Func<double, double, double> Reference, double Relative,
        double Floor, float Scale);

    private static readonly Op[] Ops =
    [
        new("silu", (l, a, _, y) => l.Map<SiluOp>(a, y, 0f), (x, _) => ElementwiseReference.Silu(x), ExpRelative,
            1e-30, 30f),
        new("gelu", (l, a, _, y) => l.Map<GeluOp>(a, y, 0f), (x, _) => ElementwiseReference.Gelu(x), GeluRelative, 1,
            6f),
        new("scale", (l, a, _, y) => l.Map<ScaleOp>(a, y, -0.25f), (x, _) => -0.25 * x, 0, 1e-30, 3f),
        new("add", (l, a, b, y) => l.Zip<AddOp>(a, b, y, 0f), (x, z) => (float)(x + z), 0, 1e-30, 3f),
        new("scale-add", (l, a, b, y) => l.Zip<ScaleAddOp>(a, b, y, 2.5f), (x, z) => (float)((float)(2.5 * x) + z), 0,
            1e-30, 3f),
        new("multiply", (l, a, b, y) => l.Zip<MultiplyOp>(a, b, y, 0f), (x, z) => (float)(x * z), 0, 1e-30, 3f),
        new("silu backward", (l, a, b, y) => l.Zip<SiluBackwardOp>(a, b, y, 0f),
            (x, g) => g * ElementwiseReference.SiluDerivative(x), 2 * ExpRelative, 1, 30f),
        new("gelu backward", (l, a, b, y) => l.Zip<GeluBackwardOp>(a, b, y, 0f),
            (x, g) => g * ElementwiseReference.GeluDerivative(x), 2 * GeluRelative, 1, 6f),
    ];

    private static ElementwiseLaunch Launch(string pathName, int threads) =>
        ElementwiseLaunch.HostWith(new HostSimd(Enum.Parse<HostGemmPath>(pathName), threads));

    private float[] Apply(ElementwiseLaunch launch, Op op, float[] a, float[] b)
    {
        using var ta = Tensor.FromHost(Cpu, a, a.Length);
        using var tb = Tensor.FromHost(Cpu, b, b.Length);
        using var y = Tensor.Zeros(Cpu, a.Length);
        op.Launch(launch, ta, tb, y);
        return y.ToHost();
    }

    /// <summary>The worst |actual − expected| / max(|expected|, floor); infinite for a NaN.</summary>
    private static (double Worst, int Index) WorstRelative(float[] actual, double[] expected, double floor)
    {
        var (worst, index) = (0.0, -1);
        for (var i = 0; i < actual.Length; i++)
        {
            if (double.IsNaN(actual[i]))
                return (double.PositiveInfinity, i);
            var error = Math.Abs(actual[i] - expected[i]) / Math.Max(Math.Abs(expected[i]), floor);
            if (error > worst)
                (worst, index) = (error, i);
        }
        return (worst, index);
    }

    [Theory, MemberData(nameof(PathsAndThreads))]
    public void Every_op_matches_the_double_reference_element_by_element_on_every_path(string pathName, int threads)
    {
        var launch = Launch(pathName, threads);
        foreach (var op in Ops)
        {
            foreach (var n in Lengths)
            {
                var a = Numerics.Uniform(100 + n, n, op.Scale);
                var b = Numerics.Uniform(200 + n, n, 3f);
                var expected = ElementwiseReference.Zip(a, b, op.Reference);
                var actual = Apply(launch, op, a, b);
                var (worst, index) = WorstRelative(actual, expected, op.Floor);
                if (worst > op.Relative)
                    Assert.Fail($"{op.Name}, {pathName}, n={n}: relative error {worst:G3} at [{index}] (x={a[index]}, " +
                    $"got {actual[index]}, expected {expected[index]}) exceeds {op.Relative:G2}.");
                Numerics.AssertClose($"{op.Name}, {pathName}, n={n}", actual, expected);
            }
        }
    }

    [Fact]
    public void The_element_by_element_check_rejects_a_result_off_by_bfloat16_rounding()
    {
        var op = Ops[0];
        var a = Numerics.Uniform(7, 1000, op.Scale);
        var expected = ElementwiseReference.Zip(a, a, op.Reference);
        var rounded = expected.Select(v => TensorDTypes.Round((float)v, TensorDType.BFloat16)).ToArray();
        Assert.True(WorstRelative(rounded, expected, op.Floor).Worst > op.Relative);
        Assert.True(WorstRelative(Apply(Launch(nameof(HostGemmPath.Auto), 1), op, a, a), expected, op.Floor).Worst
            <= op.Relative);
    }

    [Theory, MemberData(nameof(PathsAndThreads))]
    public void An_elements_bits_depend_on_its_value_alone_not_on_its_index_or_the_length(string pathName,
        int threads)
    {
        var launch = Launch(pathName, threads);
        const int total = 40;
        foreach (var op in Ops)
        {
            var a = Numerics.Uniform(11, total, op.Scale);
            var b = Numerics.Uniform(12, total, 3f);
            var whole = Apply(launch, op, a, b);
            for (var n = 1; n <= 17; n++)
            {
                foreach (var start in new[] { 0, 3, total - n })
                {
                    var part = Apply(launch, op, a[start..(start + n)], b[start..(start + n)]);
                    for (var i = 0; i < n; i++)
                        Assert.True(BitConverter.SingleToInt32Bits(part[i]) ==
                            BitConverter.SingleToInt32Bits(whole[start + i]),
                            $"{op.Name}, {pathName}: element {start + i} gave {part[i]:R} among {n} from {start}, " +
                            $"{whole[start + i]:R} among {total}.");
                }
            }
        }
    }

    [Fact]
    public void The_bitwise_check_sees_the_scalar_form_differ_from_the_vector_form()
    {
        // Negative control of the check above: two code paths for the same function do differ in some bits, so
        // agreement there is evidence that one path ran, not a check too coarse to tell.
        if (HostGemm.Best == HostGemmPath.Scalar)
            return;
        var op = Ops[0];
        var a = Numerics.Uniform(13, 4099, op.Scale);
        var vector = Apply(Launch(nameof(HostGemmPath.Auto), 1), op, a, a);
        var scalar = Apply(Launch(nameof(HostGemmPath.Scalar), 1), op, a, a);
        Assert.Contains(Enumerable.Range(0, a.Length),
            i => BitConverter.SingleToInt32Bits(vector[i]) != BitConverter.SingleToInt32Bits(scalar[i]));
    }

    [Theory, MemberData(nameof(PathsAndThreads))]
    public void NaN_stays_NaN_and_large_magnitudes_reach_the_limits(string pathName, int threads)
    {
        var launch = Launch(pathName, threads);
        // NaN at the front, in the middle and in the padded tail of a 16- and an 8-lane vector.
        float[] x = [float.NaN, 1f, -2f, 100f, -100f, -200f, 88.8f, -88.8f, float.NaN, 0f, 12f, -12f, 3f, 4f, 5f, 6f,
            7f, float.NaN];
        var nanAt = new[] { 0, 8, 17 };
        foreach (var op in Ops)
        {
            var y = Apply(launch, op, x, Enumerable.Repeat(1f, x.Length).ToArray());
            foreach (var i in nanAt)
                Assert.True(float.IsNaN(y[i]), $"{op.Name}, {pathName}: NaN became {y[i]} at [{i}].");
            for (var i = 0; i < x.Length; i++)
            {
                if (nanAt.Contains(i))
                    continue;
                Assert.True(float.IsFinite(y[i]), $"{op.Name}, {pathName}: x = {x[i]} gave {y[i]}.");
            }
        }
        var silu = Apply(launch, Ops[0], x, x);
        Assert.Equal(100f, silu[3]);
        Assert.True(Math.Abs(silu[4]) < 1e-40 && Math.Abs(silu[5]) < 1e-40, $"silu(-100) = {silu[4]}, " +
            $"silu(-200) = {silu[5]}");
    }
}
