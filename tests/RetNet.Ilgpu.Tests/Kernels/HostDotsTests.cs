using System.Runtime.Intrinsics;
using RetNet.Ilgpu.Kernels.Gemm;
using RetNet.Ilgpu.Tensors;
using RetNet.Ilgpu.Tests.Support;

namespace RetNet.Ilgpu.Tests.Kernels;

/// <summary>
/// The decoding step's dot products (<see cref="HostDots"/>) on the AVX-512 and AVX2 paths: every element is the
/// summation order the remarks state (one lane-wise fused multiply-add chain over the vector slices of k, the lanes'
/// fixed tree, the tail in k order), written out here in scalar code and compared bit for bit, at M = 1 … 17 and N, K
/// that cut the row blocks (4×4 on AVX-512, 2×4 on AVX2), the 1×8 and 1×4 row kernels and the vectors; so a row's bits
/// are the same alone and at any place in any block. Negative controls: a different order is seen, and the
/// transpose-add equals the one-vector sum exactly.
/// </summary>
public sealed unsafe class HostDotsTests
{
    // M across the blocks of four rows; N across groups of four and eight columns; K with and without a full vector
    // and a tail (8- and 16-lane).
    private static readonly int[] Columns = [1, 3, 4, 5, 8, 12, 13, 19];
    private static readonly int[] Depths = [5, 16, 24, 64, 70];

    public static TheoryData<string, string> PathsAndTypes()
    {
        var data = new TheoryData<string, string>();
        foreach (var path in new[] { nameof(HostGemmPath.Vector512), nameof(HostGemmPath.Vector256) })
        {
            foreach (var dtype in new[] { nameof(TensorDType.Float32), nameof(TensorDType.BFloat16),
                         nameof(TensorDType.Float16) })
                data.Add(path, dtype);
        }
        return data;
    }

    private static int Width(HostGemmPath path) => path == HostGemmPath.Vector512 ? 16 : 8;

    /// <summary>C = alpha·A·Bᵀ (+ beta·C) through HostDots.Columns, B stored as <paramref name="dtype"/> [n, k].</summary>
    private static float[] Run(HostGemmPath path, TensorDType dtype, float[] a, int m, ushort[] narrowB,
        float[] wideB, int n, int k, float alpha, float beta, float[] c, int j0 = 0, int j1 = -1)
    {
        j1 = j1 < 0 ? n : j1;
        var result = (float[])c.Clone();
        fixed (float* pa = a, pc = result, pw = wideB)
        fixed (ushort* pn = narrowB)
        {
            var b = dtype == TensorDType.Float32 ? (nint)pw : (nint)pn;
            switch (path, dtype)
            {
                case (HostGemmPath.Vector512, TensorDType.Float32):
                    HostDots.Columns<Vector512<float>, Vector512Ops, Float32Elements>(pa, k, m, b, k, pc, n, k, j0, j1,
                        alpha, beta);
                    break;
                case (HostGemmPath.Vector512, TensorDType.BFloat16):
                    HostDots.Columns<Vector512<float>, Vector512Ops, BFloat16Elements>(pa, k, m, b, k, pc, n, k, j0,
                        j1, alpha, beta);
                    break;
                case (HostGemmPath.Vector512, _):
                    HostDots.Columns<Vector512<float>, Vector512Ops, HalfElements>(pa, k, m, b, k, pc, n, k, j0, j1,
                        alpha, beta);
                    break;
                case (_, TensorDType.Float32):
                    HostDots.Columns<Vector256<float>, Vector256Ops, Float32Elements>(pa, k, m, b, k, pc, n, k, j0, j1,
                        alpha, beta);
                    break;
                case (_, TensorDType.BFloat16):
                    HostDots.Columns<Vector256<float>, Vector256Ops, BFloat16Elements>(pa, k, m, b, k, pc, n, k, j0,
                        j1, alpha, beta);
                    break;
                default:
                    HostDots.Columns<Vector256<float>, Vector256Ops, HalfElements>(pa, k, m, b, k, pc, n, k, j0, j1,
                        alpha, beta);
                    break;
            }
        }
        return result;
    }

