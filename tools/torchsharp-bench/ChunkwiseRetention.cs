using TorchSharp;
using static TorchSharp.torch;

namespace TorchSharpBench;

/// <summary>
/// The decay tables of chunkwise retention for heads with decays γ_h and chunk size C, as tensors shaped to broadcast
/// against [B, H, N, C, D] chunks: Mask [H, 1, C, C] with γ^(i−j) for i ≥ j else 0, Query [H, 1, C, 1] with γ^(i+1),
/// Key [H, 1, C, 1] with γ^(C−1−j), Chunk [H, 1, 1] with γ^C. Computed once in double on the host.
/// </summary>
internal sealed class ChunkDecay : IDisposable
{
    public ChunkDecay(IReadOnlyList<double> gammas, int chunkSize, ScalarType dtype)
    {
        int heads = gammas.Count, c = chunkSize;
        var mask = new double[heads * c * c];
        var query = new double[heads * c];
        var key = new double[heads * c];
        var chunk = new double[heads];
        for (var h = 0; h < heads; h++)
        {
            for (var i = 0; i < c; i++)
            {
                for (var j = 0; j <= i; j++)
                    mask[(h * c + i) * c + j] = Math.Pow(gammas[h], i - j);
                query[h * c + i] = Math.Pow(gammas[h], i + 1);
                key[h * c + i] = Math.Pow(gammas[h], c - 1 - i);
            }
            chunk[h] = Math.Pow(gammas[h], c);
        }
        ChunkSize = chunkSize;
        Mask = tensor(mask, [heads, 1, c, c], dtype);
        Query = tensor(query, [heads, 1, c, 1], dtype);
        Key = tensor(key, [heads, 1, c, 1], dtype);
        Chunk = tensor(chunk, [heads, 1, 1], dtype);
    }

    /// <summary>C.</summary>
    public int ChunkSize { get; }

    /// <summary>[H, 1, C, C]: γ^(i−j) for i ≥ j, else 0.</summary>
    public Tensor Mask { get; }

    /// <summary>[H, 1, C, 1]: γ^(i+1), the decay from the state entering a chunk to its row i.</summary>
    public Tensor Query { get; }

    /// <summary>[H, 1, C, 1]: γ^(C−1−j), the decay from row j of a chunk to the state leaving it.</summary>
    public Tensor Key { get; }

    /// <summary>[H, 1, 1]: γ^C, the decay of the state across a whole chunk.</summary>
    public Tensor Chunk { get; }

    /// <summary>torchscale's schedule γ_h = 1 − 2^(−5−h), h = 0 … H−1.</summary>
    public static double[] TorchscaleGammas(int heads) =>
        Enumerable.Range(0, heads).Select(h => 1 - Math.Pow(2, -5 - h)).ToArray();

    public void Dispose()
    {
        Mask.Dispose();
        Query.Dispose();
        Key.Dispose();
        Chunk.Dispose();
    }
}

