using RetNet.Ilgpu.IO;
using static RetNet.Ilgpu.Model.ReferenceMath;

namespace RetNet.Ilgpu.Model;

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
                    ReferenceMath.Rotate(q[t], t, heads, dh);
                    ReferenceMath.Rotate(k[t], t, heads, dh);
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
        ArgumentNullException.ThrowIfNull(windows);
        return ReferenceMath.NextTokenLoss(windows, c.VocabSize, inputs => Forward(c, w, inputs));
    }
}
