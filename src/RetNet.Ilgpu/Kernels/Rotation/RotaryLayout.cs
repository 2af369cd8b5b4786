namespace RetNet.Ilgpu.Kernels.Rotation;

/// <summary>
/// Which elements of a head row the rotation pairs up, and which angle table it uses (docs/MATH.md §5).
/// </summary>
public enum RotaryLayout
{
    /// <summary>torchscale's theta shift: interleaved pairs (2i, 2i+1), θ_i = 10000^(−linspace(0, 1, Dk/2)_i).</summary>
    Interleaved,

    /// <summary>GPT-NeoX's rotary embedding, which fla's RetNet uses: pairs (i, i + Dk/2) ("rotate_half"),
    /// θ_i = 10000^(−2i/Dk).</summary>
    Halves,
}
