using RetNet.Ilgpu.Devices;
using RetNet.Ilgpu.Kernels.Gemm;
using RetNet.Ilgpu.Tensors;

namespace RetNet.Ilgpu.Benchmarks;

/// <summary>One timed GEMM implementation at one shape, C[M, N] = A[M, K]·B[K, N] (B stored [N, K] when
/// <paramref name="TransposeB"/>: a Linear layer's weight).</summary>
/// <param name="Implementation"><c>tiled</c>, <c>simple</c>, <c>host-simd</c> (the <see cref="GemmVariant"/>s on the
/// device; host-simd only on ILGPU's CPU accelerator), <c>small-rows</c> (the kernel <see cref="GemmVariant.Auto"/>
/// picks off the CPU accelerator for at most 8 rows against B stored [N, K]) or <c>csharp-reference</c> (<see cref="GemmReference.Forward"/>,
/// a single-threaded double loop on the host).</param>
/// <param name="M">Rows of A and C.</param>
/// <param name="N">Columns of B and C.</param>
/// <param name="K">The inner dimension.</param>
/// <param name="MedianMs">Median wall time of one product in milliseconds, launch to synchronisation.</param>
/// <param name="GFlops">2·M·N·K / median time, in 10⁹ floating-point operations per second.</param>
/// <param name="DTypeB">How B is stored (A and C are fp32).</param>
/// <param name="TransposeB">Whether B is stored [N, K].</param>
/// <param name="WeightGBps">B's bytes (N·K elements of <paramref name="DTypeB"/>) / median time, in 10⁹ bytes per
/// second: what a decoding step's Linear layers (M = 1) are bound by.</param>
public sealed record GemmBenchmarkResult(string Implementation, int M, int N, int K, double MedianMs, double GFlops,
    TensorDType DTypeB = TensorDType.Float32, bool TransposeB = false, double WeightGBps = 0);

/// <summary>Times the GEMM variants against the plain C# loop, so a figure says how far a kernel is from the hardware.</summary>
public static class GemmBenchmark
{
    /// <summary>Implementation name of <see cref="GemmVariant.Tiled"/>.</summary>
    public const string Tiled = "tiled";

    /// <summary>Implementation name of <see cref="GemmVariant.Simple"/>.</summary>
    public const string Simple = "simple";

    /// <summary>Implementation name of <see cref="GemmVariant.HostSimd"/>.</summary>
    public const string HostSimd = "host-simd";

    /// <summary>Implementation name of the small-row kernel at the device policy's launch (timed only for
    /// <c>--transpose-b</c> products of at most <see cref="GemmKernels.MaxSmallRows"/> rows).</summary>
    public const string SmallRows = "small-rows";

    /// <summary>Implementation name of the host loop <see cref="GemmReference.Forward"/>.</summary>
    public const string CSharpReference = "csharp-reference";

    /// <summary>Every implementation name, in the order results come.</summary>
    public static IReadOnlyList<string> Implementations { get; } = [Tiled, Simple, HostSimd, SmallRows, CSharpReference];

    // Above this many floating-point operations the host loop takes seconds per product: it is run once, unwarmed.
    private const double ReferenceRepeatLimit = 1e9;

    /// <summary>
    /// Shapes (M, N, K) sized for the device: on ILGPU's CPU accelerator small ones (the tiled variant runs 16-thread
    /// groups whose barriers cost ~0.1 ms a round there, so a full run stays well under a minute), on real
    /// accelerators large ones.
    /// </summary>
    public static IReadOnlyList<(int M, int N, int K)> DefaultShapes(RetNetDevice device)
    {
        ArgumentNullException.ThrowIfNull(device);
        return device.IsCpuSimulator
            ? [(64, 64, 64), (128, 128, 128)]
            : [(1024, 1024, 1024), (2048, 2048, 2048), (4096, 4096, 1024)];
    }

