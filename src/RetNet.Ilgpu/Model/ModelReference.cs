using RetNet.Ilgpu.IO;
using static RetNet.Ilgpu.Model.ReferenceMath;

namespace RetNet.Ilgpu.Model;

/// <summary>
/// torchscale's parallel forward of the RetNet LM in double precision, written from docs/MATH.md §4–6 independently
/// of the library: scaled embedding (optionally RMS-normed), pre- or post-norm blocks with deepnorm's α (RMSNorm,
/// multi-scale retention with theta shift, the parallel form with each decay row divided by √ of its sum as
/// torchscale does, per-head RMSNorm, swish gate; gated FFN), final RMSNorm (pre-norm), tied or untied output.
/// </summary>
public static class ModelReference
{
    /// <summary>Logits [B, T, V] flattened, for tokens [B, T] all starting at position 0. Without
    /// <paramref name="decayNormalisation"/> the decay rows keep their raw values (a negative control).</summary>
    public static double[] Forward(RetNetConfig c, IReadOnlyDictionary<string, HostTensor> w, int[,] tokens,
        bool decayNormalisation = true)
    {
        int batch = tokens.GetLength(0), seqLen = tokens.GetLength(1);
        int d = c.EmbedDim, vocab = c.VocabSize;
        var logits = new double[batch * seqLen * vocab];
        for (var b = 0; b < batch; b++)
        {
            var x = new double[seqLen][];
            var scale = c.NoScaleEmbedding ? 1.0 : Math.Sqrt(d);
            for (var t = 0; t < seqLen; t++)
            {
                x[t] = Row(w["embed_tokens.weight"], tokens[b, t]).Select(e => scale * e).ToArray();
                if (c.LayerNormEmbedding)
                    x[t] = RmsNorm(x[t], w["layernorm_embedding.weight"].Data, c.LayerNormEps);
            }
            var alpha = c.Deepnorm ? Math.Pow(2.0 * c.Layers, 0.25) : 1.0;
            for (var l = 0; l < c.Layers; l++)
            {
                var p = $"layers.{l}.";
                var retentionNorm = w[p + "retention_layer_norm.weight"].Data;
                var finalNorm = w[p + "final_layer_norm.weight"].Data;
                var h = c.NormalizeBefore ? x.Select(r => RmsNorm(r, retentionNorm, c.LayerNormEps)).ToArray() : x;
                var msr = Retention(c, w, p, h, decayNormalisation);
                for (var t = 0; t < seqLen; t++)
                {
                    x[t] = Add(x[t].Select(e => alpha * e).ToArray(), msr[t]);
                    if (!c.NormalizeBefore)
                        x[t] = RmsNorm(x[t], retentionNorm, c.LayerNormEps);
                }
                h = c.NormalizeBefore ? x.Select(r => RmsNorm(r, finalNorm, c.LayerNormEps)).ToArray() : x;
                for (var t = 0; t < seqLen; t++)
                {
                    var a = MatVec(w[p + "ffn.fc1.weight"], h[t]);
                    var gate = MatVec(w[p + "ffn.gate.weight"], h[t]);
                    var act = a.Select((v, i) => (c.ActivationFn == "gelu" ? Gelu(v) : Silu(v)) * gate[i]).ToArray();
                    x[t] = Add(x[t].Select(e => alpha * e).ToArray(), MatVec(w[p + "ffn.fc2.weight"], act));
                    if (!c.NormalizeBefore)
                        x[t] = RmsNorm(x[t], finalNorm, c.LayerNormEps);
                }
            }
            var output = c.ShareInputOutputEmbed ? w["embed_tokens.weight"] : w["output_projection.weight"];
            for (var t = 0; t < seqLen; t++)
            {
                var features = c.NormalizeBefore ? RmsNorm(x[t], w["layer_norm.weight"].Data, c.LayerNormEps) : x[t];
                var y = MatVec(output, features);
                Array.Copy(y, 0, logits, (b * seqLen + t) * vocab, vocab);
            }
        }
        return logits;
    }

    /// <summary>The mean next-token cross-entropy of windows [B, T + 1] in double: tokens 1 … T predicted from the
    /// logits of tokens 0 … T − 1.</summary>
    public static double Loss(RetNetConfig c, IReadOnlyDictionary<string, HostTensor> w, int[,] windows)
    {
        ArgumentNullException.ThrowIfNull(windows);
        return ReferenceMath.NextTokenLoss(windows, c.VocabSize, inputs => Forward(c, w, inputs));
    }

    private static double[][] Retention(RetNetConfig c, IReadOnlyDictionary<string, HostTensor> w, string p,
        double[][] x, bool decayNormalisation)
    {
        int seqLen = x.Length, heads = c.RetentionHeads, dk = c.KeyHeadDim, dv = c.ValueHeadDim;
        var q = x.Select(r => MatVec(w[p + "retention.q_proj.weight"], r)).ToArray();
        var k = x.Select(r => MatVec(w[p + "retention.k_proj.weight"], r).Select(e => e / Math.Sqrt(dk)).ToArray())
            .ToArray();
        var v = x.Select(r => MatVec(w[p + "retention.v_proj.weight"], r)).ToArray();
        var g = x.Select(r => MatVec(w[p + "retention.g_proj.weight"], r)).ToArray();
        // torchscale's theta shift: angle = 1 / 10000^linspace(0, 1, dk/2), repeated for the interleaved pair.
        for (var t = 0; t < seqLen; t++)
        {
            Rotate(q[t], t, heads, dk);
            Rotate(k[t], t, heads, dk);
        }
        var y = new double[seqLen][];
        for (var t = 0; t < seqLen; t++)
        {
            y[t] = new double[heads * dv];
            for (var h = 0; h < heads; h++)
            {
                var gamma = c.RetentionDecay?[h] ?? (c.DecayScheduleName == "paper"
                    ? 1 - Math.Exp(Math.Log(1.0 / 32) + (heads == 1 ? 0 : h * (Math.Log(1.0 / 512) - Math.Log(1.0 / 32)) / (heads - 1)))
                    : 1 - Math.Pow(2, -5 - h));
                // torchscale's parallel form: row t of the decay matrix divided by √ of its sum.
                var rowSum = 0.0;
                for (var j = 0; j <= t && decayNormalisation; j++)
                    rowSum += Math.Pow(gamma, t - j);
                if (!decayNormalisation)
                    rowSum = 1;
                for (var j = 0; j <= t; j++)
                {
                    var score = 0.0;
                    for (var i = 0; i < dk; i++)
                        score += q[t][h * dk + i] * k[j][h * dk + i];
                    score *= Math.Pow(gamma, t - j) / Math.Sqrt(rowSum);
                    for (var e = 0; e < dv; e++)
                        y[t][h * dv + e] += score * v[j][h * dv + e];
                }
                var head = RmsNorm(y[t].AsSpan(h * dv, dv).ToArray(), null, c.LayerNormEps);
                head.CopyTo(y[t], h * dv);
            }
            for (var e = 0; e < y[t].Length; e++)
                y[t][e] *= Silu(g[t][e]);
        }
        return y.Select(r => MatVec(w[p + "retention.out_proj.weight"], r)).ToArray();
    }
}
