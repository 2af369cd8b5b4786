using MathNet.Numerics;
using RetNet.Ilgpu.IO;

namespace RetNet.Ilgpu.Transformer;

/// <summary>
/// The baseline Transformer's forward pass in double precision, written from docs/TRANSFORMER.md independently of the
/// library: scaled embedding; pre-norm blocks of RMSNorm, q/k/v projections, the rotation of q and k at absolute
/// positions, causal softmax attention with scale 1/√(d/H) (plain, the whole row of logits at once), the out
/// projection and the gated FFN; final RMSNorm; output projection.
/// </summary>
public static class TransformerReference
{
    /// <summary>Logits [B, T, V] flattened, for tokens [B, T] from position 0. <paramref name="leak"/> lets each query
    /// see one key past itself (a negative control: a broken causal mask).</summary>
    public static double[] Forward(TransformerConfig c, IReadOnlyDictionary<string, HostTensor> w, int[,] tokens,
        bool leak = false)
    {
        int batch = tokens.GetLength(0), seqLen = tokens.GetLength(1);
        int d = c.EmbedDim, vocab = c.VocabSize, heads = c.Heads, dh = c.HeadDim;
        var logits = new double[batch * seqLen * vocab];
        var scale = c.NoScaleEmbedding ? 1.0 : Math.Sqrt(d);
        for (var b = 0; b < batch; b++)
        {
            var x = new double[seqLen][];
            for (var t = 0; t < seqLen; t++)
                x[t] = Row(w["embed_tokens.weight"], tokens[b, t]).Select(e => scale * e).ToArray();
            for (var l = 0; l < c.Layers; l++)
            {
                var p = $"layers.{l}.";
                var h = x.Select(r => RmsNorm(r, w[p + "attention_layer_norm.weight"].Data, c.LayerNormEps)).ToArray();
                var q = h.Select(r => MatVec(w[p + "attention.q_proj.weight"], r)).ToArray();
                var k = h.Select(r => MatVec(w[p + "attention.k_proj.weight"], r)).ToArray();
                var v = h.Select(r => MatVec(w[p + "attention.v_proj.weight"], r)).ToArray();
                for (var t = 0; t < seqLen; t++)
                {
                    Rotate(q[t], t, heads, dh);
                    Rotate(k[t], t, heads, dh);
                }
                var o = new double[seqLen][];
                for (var t = 0; t < seqLen; t++)
                {
                    o[t] = new double[d];
                    var last = leak ? Math.Min(t + 1, seqLen - 1) : t;
                    for (var hd = 0; hd < heads; hd++)
                    {
                        var scores = new double[last + 1];
                        for (var j = 0; j <= last; j++)
                        {
                            var s = 0.0;
                            for (var i = 0; i < dh; i++)
                                s += q[t][hd * dh + i] * k[j][hd * dh + i];
                            scores[j] = s / Math.Sqrt(dh);
                        }
                        var max = scores.Max();
                        var weights = scores.Select(s => Math.Exp(s - max)).ToArray();
                        var sum = weights.Sum();
                        for (var j = 0; j <= last; j++)
                        for (var e = 0; e < dh; e++)
                            o[t][hd * dh + e] += weights[j] / sum * v[j][hd * dh + e];
                    }
                }
                for (var t = 0; t < seqLen; t++)
                    x[t] = Add(x[t], MatVec(w[p + "attention.out_proj.weight"], o[t]));
                h = x.Select(r => RmsNorm(r, w[p + "final_layer_norm.weight"].Data, c.LayerNormEps)).ToArray();
                for (var t = 0; t < seqLen; t++)
                {
                    var a = MatVec(w[p + "ffn.fc1.weight"], h[t]);
                    var gate = MatVec(w[p + "ffn.gate.weight"], h[t]);
                    var act = a.Select((e, i) => (c.ActivationFn == "gelu" ? Gelu(e) : Silu(e)) * gate[i]).ToArray();
                    x[t] = Add(x[t], MatVec(w[p + "ffn.fc2.weight"], act));
                }
            }
            var output = c.ShareInputOutputEmbed ? w["embed_tokens.weight"] : w["output_projection.weight"];
            for (var t = 0; t < seqLen; t++)
            {
                var y = MatVec(output, RmsNorm(x[t], w["layer_norm.weight"].Data, c.LayerNormEps));
                Array.Copy(y, 0, logits, (b * seqLen + t) * vocab, vocab);
            }
        }
        return logits;
    }

    /// <summary>The mean next-token cross-entropy of windows [B, T + 1] in double.</summary>
    public static double Loss(TransformerConfig c, IReadOnlyDictionary<string, HostTensor> w, int[,] windows)
    {
        int batch = windows.GetLength(0), seqLen = windows.GetLength(1) - 1, vocab = c.VocabSize;
        var inputs = new int[batch, seqLen];
        for (var b = 0; b < batch; b++)
        for (var t = 0; t < seqLen; t++)
            inputs[b, t] = windows[b, t];
        var logits = Forward(c, w, inputs);
        var total = 0.0;
        for (var b = 0; b < batch; b++)
        for (var t = 0; t < seqLen; t++)
        {
            var row = logits.AsSpan((b * seqLen + t) * vocab, vocab);
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

    /// <summary>Rotates each interleaved pair (2i, 2i+1) of every head by t·θ_i, θ_i = 1/10000^(i/(dh/2 − 1)).</summary>
    private static void Rotate(double[] m, int t, int heads, int dh)
    {
        var half = dh / 2;
        for (var h = 0; h < heads; h++)
        for (var i = 0; i < half; i++)
        {
            var angle = 1 / Math.Pow(10000, half == 1 ? 0 : (double)i / (half - 1));
            var (s, cos) = Math.SinCos(t * angle);
            var at = h * dh + 2 * i;
            double x0 = m[at], x1 = m[at + 1];
            m[at] = x0 * cos - x1 * s;
            m[at + 1] = x1 * cos + x0 * s;
        }
    }

    private static double[] Row(HostTensor table, int row) =>
        table.Data.AsSpan(row * table.Shape[1], table.Shape[1]).ToArray().Select(f => (double)f).ToArray();

    private static double[] MatVec(HostTensor weight, double[] x)
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

    private static double[] RmsNorm(double[] x, float[] weight, double eps)
    {
        var rstd = 1 / Math.Sqrt(x.Select(e => e * e).Average() + eps);
        return x.Select((e, i) => e * rstd * weight[i]).ToArray();
    }

    private static double[] Add(double[] a, double[] b) => a.Select((e, i) => e + b[i]).ToArray();

    private static double Silu(double x) => x / (1 + Math.Exp(-x));

    private static double Gelu(double x) => 0.5 * x * (1 + SpecialFunctions.Erf(x / Math.Sqrt(2)));
}