    /// <summary>
    /// Times every implementation at every shape on random inputs: <paramref name="warmup"/> untimed products, then
    /// the median of <paramref name="repetitions"/> products, each timed from launch to
    /// <see cref="RetNetDevice.Synchronize"/>. The host loop is timed the same way, except that above 10⁹ operations
    /// it runs once without warm-up. Results come per shape in the order tiled, simple, host-simd (on ILGPU's CPU
    /// accelerator only), small-rows (transposed B of at most 8 rows only), csharp-reference. A 16-bit B is read
    /// directly by every implementation (the C# loop runs on B's widened values).
    /// </summary>
    /// <param name="device">The device to measure.</param>
    /// <param name="shapes">The products to time.</param>
    /// <param name="warmup">Untimed products before timing.</param>
    /// <param name="repetitions">Timed products; the median is reported.</param>
    /// <param name="cancellationToken">Checked before each measurement, never inside one: once cancelled, the run
    /// stops and returns the results measured so far (check the token to tell a partial list from a whole one).</param>
    /// <param name="dtypeB">How B is stored: fp32, or fp16/bf16 read directly by the GEMM.</param>
    /// <param name="transposeB">B stored [N, K], as a Linear layer's weight is.</param>
    /// <param name="implementations">The implementation names to time (null: all of them), so a run can skip the
    /// tiled kernel, which takes seconds a product on the CPU accelerator.</param>
    /// <exception cref="ArgumentOutOfRangeException">A count or dimension is out of range.</exception>
    public static IReadOnlyList<GemmBenchmarkResult> Run(RetNetDevice device, IReadOnlyList<(int M, int N, int K)> shapes,
        int warmup, int repetitions, CancellationToken cancellationToken = default,
        TensorDType dtypeB = TensorDType.Float32, bool transposeB = false,
        IReadOnlyCollection<string>? implementations = null)
    {
        ArgumentNullException.ThrowIfNull(device);
        ArgumentNullException.ThrowIfNull(shapes);
        ArgumentOutOfRangeException.ThrowIfNegative(warmup);
        ArgumentOutOfRangeException.ThrowIfLessThan(repetitions, 1);
        foreach (var (m, n, k) in shapes)
        {
            if (m < 1 || n < 1 || k < 1)
                throw new ArgumentOutOfRangeException(nameof(shapes), $"({m}, {n}, {k})",
                    "Expected every dimension of a benchmark shape to be at least 1.");
        }

        var results = new List<GemmBenchmarkResult>();
        var seed = 0;
        foreach (var (m, n, k) in shapes)
        {
            if (cancellationToken.IsCancellationRequested)
                return results;
            var hostA = RandomValues(++seed, m * k);
            // The values B holds once stored (rounded to its type), so the C# loop multiplies the same numbers.
            var hostB = RandomValues(++seed, k * n).Select(v => TensorDTypes.Round(v, dtypeB)).ToArray();
            using var a = Tensor.FromHost(device, hostA, m, k);
            using var b = transposeB
                ? Tensor.FromHost(device, hostB, dtypeB, n, k)
                : Tensor.FromHost(device, hostB, dtypeB, k, n);
            using var c = Tensor.Uninitialized(device, m, n);
            var flops = 2.0 * m * n * k;
            var weightBytes = (double)n * k * TensorDTypes.SizeOf(dtypeB);

            var smallRows = SmallRowsLaunch.For(device, k);
            List<(string, Action)> variants =
            [
                (Tiled, () => Gemm.Run(a, b, c, transposeB: transposeB, variant: GemmVariant.Tiled)),
                (Simple, () => Gemm.Run(a, b, c, transposeB: transposeB, variant: GemmVariant.Simple)),
            ];
            if (device.IsCpuSimulator)
                variants.Add((HostSimd, () => Gemm.Run(a, b, c, transposeB: transposeB, variant: GemmVariant.HostSimd)));
            if (transposeB && m <= GemmKernels.MaxSmallRows)
                variants.Add((SmallRows, () => Gemm.RunSmallRows(a, b, c, smallRows, transposeB: true)));
            foreach (var (name, run) in variants)
            {
                if (implementations?.Contains(name) == false)
                    continue;
                if (cancellationToken.IsCancellationRequested)
                    return results;
                var ms = Median(warmup, repetitions, () =>
                {
                    run();
                    device.Synchronize();
                }, before: device.Synchronize);
                results.Add(new GemmBenchmarkResult(name, m, n, k, ms, flops / (ms * 1e6), dtypeB, transposeB,
                    weightBytes / (ms * 1e6)));
            }

            if (cancellationToken.IsCancellationRequested)
                return results;
            if (implementations?.Contains(CSharpReference) == false)
                continue;
            var shape = new GemmShape(1, m, n, k, TransposeB: transposeB);
            var (referenceWarmup, referenceRepetitions) = flops > ReferenceRepeatLimit ? (0, 1) : (warmup, repetitions);
            var referenceMs = Median(referenceWarmup, referenceRepetitions,
                () => GemmReference.Forward(shape, hostA, hostB), before: null);
            results.Add(new GemmBenchmarkResult(CSharpReference, m, n, k, referenceMs, flops / (referenceMs * 1e6),
                dtypeB, transposeB, weightBytes / (referenceMs * 1e6)));
        }
        return results;
    }

    private static double Median(int warmup, int repetitions, Action run, Action? before)
    {
        for (var i = 0; i < warmup; i++)
            run();
        return Timing.MedianMs(repetitions, run, before);
    }

    private static float[] RandomValues(int seed, int count)
    {
        var random = new Random(seed);
        var values = new float[count];
        for (var i = 0; i < count; i++)
            values[i] = (float)(random.NextDouble() * 2 - 1);
        return values;
    }
}