/// <summary>
/// Retention written with torch operators the way torchscale's <c>chunk_recurrent_forward</c> and fla's naive chunk
/// form write it (no initial state, no decay normalisation), plus the naive parallel form it is checked against.
/// Backward is autograd's.
/// </summary>
internal static class ChunkwiseRetention
{
    /// <summary>
    /// o [B, T, H, Dv] from q, k [B, T, H, Dk] and v [B, T, H, Dv], T a multiple of C. The products are batched over
    /// all N = T/C chunks at once: intra = ((q kᵀ) ⊙ Mask) v per chunk, and each chunk's contribution to the state
    /// (k ⊙ γ^(C−1−j))ᵀ v; a loop over the chunks then carries the state S [B, H, Dk, Dv] (S ← γ^C·S + contribution),
    /// and the states entering the chunks give inter = (q ⊙ γ^(i+1)) S in one more batched product.
    /// </summary>
    public static Tensor Forward(Tensor q, Tensor k, Tensor v, ChunkDecay decay)
    {
        long batch = q.shape[0], seqLen = q.shape[1], heads = q.shape[2], dk = q.shape[3], dv = v.shape[3];
        long c = decay.ChunkSize, chunks = seqLen / c;
        if (chunks * c != seqLen)
            throw new ArgumentException($"T = {seqLen} is not a multiple of C = {c}.", nameof(q));
        using var scope = NewDisposeScope();
        // [B, T, H, D] → [B, H, N, C, D]
        var qc = q.reshape(batch, chunks, c, heads, dk).permute(0, 3, 1, 2, 4);
        var kc = k.reshape(batch, chunks, c, heads, dk).permute(0, 3, 1, 2, 4);
        var vc = v.reshape(batch, chunks, c, heads, dv).permute(0, 3, 1, 2, 4);
        var intra = matmul(matmul(qc, kc.transpose(-1, -2)) * decay.Mask, vc);
        var contributions = matmul((kc * decay.Key).transpose(-1, -2), vc); // [B, H, N, Dk, Dv]
        var states = new List<Tensor> { zeros([batch, heads, dk, dv], q.dtype) };
        for (var n = 0; n < chunks - 1; n++)
            states.Add(states[^1] * decay.Chunk + contributions.select(2, n));
        var inter = matmul(qc * decay.Query, stack(states, 2));
        return (intra + inter).permute(0, 2, 3, 1, 4).reshape(batch, seqLen, heads, dv).MoveToOuterDisposeScope();
    }

    /// <summary>The naive parallel form O = ((q kᵀ) ⊙ D) v with D[i, j] = γ^(i−j) for i ≥ j else 0 over the whole
    /// sequence; the reference of <see cref="Check"/>.</summary>
    public static Tensor Parallel(Tensor q, Tensor k, Tensor v, IReadOnlyList<double> gammas)
    {
        long seqLen = q.shape[1];
        using var decay = new ChunkDecay(gammas, (int)seqLen, q.dtype);
        using var scope = NewDisposeScope();
        var qh = q.permute(0, 2, 1, 3);
        var kh = k.permute(0, 2, 1, 3);
        var vh = v.permute(0, 2, 1, 3);
        var o = matmul(matmul(qh, kh.transpose(-1, -2)) * decay.Mask.squeeze(1), vh);
        return o.permute(0, 2, 1, 3).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// The worst relative error (max |a − b| / max |b| per tensor) of <see cref="Forward"/> and of its autograd
    /// gradients dq, dk, dv against the parallel form's, in float64 at B 1, H 4, D 64, C 64, T 256; and the same
    /// measure when the chunkwise form is given head 0's γ off by 10⁻⁶, the negative control that shows the check
    /// can fail.
    /// </summary>
    public static (double Error, double ControlError) Check()
    {
        using var scope = NewDisposeScope();
        const int heads = 4, dim = 64, chunk = 64, seqLen = 256;
        var gammas = ChunkDecay.TorchscaleGammas(heads);
        var generator = new Generator(7);
        Tensor Input() => (rand([1, seqLen, heads, dim], ScalarType.Float64, generator: generator) * 2 - 1)
            .requires_grad_(true);
        Tensor q = Input(), k = Input(), v = Input();
        var dO = rand([1, seqLen, heads, dim], ScalarType.Float64, generator: generator) * 2 - 1;

        IList<Tensor> OutputAndGradients(Tensor o)
        {
            var gradients = autograd.grad([(o * dO).sum()], [q, k, v]);
            return [o.detach(), .. gradients];
        }

        var reference = OutputAndGradients(Parallel(q, k, v, gammas));
        double WorstError(IReadOnlyList<double> chunkGammas)
        {
            using var decay = new ChunkDecay(chunkGammas, chunk, ScalarType.Float64);
            var chunked = OutputAndGradients(Forward(q, k, v, decay));
            return chunked.Zip(reference, (a, b) =>
                (a - b).abs().max().item<double>() / b.abs().max().item<double>()).Max();
        }

        var control = (double[])gammas.Clone();
        control[0] -= 1e-6;
        return (WorstError(gammas), WorstError(control));
    }
}