    /// <summary>The stated order for one element, in scalar code: lane l accumulates a[kk+l]·b[kk+l] over the full
    /// vectors, the lanes add pairwise at distance w/2, w/4, …, 1, then the tail in k order.</summary>
    private static float Specified(ReadOnlySpan<float> a, ReadOnlySpan<float> b, int width, bool treeOrder = true)
    {
        var lanes = new float[width];
        var kk = 0;
        for (; kk + width <= a.Length; kk += width)
        {
            for (var l = 0; l < width; l++)
                lanes[l] = MathF.FusedMultiplyAdd(a[kk + l], b[kk + l], lanes[l]);
        }
        float sum;
        if (treeOrder)
        {
            for (var half = width / 2; half >= 1; half /= 2)
            {
                for (var l = 0; l < half; l++)
                    lanes[l] += lanes[l + half];
            }
            sum = lanes[0];
        }
        else
        {
            // The negative control's order: lanes added one after another.
            sum = 0f;
            foreach (var lane in lanes)
                sum += lane;
        }
        for (; kk < a.Length; kk++)
            sum = MathF.FusedMultiplyAdd(a[kk], b[kk], sum);
        return sum;
    }

    private static (ushort[] Narrow, float[] Wide) Weights(TensorDType dtype, int seed, int count)
    {
        var values = Numerics.Uniform(seed, count);
        if (dtype == TensorDType.Float32)
            return ([], values);
        var code = NarrowFloat.CodeOf(dtype);
        var narrow = values.Select(v => NarrowFloat.FromSingle(v, code)).ToArray();
        return (narrow, narrow.Select(h => NarrowFloat.ToSingle(h, code)).ToArray());
    }

    [Theory, MemberData(nameof(PathsAndTypes))]
    public void Every_element_takes_the_stated_order_at_every_row_count_so_a_row_alone_equals_it_in_any_block(
        string pathName, string dtypeName)
    {
        var path = Enum.Parse<HostGemmPath>(pathName);
        var dtype = Enum.Parse<TensorDType>(dtypeName);
        var width = Width(path);
        foreach (var n in Columns)
        {
            foreach (var k in Depths)
            {
                var a = Numerics.Uniform(n * 100 + k, 17 * k);
                var (narrow, wide) = Weights(dtype, n * 101 + k, n * k);
                var expected = new float[17 * n];
                for (var i = 0; i < 17; i++)
                {
                    for (var j = 0; j < n; j++)
                        expected[i * n + j] = Specified(a.AsSpan(i * k, k), wide.AsSpan(j * k, k), width);
                }
                for (var m = 1; m <= 17; m++)
                {
                    var actual = Run(path, dtype, a, m, narrow, wide, n, k, 1f, 0f, new float[m * n]);
                    for (var e = 0; e < m * n; e++)
                    {
                        if (BitConverter.SingleToInt32Bits(actual[e]) != BitConverter.SingleToInt32Bits(expected[e]))
                            Assert.Fail($"{path} {dtype} M={m} N={n} K={k}: C[{e / n}, {e % n}] = {actual[e]:R}, " +
                                $"the stated order gives {expected[e]:R}.");
                    }
                    var alone = Run(path, dtype, a.AsSpan((m - 1) * k, k).ToArray(), 1, narrow, wide, n, k, 1f, 0f,
                        new float[n]);
                    Assert.Equal(alone, actual[((m - 1) * n)..]);
                }
            }
        }
    }

