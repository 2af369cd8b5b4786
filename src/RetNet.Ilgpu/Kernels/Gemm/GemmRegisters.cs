using ILGPU;

namespace RetNet.Ilgpu.Kernels.Gemm;

/// <summary>
/// Four consecutive floats moved as one 16-byte value. A quad in shared memory starts at a multiple of 4 floats, so
/// ILGPU's PTX backend reads and writes it with one vector instruction (<c>ld.shared.v4.f32</c>) instead of four.
/// </summary>
internal struct Float4
{
    public float X;
    public float Y;
    public float Z;
    public float W;

    public Float4(float x, float y, float z, float w)
    {
        X = x;
        Y = y;
        Z = z;
        W = w;
    }
}

/// <summary>
/// One thread's 8×8 block of C: rows {lo..lo+3, hi..hi+3} × columns {lo..lo+3, hi..hi+3} of the group's tile
/// (see <see cref="GemmOutput"/>). Sixty-four named fields rather than an array: ILGPU 1.5.3 does not turn an array
/// indexed by a loop counter into registers, so an array would live in (slow) local memory on CUDA, while fields
/// accessed by name become registers.
/// </summary>
internal struct RegisterBlock
{
    /// <summary>Rows of C one thread owns.</summary>
    public const int Rows = 8;

    /// <summary>Columns of C one thread owns.</summary>
    public const int Columns = 8;

    private float c00, c01, c02, c03, c04, c05, c06, c07, c10, c11, c12, c13, c14, c15, c16, c17,
        c20, c21, c22, c23, c24, c25, c26, c27, c30, c31, c32, c33, c34, c35, c36, c37,
        c40, c41, c42, c43, c44, c45, c46, c47, c50, c51, c52, c53, c54, c55, c56, c57,
        c60, c61, c62, c63, c64, c65, c66, c67, c70, c71, c72, c73, c74, c75, c76, c77;

    /// <summary>
    /// Adds the outer product of 8 values of a column of op(A) (two quads) and 8 values of a row of op(B): 64 fused
    /// multiply-adds for 4 shared-memory loads.
    /// </summary>
    public void MultiplyAdd(Float4 aLo, Float4 aHi, Float4 bLo, Float4 bHi)
    {
        c00 += aLo.X * bLo.X;
        c01 += aLo.X * bLo.Y;
        c02 += aLo.X * bLo.Z;
        c03 += aLo.X * bLo.W;
        c04 += aLo.X * bHi.X;
        c05 += aLo.X * bHi.Y;
        c06 += aLo.X * bHi.Z;
        c07 += aLo.X * bHi.W;
        c10 += aLo.Y * bLo.X;
        c11 += aLo.Y * bLo.Y;
        c12 += aLo.Y * bLo.Z;
        c13 += aLo.Y * bLo.W;
        c14 += aLo.Y * bHi.X;
        c15 += aLo.Y * bHi.Y;
        c16 += aLo.Y * bHi.Z;
        c17 += aLo.Y * bHi.W;
        c20 += aLo.Z * bLo.X;
        c21 += aLo.Z * bLo.Y;
        c22 += aLo.Z * bLo.Z;
        c23 += aLo.Z * bLo.W;
        c24 += aLo.Z * bHi.X;
        c25 += aLo.Z * bHi.Y;
        c26 += aLo.Z * bHi.Z;
        c27 += aLo.Z * bHi.W;
        c30 += aLo.W * bLo.X;
        c31 += aLo.W * bLo.Y;
        c32 += aLo.W * bLo.Z;
        c33 += aLo.W * bLo.W;
        c34 += aLo.W * bHi.X;
        c35 += aLo.W * bHi.Y;
        c36 += aLo.W * bHi.Z;
        c37 += aLo.W * bHi.W;
        c40 += aHi.X * bLo.X;
        c41 += aHi.X * bLo.Y;
        c42 += aHi.X * bLo.Z;
        c43 += aHi.X * bLo.W;
        c44 += aHi.X * bHi.X;
        c45 += aHi.X * bHi.Y;
        c46 += aHi.X * bHi.Z;
        c47 += aHi.X * bHi.W;
        c50 += aHi.Y * bLo.X;
        c51 += aHi.Y * bLo.Y;
        c52 += aHi.Y * bLo.Z;
        c53 += aHi.Y * bLo.W;
        c54 += aHi.Y * bHi.X;
        c55 += aHi.Y * bHi.Y;
        c56 += aHi.Y * bHi.Z;
        c57 += aHi.Y * bHi.W;
        c60 += aHi.Z * bLo.X;
        c61 += aHi.Z * bLo.Y;
        c62 += aHi.Z * bLo.Z;
        c63 += aHi.Z * bLo.W;
        c64 += aHi.Z * bHi.X;
        c65 += aHi.Z * bHi.Y;
        c66 += aHi.Z * bHi.Z;
        c67 += aHi.Z * bHi.W;
        c70 += aHi.W * bLo.X;
        c71 += aHi.W * bLo.Y;
        c72 += aHi.W * bLo.Z;
        c73 += aHi.W * bLo.W;
        c74 += aHi.W * bHi.X;
        c75 += aHi.W * bHi.Y;
        c76 += aHi.W * bHi.Z;
        c77 += aHi.W * bHi.W;
    }

