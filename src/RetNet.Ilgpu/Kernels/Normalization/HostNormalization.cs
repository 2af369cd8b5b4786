using ILGPU.Algorithms;

namespace RetNet.Ilgpu.Kernels.Normalization;

/// <summary>
/// The thread-per-row forward (<see cref="NormalizationKernels.ForwardRow{TKind}"/>) as host code over the CPU
/// accelerator's buffers, for host execution: the same statements on pointers instead of array views, whose accesses
/// cost a few nanoseconds each when the kernel is called as host code. Every row takes the kernel's operations in the
/// kernel's order, so the two give the same bits, and a row's result never depends on the other rows.
/// </summary>
internal static unsafe class HostNormalization
{
    // Below this many elements (~60 µs of work) one thread takes every row.
    private const long ParallelElements = 1 << 16;

    /// <summary>The forward of rows [rows, dim]; absent tensors are null pointers, which the flags never touch.</summary>
    public static void ForwardRows<TKind>(float* x, float* weight, float* bias, float* y, float* mean, float* rstd,
        float* epsScale, int rows, int dim, float eps, int flags)
        where TKind : struct, INormalizationKind
    {
        var work = new RowWork((nint)x, (nint)weight, (nint)bias, (nint)y, (nint)mean, (nint)rstd, (nint)epsScale, rows,
            dim, eps, flags);
        var parts = (long)rows * dim < ParallelElements ? 1 : Math.Min(rows, Environment.ProcessorCount);
        HostSimd.For(parts, parts, p => work.Rows<TKind>(rows * p / parts, rows * (p + 1) / parts));
    }

    private sealed record RowWork(nint X, nint Weight, nint Bias, nint Y, nint Mean, nint Rstd, nint EpsScale,
        int RowCount, int Dim, float Eps, int Flags)
    {
        public void Rows<TKind>(int first, int end) where TKind : struct, INormalizationKind
        {
            float* x = (float*)X, weight = (float*)Weight, bias = (float*)Bias, y = (float*)Y;
            var (dim, flags) = (Dim, Flags);
            for (var row = first; row < end; row++)
            {
                var start = (nint)row * dim;
                var mu = 0f;
                if (default(TKind).Centered)
                {
                    var sum = 0f;
                    for (var j = 0; j < dim; j++)
                        sum += x[start + j];
                    mu = sum / dim;
                }
                var squares = 0f;
                for (var j = 0; j < dim; j++)
                {
                    var centred = x[start + j] - mu;
                    squares += centred * centred;
                }
                var rowEps = (flags & NormalizationFlags.RowEps) != 0 ? Eps * ((float*)EpsScale)[row] : Eps;
                var r = 1f / XMath.Sqrt(squares / dim + rowEps);
                if ((flags & NormalizationFlags.Statistics) != 0)
                {
                    ((float*)Rstd)[row] = r;
                    if (default(TKind).Centered)
                        ((float*)Mean)[row] = mu;
                }
                if ((flags & NormalizationFlags.Output) != 0)
                {
                    for (var j = 0; j < dim; j++)
                    {
                        var w = (flags & NormalizationFlags.Weight) != 0 ? weight[j] : 1f;
                        var b = (flags & NormalizationFlags.Bias) != 0 ? bias[j] : 0f;
                        y[start + j] = (x[start + j] - mu) * r * w + b;
                    }
                }
            }
        }
    }
}
