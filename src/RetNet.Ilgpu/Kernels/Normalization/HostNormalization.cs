using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using ILGPU.Algorithms;
using RetNet.Ilgpu.Kernels.Gemm;

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
        float* epsScale, int rows, int dim, float eps, int flags, HostGemmPath path = HostGemmPath.Auto)
        where TKind : struct, INormalizationKind
    {
        var work = new RowWork((nint)x, (nint)weight, (nint)bias, (nint)y, (nint)mean, (nint)rstd, (nint)epsScale, rows,
            dim, eps, flags);
        path = path == HostGemmPath.Auto ? HostGemm.Best : path;
        var parts = (long)rows * dim < ParallelElements ? 1 : Math.Min(rows, Environment.ProcessorCount);
        HostSimd.For(parts, parts, p =>
        {
            var (first, end) = (rows * p / parts, rows * (p + 1) / parts);
            switch (path)
            {
                case HostGemmPath.Vector512:
                    work.VectorRows<Vector512<float>, Vector512Ops, TKind>(first, end);
                    break;
                case HostGemmPath.Vector256:
                    work.VectorRows<Vector256<float>, Vector256Ops, TKind>(first, end);
                    break;
                default:
                    work.Rows<TKind>(first, end);
                    break;
            }
        });
    }

    private sealed record RowWork(nint X, nint Weight, nint Bias, nint Y, nint Mean, nint Rstd, nint EpsScale,
        int RowCount, int Dim, float Eps, int Flags)
    {
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void VectorRows<TV, TOps, TKind>(int first, int end)
            where TV : struct
            where TOps : struct, IVectorOps<TV>
            where TKind : struct, INormalizationKind
        {
            float* x = (float*)X, weight = (float*)Weight, bias = (float*)Bias, y = (float*)Y;
            var (dim, flags, w) = (Dim, Flags, TOps.Count);
            var full = dim / w * w;
            var tail = stackalloc float[w];
            for (var row = first; row < end; row++)
            {
                var xr = x + (nint)row * dim;
                var mu = 0f;
                if (default(TKind).Centered)
                {
                    var acc = TOps.Zero;
                    for (var j = 0; j < full; j += w)
                        acc = TOps.Add(acc, TOps.Load(xr + j));
                    if (full < dim)
                    {
                        new Span<float>(tail, w).Clear();
                        new ReadOnlySpan<float>(xr + full, dim - full).CopyTo(new Span<float>(tail, w));
                        acc = TOps.Add(acc, TOps.Load(tail));
                    }
                    mu = TOps.Sum(acc) / dim;
                }
                var vmu = TOps.Broadcast(mu);
                var squares = TOps.Zero;
                for (var j = 0; j < full; j += w)
                {
                    var centred = TOps.Subtract(TOps.Load(xr + j), vmu);
                    squares = TOps.Fma(centred, centred, squares);
                }
                if (full < dim)
                {
                    // The padding's lanes are 0, not 0 − mu.
                    new Span<float>(tail, w).Clear();
                    for (var j = full; j < dim; j++)
                        tail[j - full] = xr[j] - mu;
                    var centred = TOps.Load(tail);
                    squares = TOps.Fma(centred, centred, squares);
                }
                var rowEps = (flags & NormalizationFlags.RowEps) != 0 ? Eps * ((float*)EpsScale)[row] : Eps;
                var r = 1f / XMath.Sqrt(TOps.Sum(squares) / dim + rowEps);
                if ((flags & NormalizationFlags.Statistics) != 0)
                {
                    ((float*)Rstd)[row] = r;
                    if (default(TKind).Centered)
                        ((float*)Mean)[row] = mu;
                }
                if ((flags & NormalizationFlags.Output) == 0)
                    continue;
                // (x − mu)·r·w + b element by element, as the kernel rounds it: exact operations, so the vector body
                // and the scalar tail agree.
                var (hasWeight, hasBias) = ((flags & NormalizationFlags.Weight) != 0, (flags & NormalizationFlags.Bias) != 0);
                var (vr, one) = (TOps.Broadcast(r), TOps.Broadcast(1f));
                var yr = y + (nint)row * dim;
                var k = 0;
                for (; k < full; k += w)
                {
                    var v = TOps.Multiply(TOps.Multiply(TOps.Subtract(TOps.Load(xr + k), vmu), vr),
                        hasWeight ? TOps.Load(weight + k) : one);
                    TOps.Store(hasBias ? TOps.Add(v, TOps.Load(bias + k)) : TOps.Add(v, TOps.Zero), yr + k);
                }
                for (; k < dim; k++)
                    yr[k] = (xr[k] - mu) * r * (hasWeight ? weight[k] : 1f) + (hasBias ? bias[k] : 0f);
            }
        }

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
