using RetNet.Ilgpu.Devices;
using RetNet.Ilgpu.Kernels;
using RetNet.Ilgpu.Kernels.Gemm;
using RetNet.Ilgpu.Tensors;
using RetNet.Ilgpu.Tests.Support;

namespace RetNet.Ilgpu.Tests.Kernels;

/// <summary>
/// The unpacked product against a B stored [K, N] (the decoding step's k-major weights) on the AVX-512 and AVX2
/// paths: register blocks of six and four rows, a row alone across four panels, a panel at a time, and the edge panel.
/// Every element must be the packed path's fused multiply-add chain (k = 0 … K−1 from 0, then alpha·sum + beta·C), so
/// each row is compared bit for bit with the same product forced through the packing, with the row computed alone, and
/// with the reference to rounding; at M = 1 … 17 and 25 (every mix of the blocks), N that cut four-panel groups and
/// leave an edge panel, K = 1 to past a vector multiple, and fp32, bf16 and fp16 weights. The negative control: the
/// dot-product order over [N, K] gives other bits on the same numbers, so the comparison can fail.
/// </summary>
[Collection(DeviceCollection.Name)]
public sealed class HostRowsAlongNTests(DeviceFixture fixture, HostCpu hostCpu) : IClassFixture<HostCpu>
{
    private readonly RetNetDevice cpu = hostCpu.For(fixture.Device);

    private static readonly int[] RowCounts = [1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 13, 16, 17, 25];

    [Theory, MemberData(nameof(HostDotsTests.PathsAndTypes), MemberType = typeof(HostDotsTests))]
    public void Every_row_takes_the_packed_chain_in_any_block_alone_or_batched(string pathName, string dtypeName)
    {
        var path = Enum.Parse<HostGemmPath>(pathName);
        var dtype = Enum.Parse<TensorDType>(dtypeName);
        if (path == HostGemmPath.Vector512 && HostGemm.Best != HostGemmPath.Vector512)
            return;
        // Panels are 32 columns wide on AVX-512 and 16 on AVX2: N = 100 leaves an edge panel on both, 160 and 256 make
        // groups of four panels and single ones.
        foreach (var (n, k) in new[] { (32, 1), (100, 7), (160, 64), (256, 67), (48, 300) })
        {
            var random = new Random(HashCode.Combine(n, k, pathName, dtypeName) & 0xffff);
            var most = RowCounts[^1];
            var a = Values(random, most * k);
            var bValues = Values(random, k * n);
            var old = Values(random, most * n);
            using var b = Tensor.FromHost(cpu, bValues, dtype, k, n);
            var widened = b.ToHost();
            foreach (var (alpha, beta) in new[] { (1f, 0f), (0.75f, -1.5f) })
            {
                var alone = new float[most][];
                for (var r = 0; r < most; r++)
                    alone[r] = Product(a.AsSpan(r * k, k), 1, b, old.AsSpan(r * n, n), n, k, path, alpha, beta,
                        int.MaxValue);
                foreach (var m in RowCounts)
                {
                    var what = $"{path} {dtype} M={m} N={n} K={k} alpha={alpha} beta={beta}";
                    var actual = Product(a.AsSpan(0, m * k), m, b, old.AsSpan(0, m * n), n, k, path, alpha, beta,
                        int.MaxValue);
                    AssertSameBits(Product(a.AsSpan(0, m * k), m, b, old.AsSpan(0, m * n), n, k, path, alpha, beta,
                        smallRows: 0), actual, $"{what}: against the packed path");
                    for (var r = 0; r < m; r++)
                        AssertSameBits(alone[r], actual.AsSpan(r * n, n).ToArray(), $"{what}: row {r} against alone");
                    var shape = new GemmShape(1, m, n, k);
                    Numerics.AssertClose(what, actual,
                        GemmReference.Forward(shape, a.AsSpan(0, m * k), widened, alpha, beta, old.AsSpan(0, m * n)));
                }
            }
        }
    }

    [Fact]
    public void The_bit_comparison_sees_the_dot_product_order()
    {
        // The same numbers with B stored [N, K] go through the dot products (lane-wise chains, then a tree): close to
        // the k-major product, and different in some bit, so the equalities above are not vacuous.
        const int m = 16, n = 64, k = 64;
        var random = new Random(31);
        var a = Values(random, m * k);
        var bValues = Values(random, k * n);
        var transposed = new float[n * k];
        for (var kk = 0; kk < k; kk++)
            for (var j = 0; j < n; j++)
                transposed[j * k + kk] = bValues[kk * n + j];
        using var kMajor = Tensor.FromHost(cpu, bValues, k, n);
        using var nMajor = Tensor.FromHost(cpu, transposed, n, k);
        using var ta = Tensor.FromHost(cpu, a, m, k);
        using var c1 = Tensor.Zeros(cpu, m, n);
        using var c2 = Tensor.Zeros(cpu, m, n);
        var host = GemmLaunch.HostWith(HostSimd.Auto, HostGemm.SmallRows);
        Gemm.RunBatchInvariantWith(ta, kMajor, c1, transposeA: false, transposeB: false, host);
        Gemm.RunBatchInvariantWith(ta, nMajor, c2, transposeA: false, transposeB: true, host);
        var (rows, dots) = (c1.ToHost(), c2.ToHost());
        Numerics.AssertClose("dot products against the k-major rows", dots, rows);
        Assert.False(rows.Select(BitConverter.SingleToInt32Bits).SequenceEqual(dots.Select(BitConverter.SingleToInt32Bits)),
            "The dot products gave every bit of the k-major product: the control is void.");
    }

    private float[] Product(ReadOnlySpan<float> a, int m, Tensor b, ReadOnlySpan<float> old, int n, int k,
        HostGemmPath path, float alpha, float beta, int smallRows)
    {
        using var ta = Tensor.FromHost(cpu, a, m, k);
        using var tc = Tensor.FromHost(cpu, old, m, n);
        Gemm.RunHostSimd(ta, b, tc, path, threads: 1, alpha: alpha, beta: beta, smallRows: smallRows);
        return tc.ToHost();
    }

    private static void AssertSameBits(float[] expected, float[] actual, string what)
    {
        Assert.Equal(expected.Length, actual.Length);
        for (var i = 0; i < expected.Length; i++)
            if (BitConverter.SingleToInt32Bits(expected[i]) != BitConverter.SingleToInt32Bits(actual[i]))
                Assert.Fail($"{what}: element {i} is {actual[i]:R}, expected {expected[i]:R} bit for bit.");
    }

    private static float[] Values(Random random, int count) =>
        [.. Enumerable.Range(0, count).Select(_ => (float)(random.NextDouble() * 2 - 1))];
}