    /// <summary>Writes the block through <paramref name="output"/>, one row of 8 at a time.</summary>
    public readonly void Store(ArrayView<float> c, in GemmOutput output)
    {
        output.Row(c, 0, c00, c01, c02, c03, c04, c05, c06, c07);
        output.Row(c, 1, c10, c11, c12, c13, c14, c15, c16, c17);
        output.Row(c, 2, c20, c21, c22, c23, c24, c25, c26, c27);
        output.Row(c, 3, c30, c31, c32, c33, c34, c35, c36, c37);
        output.Row(c, 4, c40, c41, c42, c43, c44, c45, c46, c47);
        output.Row(c, 5, c50, c51, c52, c53, c54, c55, c56, c57);
        output.Row(c, 6, c60, c61, c62, c63, c64, c65, c66, c67);
        output.Row(c, 7, c70, c71, c72, c73, c74, c75, c76, c77);
    }
}

/// <summary>
/// Where a thread's <see cref="RegisterBlock"/> lands in C, and the alpha, beta to apply. The block's first four rows
/// start at <see cref="RowLo"/>, the last four at <see cref="RowHi"/> (half a tile further), likewise for columns:
/// with that split a thread's quads in shared memory sit a fixed distance apart and neighbouring threads read
/// neighbouring quads.
/// </summary>
internal readonly struct GemmOutput
{
    public GemmOutput(int baseIndex, int rowLo, int rowHi, int colLo, int colHi, in GemmArguments args)
    {
        BaseIndex = baseIndex;
        RowLo = rowLo;
        RowHi = rowHi;
        ColLo = colLo;
        ColHi = colHi;
        M = args.M;
        N = args.N;
        Alpha = args.Alpha;
        Beta = args.Beta;
    }

    public readonly int BaseIndex;
    public readonly int RowLo;
    public readonly int RowHi;
    public readonly int ColLo;
    public readonly int ColHi;
    public readonly int M;
    public readonly int N;
    public readonly float Alpha;
    public readonly float Beta;

    /// <summary>Stores row <paramref name="row"/> (0..7) of a block; rows and columns outside C are skipped.</summary>
    public void Row(ArrayView<float> c, int row, float v0, float v1, float v2, float v3, float v4, float v5,
        float v6, float v7)
    {
        var m = row < 4 ? RowLo + row : RowHi + row - 4;
        if (m >= M)
            return;
        var rowStart = BaseIndex + m * N;
        Quad(c, rowStart, ColLo, v0, v1, v2, v3);
        Quad(c, rowStart, ColHi, v4, v5, v6, v7);
    }

    private void Quad(ArrayView<float> c, int rowStart, int column, float v0, float v1, float v2, float v3)
    {
        Element(c, rowStart, column, v0);
        Element(c, rowStart, column + 1, v1);
        Element(c, rowStart, column + 2, v2);
        Element(c, rowStart, column + 3, v3);
    }

    // With beta = 0 the old C is never read, so an uninitialised output (even NaN) cannot leak into the result.
    private void Element(ArrayView<float> c, int rowStart, int column, float sum)
    {
        if (column >= N)
            return;
        var i = rowStart + column;
        c[i] = Beta == 0f ? Alpha * sum : Alpha * sum + Beta * c[i];
    }
}
