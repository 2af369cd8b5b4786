using RetNet.Ilgpu.Kernels.Gemm;

namespace RetNet.Ilgpu.Verification.Cases;

/// <summary>
/// One GEMM problem, C = alpha·op(A)·op(B) + beta·C, as <c>retnet verify</c> and the tests state it: which operands
/// carry a batch dimension (a rank-2 operand against a batched one is broadcast), and the alpha and beta to apply.
/// With beta = 0, C starts as NaN garbage that must not leak through.
/// </summary>
/// <param name="Batch">Entries of the batched operand(s); 1 when neither is batched.</param>
/// <param name="M">Rows of op(A) and C.</param>
/// <param name="N">Columns of op(B) and C.</param>
/// <param name="K">The inner dimension.</param>
/// <param name="BatchedA">Whether A has a batch dimension.</param>
/// <param name="BatchedB">Whether B has a batch dimension.</param>
/// <param name="Alpha">The product's factor.</param>
/// <param name="Beta">C's factor; 0 ignores C's previous values.</param>
public sealed record GemmCase(int Batch, int M, int N, int K, bool BatchedA, bool BatchedB, float Alpha = 1f,
    float Beta = 0f)
{
    /// <summary>The shape with the given transpositions.</summary>
    public GemmShape Shape(bool transposeA, bool transposeB) =>
        new(Batch, M, N, K, transposeA, transposeB,
            BroadcastA: !BatchedA && BatchedB, BroadcastB: BatchedA && !BatchedB);

    /// <summary>Tensor dimensions of A, B and C for <paramref name="shape"/>.</summary>
    public (int[] A, int[] B, int[] C) Dims(GemmShape shape)
    {
        int[] a = shape.TransposeA ? [K, M] : [M, K];
        int[] b = shape.TransposeB ? [N, K] : [K, N];
        int[] c = [M, N];
        return (BatchedA ? [Batch, .. a] : a, BatchedB ? [Batch, .. b] : b, BatchedA || BatchedB ? [Batch, .. c] : c);
    }

    /// <summary>A (seed) and B (seed + 1) uniform in [−1, 1); C (seed + 2) too when beta ≠ 0, else NaN everywhere.</summary>
    public (float[] A, float[] B, float[] C) Inputs(GemmShape shape, int seed)
    {
        var c = Beta != 0f
            ? CaseInputs.Uniform(seed + 2, shape.ElementsC)
            : Enumerable.Repeat(float.NaN, shape.ElementsC).ToArray();
        return (CaseInputs.Uniform(seed, shape.ElementsA), CaseInputs.Uniform(seed + 1, shape.ElementsB), c);
    }
}
