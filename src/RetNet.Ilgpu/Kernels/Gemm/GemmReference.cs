namespace RetNet.Ilgpu.Kernels.Gemm;

/// <summary>
/// Double-precision reference of <see cref="Gemm"/> on host arrays laid out as <see cref="GemmShape"/> describes
/// (row-major, stored transposed where the shape says so, a broadcast operand holding one matrix).
/// </summary>
public static class GemmReference
{
    /// <summary>C = alpha·op(A)·op(B) + beta·C in double; <paramref name="c"/> is read only when beta ≠ 0.</summary>
    /// <exception cref="ArgumentException">An array's length does not match <paramref name="shape"/>.</exception>
    public static double[] Forward(GemmShape shape, ReadOnlySpan<float> a, ReadOnlySpan<float> b, double alpha = 1,
        double beta = 0, ReadOnlySpan<float> c = default)
    {
        RequireLength(a, shape.ElementsA, nameof(a), shape);
        RequireLength(b, shape.ElementsB, nameof(b), shape);
        if (beta != 0)
            RequireLength(c, shape.ElementsC, nameof(c), shape);
        var (sam, sak) = StridesA(shape);
        var (sbk, sbn) = StridesB(shape);
        var result = new double[shape.ElementsC];
        var row = new double[shape.N];
        for (var p = 0; p < shape.Batch; p++)
        {
            for (var m = 0; m < shape.M; m++)
            {
                Array.Clear(row);
                // k outside n keeps the inner loop on consecutive elements of B when B is not transposed.
                for (var k = 0; k < shape.K; k++)
                {
                    double av = a[p * shape.BatchStrideA + m * sam + k * sak];
                    var bi = p * shape.BatchStrideB + k * sbk;
                    for (var n = 0; n < shape.N; n++)
                        row[n] += av * b[bi + n * sbn];
                }
                var ci = p * shape.BatchStrideC + m * shape.N;
                for (var n = 0; n < shape.N; n++)
                    result[ci + n] = alpha * row[n] + (beta == 0 ? 0 : beta * c[ci + n]);
            }
        }
        return result;
    }

    /// <summary>
    /// Gradients of a loss with respect to A and B given <paramref name="dC"/> = ∂loss/∂C of
    /// <see cref="Forward"/> with this <paramref name="alpha"/> (beta·C does not depend on A or B). Each gradient is
    /// laid out like its operand (transposed storage included); a broadcast operand's gradient sums over the batch.
    /// </summary>
    /// <exception cref="ArgumentException">An array's length does not match <paramref name="shape"/>.</exception>
    public static (double[] DA, double[] DB) Backward(GemmShape shape, ReadOnlySpan<float> a, ReadOnlySpan<float> b,
        ReadOnlySpan<float> dC, double alpha = 1)
    {
        RequireLength(a, shape.ElementsA, nameof(a), shape);
        RequireLength(b, shape.ElementsB, nameof(b), shape);
        RequireLength(dC, shape.ElementsC, nameof(dC), shape);
        var (sam, sak) = StridesA(shape);
        var (sbk, sbn) = StridesB(shape);
        var da = new double[shape.ElementsA];
        var db = new double[shape.ElementsB];
        for (var p = 0; p < shape.Batch; p++)
        {
            for (var m = 0; m < shape.M; m++)
            {
                for (var n = 0; n < shape.N; n++)
                {
                    var g = alpha * dC[p * shape.BatchStrideC + m * shape.N + n];
                    for (var k = 0; k < shape.K; k++)
                    {
                        var ai = p * shape.BatchStrideA + m * sam + k * sak;
                        var bi = p * shape.BatchStrideB + k * sbk + n * sbn;
                        da[ai] += g * b[bi];
                        db[bi] += g * a[ai];
                    }
                }
            }
        }
        return (da, db);
    }

    // op(A)[m, k] = A[m·sam + k·sak], op(B)[k, n] = B[k·sbk + n·sbn].
    private static (int Sam, int Sak) StridesA(GemmShape shape) => shape.TransposeA ? (1, shape.M) : (shape.K, 1);

    private static (int Sbk, int Sbn) StridesB(GemmShape shape) => shape.TransposeB ? (1, shape.K) : (shape.N, 1);

    private static void RequireLength(ReadOnlySpan<float> values, int expected, string argument, GemmShape shape)
    {
        if (values.Length != expected)
            throw new ArgumentException(
                $"Argument '{argument}' has {values.Length} elements; expected {expected} for {shape}.", argument);
    }
}
