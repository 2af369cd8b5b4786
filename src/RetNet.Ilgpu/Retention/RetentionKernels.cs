using ILGPU;
using ILGPU.Algorithms;

namespace RetNet.Ilgpu.Retention;

/// <summary>
/// The shared-memory tile of the tiled retention kernels, fixed at compile time (static shared memory needs constant
/// sizes). The group size is not part of it: threads stride over the tile, so any group size runs any tile.
/// </summary>
internal interface IRetentionTile
{
    /// <summary>Tokens per tile: query rows, key rows, and the token rows of a state update.</summary>
    int Rows { get; }

    /// <summary>Slice of the contracted dimension (Dk for scores, the state's rows) held at once.</summary>
    int Depth { get; }

    /// <summary>Output columns per group (the dv-tile).</summary>
    int Columns { get; }
}

/// <summary>16 tokens × 16 deep × 16 columns: for narrow heads (≤ 16 output columns); 6 KB of shared memory.</summary>
internal readonly struct RetentionTile16 : IRetentionTile
{
    public int Rows => 16;
    public int Depth => 16;
    public int Columns => 16;
}

/// <summary>32 tokens × 16 deep × 64 columns: for ordinary heads; 28 KB of shared memory.</summary>
internal readonly struct RetentionTile32x64 : IRetentionTile
{
    public int Rows => 32;
    public int Depth => 16;
    public int Columns => 64;
}

/// <summary>
/// The decayed causal product both the parallel and the chunkwise forms are made of. For every row r of a window of
/// tokens (the whole sequence for the parallel form, one chunk for the chunkwise form):
/// <code>
///   forward:  out_r = γ^(r−start+1) x_r S_w  + Σ_{start ≤ c ≤ r} γ^(r−c) (x_r·y_c) z_c
///   reverse:  out_r = γ^(end−1−r)   x_r S_w  + Σ_{r ≤ c &lt; end}  γ^(c−r) (x_r·y_c) z_c
/// </code>
/// with x, y [B, T, H, RowDim], z, out [B, T, H, OutDim] and S_w the window's state, a [RowDim, OutDim] matrix read
/// with the given strides (so a stored [Dk, Dv] state can be read transposed). The output is o (forward: q, k, v, S),
/// dq (forward: dO, v, k, Sᵀ), dk (reverse: v, dO, q, dSᵀ) or dv (reverse: k, q, dO, dS).
/// </summary>
internal struct CausalProblem
{
    public int Heads;
    public int SeqLen;
    public int RowDim;
    public int OutDim;

    /// <summary>Window length C (≤ T); the last window may be shorter.</summary>
    public int ChunkSize;

    /// <summary>Windows per sequence, ⌈T / C⌉; states are stored [B, H, ChunkCount, RowDim·OutDim].</summary>
    public int ChunkCount;

    public int StateRowStride;
    public int StateColStride;

    /// <summary>1 when a state term is added, 0 when there is no state (the state view is then a placeholder).</summary>
    public int HasState;

    /// <summary>1 for the anti-causal (reverse) product of the backward pass.</summary>
    public int Reverse;

    /// <summary>1 when documents are packed (<see cref="RetentionKernels.DocumentStart"/>): a row sees only the keys of
    /// its own document, and a window state only where the row's document reaches past the window.</summary>
    public int HasBounds;
}

/// <summary>
/// The chunk-state walk. Per (b, h), a [RowDim, ColDim] matrix S runs over the chunks:
/// <code>
///   forward (states):          S_(c+1) = γ^n S_c + Σ_{j&lt;n} γ^(n−1−j) x_jᵀ y_j   (x = k, y = v; S_0 = initial)
///   reverse (state gradients): G_c     = γ^n G_(c+1) + Σ_{j&lt;n} γ^(j+1) x_jᵀ y_j (x = q, y = dO; G_last+1 = dS_T)
/// </code>
/// j counting tokens of the chunk from its start and n its length. It writes, when asked, the matrix entering every
/// chunk in walk order (forward: S_c; reverse: the gradient leaving chunk c) and the final one (S_T or dS_0).
/// </summary>
internal struct StateProblem
{
    public int Heads;
    public int SeqLen;
    public int RowDim;
    public int ColDim;
    public int ChunkSize;
    public int ChunkCount;
    public int HasInitial;
    public int WriteChunkStates;
    public int WriteFinal;
    public int Reverse;

