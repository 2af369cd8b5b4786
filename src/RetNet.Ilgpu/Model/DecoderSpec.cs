using RetNet.Ilgpu.Devices;

namespace RetNet.Ilgpu.Model;

/// <summary>
/// What the decoder shell needs to know of a config (docs/ARCHITECTURE.md): the sizes, the block's norm placement and
/// residual scale, the embedding's treatment, the checkpoint's names, and the token mixer. Every architecture is one of
/// these; nothing else about it is special to the shell.
/// </summary>
/// <param name="VocabSize">V.</param>
/// <param name="EmbedDim">d, the width of the residual stream.</param>
/// <param name="Layers">The number of blocks.</param>
/// <param name="FfnDim">The gated FFN's hidden width.</param>
/// <param name="LayerNormEps">eps of every RMSNorm.</param>
/// <param name="Gelu">The FFN's activation: exact GELU, else SiLU.</param>
/// <param name="EmbedScale">The factor of the token embeddings (√d or 1).</param>
/// <param name="ResidualScale">α, the factor of every residual (deepnorm's (2·layers)^(1/4), else 1).</param>
/// <param name="PreNorm">Pre-norm blocks and a final norm; else post-norm blocks and none.</param>
/// <param name="EmbeddingNorm">An RMSNorm right after the scaled embedding.</param>
/// <param name="TiedOutput">The output projection is the embedding table.</param>
/// <param name="Names">The checkpoint's parameter names.</param>
/// <param name="Mixer">The token mixer of every block.</param>
internal sealed record DecoderSpec(
    int VocabSize, int EmbedDim, int Layers, int FfnDim, double LayerNormEps, bool Gelu, float EmbedScale,
    float ResidualScale, bool PreNorm, bool EmbeddingNorm, bool TiedOutput, ParameterNames Names, MixerSpec Mixer)
{
    /// <summary>The widest activation row, for the 32-bit size checks of a pass.</summary>
    public int WidestRow => Math.Max(Math.Max(FfnDim, EmbedDim), Mixer.WidestRow);

    /// <summary>Every weight of the shell and its mixers, with its shape, in checkpoint order: the embedding, its norm,
    /// per block the mixer's weights, its norm, the FFN and its norm, then the final norm and the output projection
    /// (those present in this spec).</summary>
    public IReadOnlyList<(string Name, int[] Shape)> Weights()
    {
        int d = EmbedDim, f = FfnDim;
        var list = new List<(string, int[])> { (Names.Embedding, [VocabSize, d]) };
        if (EmbeddingNorm)
            list.Add((Names.EmbeddingNorm, [d]));
        for (var i = 0; i < Layers; i++)
        {
            var mixer = Names.Mixer(i, Mixer.Name);
            var ffn = Names.FeedForward(i);
            (string, int[])[] mixerWeights = [.. Mixer.LayerWeights().Select(w => (mixer + w.Suffix, w.Shape))];
            (string, int[])[] ffnWeights = [(ffn + Names.Fc1, [f, d]), (ffn + Names.Gate, [f, d]), (ffn + Names.Fc2, [d, f])];
            (string, int[]) mixerNorm = (Names.MixerNorm(i, Mixer.Name), [d]), ffnNorm = (Names.FeedForwardNorm(i), [d]);
            if (Names.NormsFirst)
                list.AddRange([mixerNorm, .. mixerWeights, ffnNorm, .. ffnWeights]);
            else
                list.AddRange([.. mixerWeights, mixerNorm, .. ffnWeights, ffnNorm]);
        }
        if (PreNorm)
            list.Add((Names.FinalNorm, [d]));
        if (!TiedOutput)
            list.Add((Names.Output, [VocabSize, d]));
        return list;
    }
}

