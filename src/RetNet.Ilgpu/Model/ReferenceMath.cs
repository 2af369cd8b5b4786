using MathNet.Numerics;
using RetNet.Ilgpu.IO;

namespace RetNet.Ilgpu.Model;

/// <summary>
/// The float64 pieces the two model references (<see cref="ModelReference"/> and
/// <see cref="TransformerReference"/>) are written from: plain loops, no kernels, no fp32 intermediates.
/// </summary>
internal static class ReferenceMath
{
    /// <summary>Row <paramref name="row"/> of a [rows, columns] table, widened.</summary>
    public static double[] Row(HostTensor table, int row) =>
        table.Data.AsSpan(row * table.Shape[1], table.Shape[1]).ToArray().Select(f => (double)f).ToArray();

    /// <summary>y = W x for W [out, in] (the layout of a linear layer's weight).</summary>
    public static double[] MatVec(HostTensor weight, double[] x)
    {
        int rows = weight.Shape[0], cols = weight.Shape[1];
        var y = new double[rows];
        for (var r = 0; r < rows; r++)
        {
            var sum = 0.0;
            for (var i = 0; i < cols; i++)
                sum += weight.Data[r * cols + i] * x[i];
            y[r] = sum;
        }
        return y;
    }

    /// <summary>x / √(mean(x²) + eps), times the weight when there is one.</summary>
    public static double[] RmsNorm(double[] x, float[]? weight, double eps)
    {
        var rstd = 1 / Math.Sqrt(x.Select(e => e * e).Average() + eps);
        return x.Select((e, i) => e * rstd * (weight?[i] ?? 1)).ToArray();
    }

    /// <summary>a + b elementwise.</summary>
    public static double[] Add(double[] a, double[] b) => a.Select((e, i) => e + b[i]).ToArray();

    /// <summary>x·σ(x).</summary>
    public static double Silu(double x) => x / (1 + Math.Exp(-x));

    /// <summary>x·Φ(x), the exact GELU.</summary>
    public static double Gelu(double x) => 0.5 * x * (1 + SpecialFunctions.Erf(x / Math.Sqrt(2)));

    /// <summary>
    /// Rotates each interleaved pair (2i, 2i+1) of every head of <paramref name="m"/> in place by position·θ_i with
    /// θ_i = 1 / 10000^(i / (d_h/2 − 1)) (torchscale's linspace(0, 1, d_h/2) exponents).
    /// </summary>
    public static void Rotate(double[] m, int position, int heads, int headDim)
    {
        var half = headDim / 2;
        for (var h = 0; h < heads; h++)
        for (var i = 0; i < half; i++)
        {
            var angle = 1 / Math.Pow(10000, half == 1 ? 0 : (double)i / (half - 1));
            var (s, cos) = Math.SinCos(position * angle);
            var at = h * headDim + 2 * i;
            double x0 = m[at], x1 = m[at + 1];
            m[at] = x0 * cos - x1 * s;
            m[at + 1] = x1 * cos + x0 * s;
        }
    }

    /// <summary>
    /// The mean next-token cross-entropy of windows [B, T + 1]: tokens 1 … T scored by the logits
    /// <paramref name="forward"/> gives for tokens 0 … T − 1 ([B, T, V] flattened).
    /// </summary>
    public static double NextTokenLoss(int[,] windows, int vocabulary, Func<int[,], double[]> forward)
    {
        int batch = windows.GetLength(0), seqLen = windows.GetLength(1) - 1;
        var inputs = new int[batch, seqLen];
        for (var b = 0; b < batch; b++)
        for (var t = 0; t < seqLen; t++)
            inputs[b, t] = windows[b, t];
        var logits = forward(inputs);
        var total = 0.0;
        for (var b = 0; b < batch; b++)
        for (var t = 0; t < seqLen; t++)
        {
            var row = logits.AsSpan((b * seqLen + t) * vocabulary, vocabulary);
            var max = double.NegativeInfinity;
            foreach (var v in row)
                max = Math.Max(max, v);
            var sum = 0.0;
            foreach (var v in row)
                sum += Math.Exp(v - max);
            total += max + Math.Log(sum) - row[windows[b, t + 1]];
        }
        return total / (batch * seqLen);
    }
}
