using static TorchSharp.torch;
using static TorchSharp.torch.nn.functional;

namespace TorchSharpBench;

/// <summary>
/// The recurrent decode step of our <c>small</c> preset written with torch operators: d 128, value dim 256, 2 heads
/// (d_h 64 for keys, 128 for values), 2 pre-norm layers, gated swish FFN 256, vocabulary 256, RMSNorm eps 1e-6,
/// embeddings ×√d, untied output, no biases; random weights (normal with std 1/√fan-in, norm weights 1), float32.
/// The step runs under no_grad and keeps one retention state S [B, H, d_h, d_v] per layer.
/// </summary>
internal sealed class RetNetDecoder : IDisposable
{
    public const int EmbedDim = 128, ValueDim = 256, Heads = 2, Layers = 2, FfnDim = 256, Vocab = 256;
    private const double Eps = 1e-6;
    private const int KeyHeadDim = EmbedDim / Heads, ValueHeadDim = ValueDim / Heads;

    private readonly int _batch;
    private readonly double[] _gammas = ChunkDecay.TorchscaleGammas(Heads);
    private readonly Tensor _gammaTable;
    private readonly Tensor _theta;
    private readonly Tensor _embedding, _finalNorm, _output;
    private readonly Layer[] _layers;
    private readonly List<Tensor> _owned = [];

    private sealed record Layer(Tensor RetentionNorm, Tensor Q, Tensor K, Tensor V, Tensor G, Tensor Out,
        Tensor FfnNorm, Tensor Fc1, Tensor Gate, Tensor Fc2, Tensor State);

    public RetNetDecoder(int batch, int seed)
    {
        _batch = batch;
        manual_seed(seed);
        Tensor Own(Tensor t)
        {
            _owned.Add(t);
            return t;
        }
        Tensor Linear(int outputs, int inputs) => Own(randn(outputs, inputs) / Math.Sqrt(inputs));
        Tensor Norm() => Own(ones(EmbedDim));

        _gammaTable = Own(tensor(_gammas, [Heads, 1, 1], ScalarType.Float32));
        // θ_i = 1 / 10000^(i / (d_h/2 − 1)), i < d_h/2: torchscale's linspace(0, 1, d_h/2) exponents.
        var half = KeyHeadDim / 2;
        _theta = Own(tensor(Enumerable.Range(0, half).Select(i => 1 / Math.Pow(10000, i / (double)(half - 1))).ToArray(),
            [half], ScalarType.Float32));
        _embedding = Own(randn(Vocab, EmbedDim));
        _layers = Enumerable.Range(0, Layers).Select(_ => new Layer(Norm(),
            Linear(EmbedDim, EmbedDim), Linear(EmbedDim, EmbedDim), Linear(ValueDim, EmbedDim), Linear(ValueDim, EmbedDim),
            Linear(EmbedDim, ValueDim), Norm(), Linear(FfnDim, EmbedDim), Linear(FfnDim, EmbedDim), Linear(EmbedDim, FfnDim),
            Own(zeros(batch, Heads, KeyHeadDim, ValueHeadDim)))).ToArray();
        _finalNorm = Norm();
        _output = Linear(Vocab, EmbedDim);
    }

    /// <summary>The position of the next token; every sequence of the batch is at the same one.</summary>
    public int Position { get; private set; }

    /// <summary>
    /// Feeds one token per sequence at <see cref="Position"/> and returns the logits [B, vocab] copied to the host.
    /// </summary>
    public float[] Step(long[] tokens)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var x = _embedding.index_select(0, tensor(tokens)) * Math.Sqrt(EmbedDim); // [B, d]
        var angles = _theta * Position;
        var cos = angles.cos().repeat_interleave(2);
        var sin = angles.sin().repeat_interleave(2);
        // The head norm takes eps·s_t, s_t = Σ_{j≤t} γ^j = (1 − γ^(t+1)) / (1 − γ): the state is not divided by √s_t
        // (torchscale's scaled recurrence), and y / √(mean(y²) + eps·s_t) with y = √s_t·ŷ is exactly
        // ŷ / √(mean(ŷ²) + eps), so the output is torchscale's. RetNet.Ilgpu's step does the same.
        var headEps = tensor(_gammas.Select(g => Eps * (1 - Math.Pow(g, Position + 1)) / (1 - g)).ToArray(),
            [Heads, 1], ScalarType.Float32);
        foreach (var layer in _layers)
        {
            var h = RmsNorm(x, layer.RetentionNorm, Eps);
            var q = Rotate(linear(h, layer.Q).view(_batch, Heads, KeyHeadDim), cos, sin);
            var k = Rotate(linear(h, layer.K).view(_batch, Heads, KeyHeadDim), cos, sin) * (1 / Math.Sqrt(KeyHeadDim));
            var v = linear(h, layer.V).view(_batch, Heads, ValueHeadDim);
            var g = linear(h, layer.G);
            layer.State.mul_(_gammaTable).add_(k.unsqueeze(-1) * v.unsqueeze(-2)); // S ← γS + kᵀv
            var o = matmul(q.unsqueeze(-2), layer.State).squeeze(-2); // [B, H, d_v]
            o = o * rsqrt(o.pow(2).mean([-1], keepdim: true) + headEps);
            x = x + linear(o.reshape(_batch, ValueDim) * silu(g), layer.Out);
            h = RmsNorm(x, layer.FfnNorm, Eps);
            x = x + linear(silu(linear(h, layer.Fc1)) * linear(h, layer.Gate), layer.Fc2);
        }
        var logits = linear(RmsNorm(x, _finalNorm, Eps), _output);
        Position++;
        return logits.data<float>().ToArray();
    }

    /// <summary>Floating-point operations of one step per sequence (a multiply-add counts 2): the projections
    /// q, k, v, g, out, FFN fc1, gate, fc2 of every layer, the state update and o = qS, and the logits.</summary>
    public static double FlopsPerToken()
    {
        double projections = 2.0 * EmbedDim * (2 * EmbedDim + 3 * ValueDim) + 2.0 * EmbedDim * FfnDim * 3;
        double state = 2 * 2.0 * Heads * KeyHeadDim * ValueHeadDim;
        return Layers * (projections + state) + 2.0 * EmbedDim * Vocab;
    }

    /// <summary>Rotates the interleaved pairs (2i, 2i+1) of x [B, H, d_h] by the angles whose cos and sin (each
    /// repeated for both members of a pair) are given: torchscale's theta_shift.</summary>
    private static Tensor Rotate(Tensor x, Tensor cos, Tensor sin)
    {
        var pairs = x.reshape(x.shape[0], x.shape[1], KeyHeadDim / 2, 2);
        var turned = stack([-pairs.select(-1, 1), pairs.select(-1, 0)], -1).flatten(-2);
        return x * cos + turned * sin;
    }

    private static Tensor RmsNorm(Tensor x, Tensor weight, double eps) =>
        x * rsqrt(x.pow(2).mean([-1], keepdim: true) + eps) * weight;

    public void Dispose()
    {
        foreach (var t in _owned)
            t.Dispose();
    }
}
