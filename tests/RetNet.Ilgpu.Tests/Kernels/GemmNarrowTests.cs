using RetNet.Ilgpu.Kernels.Gemm;
using RetNet.Ilgpu.Tests.Support;
using RetNet.Ilgpu.Verification.Cases;

namespace RetNet.Ilgpu.Tests.Kernels;

/// <summary>
/// The host GEMM with fp16 or bf16 operands: widening is exact, so a 16-bit operand must give bit for bit the product
/// of its widened fp32 copy (the same fused multiply-add chain per element), and the float64 reference on the widened
/// values within the fp32 tolerance.
/// </summary>
[Collection(DeviceCollection.Name)]
public sealed class GemmNarrowTests(DeviceFixture fixture, HostCpu hostCpu) : IClassFixture<HostCpu>
{
    private readonly RetNetDevice device = fixture.Device;

    private static readonly HostGemmPath[] Paths = [HostGemmPath.Vector512, HostGemmPath.Vector256, HostGemmPath.Scalar];

    [Fact]
    public unsafe void Host_widening_matches_the_scalar_conversions_for_every_16_bit_pattern()
    {
        // All 65536 patterns (zeros of both signs, subnormals, ∞, NaN payloads), on each path's vectors, against
        // System.Half (an oracle independent of the library) for fp16 and the 16-bit shift for bf16.
        var bits = new ushort[65536];
        for (var i = 0; i < bits.Length; i++)
            bits[i] = (ushort)i;
        var half = bits.Select(h => (float)BitConverter.UInt16BitsToHalf(h)).ToArray();
        var bfloat = bits.Select(h => BitConverter.UInt32BitsToSingle((uint)h << 16)).ToArray();
        foreach (var path in Paths)
        {
            AssertSameBits($"fp16 on {path}", half, Widen(bits, TensorDType.Float16, path));
            AssertSameBits($"bf16 on {path}", bfloat, Widen(bits, TensorDType.BFloat16, path));
        }

        // Negative control: the comparison sees a wrong conversion (fp16 bits widened as bf16).
        Assert.NotEqual(CanonicalBits(half), CanonicalBits(Widen(bits, TensorDType.BFloat16, HostGemm.Best)));

        static float[] Widen(ushort[] source, TensorDType dtype, HostGemmPath path)
        {
            var result = new float[source.Length];
            fixed (ushort* src = source)
            fixed (float* dst = result)
            {
                HostGemm.Widen((nint)src, dtype, dst, source.Length, path);
            }
            return result;
        }
    }

    // NaNs compare by NaN-ness (System.Half may quiet a payload differently); every other value by its bits, so −0
    // and +0 differ.
    private static uint[] CanonicalBits(float[] values) =>
        values.Select(v => float.IsNaN(v) ? 0x7FC0_0000u : BitConverter.SingleToUInt32Bits(v)).ToArray();

    private static void AssertSameBits(string what, float[] expected, float[] actual)
    {
        var e = CanonicalBits(expected);
        var a = CanonicalBits(actual);
        for (var i = 0; i < e.Length; i++)
            Assert.True(e[i] == a[i], $"{what}: pattern 0x{i:X4} widened to 0x{a[i]:X8}; expected 0x{e[i]:X8}.");
    }

    // M = 1 and 8 run unpacked (B read in place along N, or transposed a tile at a time), 9 and 20 packed; odd N and
    // K cut the panels and transpose tiles, K = 300 and 600 cross K-blocks with beta ≠ 0, a batched A against a
    // broadcast B folds into 9 rows, and 3·520·260 runs the unpacked panels on two threads.
    private static readonly GemmCase[] Cases =
    [
        new(1, 1, 37, 19, false, false),
        new(1, 1, 128, 300, false, false, Alpha: 1.5f, Beta: 0.5f),
        new(1, 8, 47, 600, false, false, Alpha: 0.75f, Beta: -1f),
        new(1, 9, 31, 40, false, false),
        new(1, 20, 70, 300, false, false, Alpha: 2f, Beta: 1f),
        new(3, 3, 16, 32, true, false, Alpha: 1f, Beta: 0.5f),
        new(2, 5, 40, 9, true, true, Alpha: 0.5f, Beta: 1f),
        new(1, 3, 520, 260, false, false, Alpha: 2f, Beta: 1f),
    ];

    private static readonly (TensorDType A, TensorDType B)[] StoragePairs =
    [
        (TensorDType.Float32, TensorDType.BFloat16),
        (TensorDType.Float32, TensorDType.Float16),
        (TensorDType.BFloat16, TensorDType.Float32),
        (TensorDType.Float16, TensorDType.Float32),
        (TensorDType.BFloat16, TensorDType.Float16),
    ];

    // Paths travel as names: the enum is internal to the library and theory methods are public.
    public static TheoryData<string, int, bool, bool> PathsThreadsAndTranspositions()
    {
        var data = new TheoryData<string, int, bool, bool>();
        foreach (var path in Paths)
        {
            foreach (var threads in new[] { 1, 2 })
            {
                foreach (var (ta, tb) in new[] { (false, false), (true, false), (false, true), (true, true) })
                    data.Add(path.ToString(), threads, ta, tb);
            }
        }
        return data;
    }