    /// <summary>1 when documents are packed: a chunk's tokens before the document that holds its last token (forward;
    /// after the document of the token before the chunk, in reverse) are left out, and the matrix is carried across
    /// the chunk only when no document starts inside it.</summary>
    public int HasBounds;
}

/// <summary>Sizes of the recurrent scan.</summary>
internal struct RecurrentProblem
{
    public int Heads;
    public int SeqLen;
    public int KeyDim;
    public int ValueDim;

    /// <summary>1 when documents are packed: the state restarts from zeros at every document start after
    /// token 0.</summary>
    public int HasBounds;
}

/// <summary>
/// Device code of retention. Every kernel reads the decay table [2, H] = [log γ_h ; γ_h − 1] (computed in double on the
/// host): decays are exp((log γ)·m) with m ≥ 0, a masked pair is zeroed by index, never by an infinite exponent, and the
/// recurrent scan multiplies by γ = exp(log γ) (the γ − 1 row serves the decay normalisation's sums). Sums in fp32.
/// </summary>
internal static partial class RetentionKernels
{
    /// <summary>γ^m for m ≥ 0 from log γ: underflows to 0 for long distances, never overflows.</summary>
    internal static float Decay(float logGamma, int m) => XMath.Exp(logGamma * m);

    /// <summary>
    /// The first token (within its row of T) of the document that holds token <paramref name="token"/> = b·T + t of a
    /// packed batch; 0 without bounds. Bounds are [B·T, 2] = (start, end) per token (<see cref="PackedSequences"/>).
    /// </summary>
    private static int DocumentStart(ArrayView<int> bounds, int hasBounds, int token) =>
        hasBounds != 0 ? bounds[2 * token] : 0;

    /// <summary>One past the last token (within its row) of the document that holds <paramref name="token"/>; T
    /// without bounds.</summary>
    private static int DocumentEnd(ArrayView<int> bounds, int hasBounds, int token, int seqLen) =>
        hasBounds != 0 ? bounds[2 * token + 1] : seqLen;

    /// <summary>
    /// Whether row t reads the state of its window [start, end) (forward: the state entering it; reverse: the
    /// gradient leaving it): forward when t's document began before the window, or at token 0 (the initial state
    /// belongs to each row's first document); reverse when t's document runs past the window, or to T (the final
    /// state belongs to each row's last document). Always true without bounds.
    /// </summary>
    internal static bool ReadsWindowState(bool reverse, int documentBound, int start, int end, int seqLen) =>
        reverse ? documentBound > IntrinsicMath.Min(end, seqLen - 1) : documentBound < IntrinsicMath.Max(start, 1);

    /// <summary>
    /// The token of chunk [start, end) whose document a state walk keeps: forward the chunk's last token (the state
    /// leaving the chunk is that document's), in reverse the token before the chunk (the gradient entering it is that
    /// document's; token 0 for the first chunk, whose initial state belongs to the row's first document).
    /// </summary>
    internal static int WalkedToken(bool reverse, int start, int end) =>
        reverse ? IntrinsicMath.Max(start - 1, 0) : end - 1;

    /// <summary>Whether the walk carries its matrix across chunk [start, end), given the start (forward) or end
    /// (reverse) of the document of <see cref="WalkedToken"/>: only when that document also holds the token before the
    /// chunk (forward) or the chunk's last token (reverse).</summary>
    internal static bool CarriesAcrossChunk(bool reverse, int documentBound, int start, int end) =>
        reverse ? documentBound >= end : documentBound < IntrinsicMath.Max(start, 1);

    /// <summary>Whether <paramref name="token"/> of the chunk belongs to the walked document (see
    /// <see cref="WalkedToken"/>).</summary>
    internal static bool InWalkedDocument(bool reverse, int documentBound, int token) =>
        reverse ? token < documentBound : token >= documentBound;
}