/// <summary>
/// A checkpoint convention's parameter names. The shell reads every weight through these, so a convention from
/// another project is a new instance, not a new model class. <see cref="Torchscale"/> is the convention of
/// torchscale's RetNet, which the library's Transformer follows too; <see cref="Fla"/> that of fla's Hugging Face
/// RetNet.
/// </summary>
/// <param name="Embedding">The token embedding [V, d].</param>
/// <param name="EmbeddingNorm">The norm after the embedding [d].</param>
/// <param name="FinalNorm">The final norm [d].</param>
/// <param name="Output">The output projection [V, d].</param>
/// <param name="Fc1">The FFN's activated projection, within <see cref="FeedForward"/>.</param>
/// <param name="Gate">The FFN's gate projection, within <see cref="FeedForward"/>.</param>
/// <param name="Fc2">The FFN's output projection, within <see cref="FeedForward"/>.</param>
/// <param name="NormsFirst">The checkpoint lists each sublayer's norm before its weights (fla, the library's
/// Transformer); torchscale lists it after. The order is the optimiser's and the file's, so it is kept as the
/// checkpoint has it.</param>
internal sealed record ParameterNames(string Embedding, string EmbeddingNorm, string FinalNorm, string Output,
    string Fc1, string Gate, string Fc2, bool NormsFirst)
{
    /// <summary>torchscale's names: embed_tokens, layernorm_embedding, layers.i.{mixer}.*, layers.i.{mixer}_layer_norm,
    /// layers.i.ffn.{fc1,gate,fc2}, layers.i.final_layer_norm, layer_norm, output_projection.</summary>
    public static ParameterNames Torchscale { get; } = new("embed_tokens.weight", "layernorm_embedding.weight",
        "layer_norm.weight", "output_projection.weight", "fc1.weight", "gate.weight", "fc2.weight", NormsFirst: false);

    /// <summary>fla's names: model.embeddings, model.layers.i.attn_norm, model.layers.i.attn.*,
    /// model.layers.i.mlp_norm, model.layers.i.mlp.{gate,up,down}_proj, model.norm, lm_head. fla's FFN is
    /// down(silu(gate) ⊙ up): its gate_proj is the activated projection (fc1) and up_proj the linear one.</summary>
    public static ParameterNames Fla { get; } = new("model.embeddings.weight", "", "model.norm.weight",
        "lm_head.weight", "gate_proj.weight", "up_proj.weight", "down_proj.weight", NormsFirst: true)
    {
        LayerPrefix = "model.layers.", MixerSublayer = "attn", MixerNormName = "attn_norm.weight",
        FeedForwardSublayer = "mlp", FeedForwardNormName = "mlp_norm.weight",
    };

    /// <summary>What every block's names start with, before the block's index.</summary>
    public string LayerPrefix { get; init; } = "layers.";

    /// <summary>The mixer sublayer's name in a block; null: the mixer's own (retention, attention).</summary>
    public string? MixerSublayer { get; init; }

    /// <summary>The name of the norm in front of the mixer within a block; null: "{mixer}_layer_norm.weight".</summary>
    public string? MixerNormName { get; init; }

    /// <summary>The FFN sublayer's name in a block.</summary>
    public string FeedForwardSublayer { get; init; } = "ffn";

    /// <summary>The name of the norm in front of the FFN within a block.</summary>
    public string FeedForwardNormName { get; init; } = "final_layer_norm.weight";

    /// <summary>The prefix of block <paramref name="layer"/>'s mixer weights ("layers.i.retention.").</summary>
    public string Mixer(int layer, string mixer) => $"{LayerPrefix}{layer}.{MixerSublayer ?? mixer}.";

    /// <summary>The norm in front of block <paramref name="layer"/>'s mixer.</summary>
    public string MixerNorm(int layer, string mixer) =>
        $"{LayerPrefix}{layer}.{MixerNormName ?? mixer + "_layer_norm.weight"}";

    /// <summary>The prefix of block <paramref name="layer"/>'s FFN weights.</summary>
    public string FeedForward(int layer) => $"{LayerPrefix}{layer}.{FeedForwardSublayer}.";

    /// <summary>The norm in front of block <paramref name="layer"/>'s FFN.</summary>
    public string FeedForwardNorm(int layer) => $"{LayerPrefix}{layer}.{FeedForwardNormName}";
}

/// <summary>
/// A token mixer's description: its name (the checkpoint's sublayer name), its weights per block, and how to make its
/// device-side part for a model (<see cref="Open"/>).
/// </summary>
internal abstract class MixerSpec
{
    /// <summary>"retention" or "attention": the sublayer's name in the checkpoint.</summary>
    public abstract string Name { get; }

    /// <summary>The widest activation row the mixer writes.</summary>
    public abstract int WidestRow { get; }

    /// <summary>Each weight of one block's mixer: its name after the block's mixer prefix, and its shape.</summary>
    public abstract IEnumerable<(string Suffix, int[] Shape)> LayerWeights();

    /// <summary>The mixers of one model on <paramref name="device"/>: their shared constants (rotation angles, decay
    /// tables) and the factory of each block's mixer, activations and decoding state.</summary>
    public abstract MixerKind Open(RetNetDevice device);
}