    [Theory, MemberData(nameof(PathsThreadsAndTranspositions))]
    public void Narrow_operands_give_the_product_of_their_widened_values_bit_for_bit(string pathName, int threads,
        bool transposeA, bool transposeB)
    {
        var path = Enum.Parse<HostGemmPath>(pathName);
        var cpu = hostCpu.For(device);
        for (var i = 0; i < Cases.Length; i++)
        {
            var problem = Cases[i];
            var shape = problem.Shape(transposeA, transposeB);
            var (a, b, c) = problem.Inputs(shape, seed: 300 + i);
            foreach (var (typeA, typeB) in StoragePairs)
            {
                var name = $"{path} ×{threads} {shape} A {typeA} B {typeB} alpha={problem.Alpha} beta={problem.Beta}";
                var wideA = Rounded(a, typeA);
                var wideB = Rounded(b, typeB);
                var actual = Run(cpu, problem, shape, a, typeA, b, typeB, c, path, threads);
                Assert.Equal(Run(cpu, problem, shape, wideA, TensorDType.Float32, wideB, TensorDType.Float32, c, path,
                    threads), actual);
                Numerics.AssertClose(name, actual,
                    GemmReference.Forward(shape, wideA, wideB, problem.Alpha, problem.Beta, c));
            }
        }
    }

    [Fact]
    public void Narrow_check_rejects_misread_bits_and_sees_the_rounding()
    {
        var cpu = hostCpu.For(device);
        foreach (var rows in new[] { 1, 20 })
        {
            // Decoding (1 row, unpacked) and prefill (20 rows, packed) forms of a Linear layer: y = x·Wᵀ.
            var problem = new GemmCase(1, rows, 96, 200, false, false);
            var shape = problem.Shape(false, true);
            var (a, b, c) = problem.Inputs(shape, seed: 400 + rows);
            var (_, dimsB, _) = problem.Dims(shape);
            foreach (var dtype in new[] { TensorDType.BFloat16, TensorDType.Float16 })
            {
                var actual = Run(cpu, problem, shape, a, TensorDType.Float32, b, dtype, c, HostGemm.Best, 1);
                var reference = GemmReference.Forward(shape, a, Rounded(b, dtype), 1, 0, c);
                Numerics.AssertClose($"{dtype} B, {rows} rows", actual, reference);

                // The reference on the unrounded weights is out of reach: the check sees what the storage rounded.
                Numerics.AssertRejected(Numerics.Check($"{dtype} B against unrounded weights, {rows} rows", actual,
                    GemmReference.Forward(shape, a, b, 1, 0, c)));

                // The same bits read as the other 16-bit type are rejected.
                var other = dtype == TensorDType.BFloat16 ? TensorDType.Float16 : TensorDType.BFloat16;
                using var stored = Tensor.FromHost(cpu, b, dtype, dimsB);
                using var misread = Tensor.FromHostBits(cpu, stored.ToHostBits(), other, dimsB);
                using var ta = Tensor.FromHost(cpu, a, shape.M, shape.K);
                using var tc = Tensor.Zeros(cpu, shape.M, shape.N);
                Gemm.RunHostSimd(ta, misread, tc, HostGemm.Best, 1, transposeB: shape.TransposeB);
                Numerics.AssertRejected(Numerics.Check($"{dtype} bits read as {other}, {rows} rows", tc.ToHost(),
                    reference));
            }
        }
    }

    [Fact]
    public void Gemm_takes_16_bit_operands_and_refuses_a_16_bit_output()
    {
        var cpu = hostCpu.For(device);
        var x = Numerics.Uniform(500, 2 * 24);
        var w = Numerics.Uniform(501, 40 * 24);
        using var input = Tensor.FromHost(cpu, x, 2, 24);
        using var weight = Tensor.FromHost(cpu, w, TensorDType.BFloat16, 40, 24);
        using var narrowOutput = Tensor.Zeros(cpu, TensorDType.BFloat16, 2, 40);
        var error = Assert.Throws<ArgumentException>(() =>
            Gemm.Run(input, weight, narrowOutput, transposeB: true, variant: GemmVariant.HostSimd));
        Assert.Equal("c", error.ParamName);
        Assert.Contains("BFloat16", error.Message, StringComparison.Ordinal);
        Assert.Contains("expected Float32", error.Message, StringComparison.Ordinal);

        // The same product into an fp32 output runs, through the public entry point.
        using var output = Tensor.Zeros(cpu, 2, 40);
        Gemm.Run(input, weight, output, transposeB: true, variant: GemmVariant.HostSimd);
        Numerics.AssertClose("x·Wᵀ, W bf16", output.ToHost(),
            GemmReference.Forward(new GemmShape(1, 2, 40, 24, false, true), x, Rounded(w, TensorDType.BFloat16)));
    }

    private static float[] Rounded(float[] values, TensorDType dtype) =>
        values.Select(v => TensorDTypes.Round(v, dtype)).ToArray();

    private static float[] Run(RetNetDevice cpu, GemmCase problem, GemmShape shape, float[] a, TensorDType typeA,
        float[] b, TensorDType typeB, float[] c, HostGemmPath path, int threads)
    {
        var (dimsA, dimsB, dimsC) = problem.Dims(shape);
        using var ta = Tensor.FromHost(cpu, a, typeA, dimsA);
        using var tb = Tensor.FromHost(cpu, b, typeB, dimsB);
        using var tc = Tensor.FromHost(cpu, c, dimsC);
        Gemm.RunHostSimd(ta, tb, tc, path, threads, shape.TransposeA, shape.TransposeB, problem.Alpha, problem.Beta);
        return tc.ToHost();
    }
}
