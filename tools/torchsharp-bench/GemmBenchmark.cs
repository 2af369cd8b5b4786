using static TorchSharp.torch;

namespace TorchSharpBench;

/// <summary>fp32 C = A·B with <c>torch.matmul</c>, the peer of <c>retnet bench gemm</c>'s rows (M×N×K).</summary>
internal static class GemmBenchmark
{
    /// <summary>Times A [M, K] · B [K, N], inputs uniform in [0, 1); GFLOP/s = 2·M·N·K / time.</summary>
    public static Result Run(int m, int n, int k, int repetitions)
    {
        using var a = rand(m, k, dtype: ScalarType.Float32);
        using var b = rand(k, n, dtype: ScalarType.Float32);
        var times = Timing.Measure(() => matmul(a, b)[0, 0].item<float>(), warmup: 5, repetitions, minSeconds: 1);
        return new Result("gemm", $"{m}x{n}x{k}", times.MedianMs, 2.0 * m * n * k / (times.MedianMs * 1e6), times.MinMs);
    }
}