    [Theory, MemberData(nameof(PathsAndTypes))]
    public void Alpha_beta_and_a_column_range_apply_per_element_and_leave_the_other_columns(string pathName,
        string dtypeName)
    {
        var path = Enum.Parse<HostGemmPath>(pathName);
        var dtype = Enum.Parse<TensorDType>(dtypeName);
        const int m = 6, n = 19, j0 = 4, j1 = 17;
        // K = 64 has no tail (the four cells of a block stored as a vector), K = 70 has one (cell by cell).
        foreach (var k in new[] { 64, 70 })
        {
            var a = Numerics.Uniform(1, m * k);
            var (narrow, wide) = Weights(dtype, 2, n * k);
            var old = Numerics.Uniform(3, m * n);
            var actual = Run(path, dtype, a, m, narrow, wide, n, k, 1.5f, -0.5f, old, j0, j1);
            for (var i = 0; i < m; i++)
            {
                for (var j = 0; j < n; j++)
                {
                    var cell = i * n + j;
                    var expected = j is >= j0 and < j1
                        ? 1.5f * Specified(a.AsSpan(i * k, k), wide.AsSpan(j * k, k), Width(path)) + -0.5f * old[cell]
                        : old[cell];
                    Assert.Equal(BitConverter.SingleToInt32Bits(expected), BitConverter.SingleToInt32Bits(actual[cell]));
                }
            }
            var reference = GemmReference.Forward(new GemmShape(1, m, n, k, false, true), a, wide, 1.5, -0.5, old);
            var inRange = Enumerable.Range(0, m * n).Where(e => e % n is >= j0 and < j1).ToArray();
            Numerics.AssertClose($"{path} {dtype} K={k} against the double reference",
                inRange.Select(e => actual[e]).ToArray(), inRange.Select(e => reference[e]).ToArray());
        }
    }

    [Fact]
    public void A_different_summation_order_is_detected()
    {
        // Negative control of the bitwise comparison: the same lanes added one after another instead of pairwise
        // differ from HostDots in some element, so agreement with the stated order is not vacuous.
        foreach (var path in new[] { HostGemmPath.Vector512, HostGemmPath.Vector256 })
        {
            const int m = 5, n = 13, k = 64;
            var a = Numerics.Uniform(4, m * k, 3f);
            var b = Numerics.Uniform(5, n * k, 3f);
            var actual = Run(path, TensorDType.Float32, a, m, [], b, n, k, 1f, 0f, new float[m * n]);
            var sequential = new float[m * n];
            for (var e = 0; e < m * n; e++)
                sequential[e] = Specified(a.AsSpan(e / n * k, k), b.AsSpan(e % n * k, k), Width(path), treeOrder: false);
            Numerics.AssertClose("lanes added in sequence", sequential,
                GemmReference.Forward(new GemmShape(1, m, n, k, false, true), a, b, 1, 0, new float[m * n]));
            Assert.NotEqual(sequential, actual);
        }
    }

    [Fact]
    public void The_transpose_add_gives_each_vector_its_one_vector_sum_bit_for_bit()
    {
        var random = new Random(6);
        float Value() => (float)((random.NextDouble() - 0.5) * Math.Pow(2, random.Next(-20, 20)));
        for (var trial = 0; trial < 200; trial++)
        {
            var v = Enumerable.Range(0, 4).Select(_ => Vector512.Create(
                Enumerable.Range(0, 16).Select(_ => Value()).ToArray())).ToArray();
            var sums = Vector512Ops.Sum4(v[0], v[1], v[2], v[3]);
            var narrow = v.Select(x => x.GetLower()).ToArray();
            var narrowSums = Vector256Ops.Sum4(narrow[0], narrow[1], narrow[2], narrow[3]);
            for (var i = 0; i < 4; i++)
            {
                Assert.Equal(BitConverter.SingleToInt32Bits(Vector512Ops.Sum(v[i])),
                    BitConverter.SingleToInt32Bits(sums.GetElement(i)));
                Assert.Equal(BitConverter.SingleToInt32Bits(Vector256Ops.Sum(narrow[i])),
                    BitConverter.SingleToInt32Bits(narrowSums.GetElement(i)));
            }
        }
    }
}
