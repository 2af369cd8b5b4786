namespace RetNet.Ilgpu.Kernels;

/// <summary>
/// What the double-precision references of retention and attention share: q, k [B, T, H, Dk] and v [B, T, H, Dv]
/// widened to double, the row-major index arithmetic of that layout, and the vector helpers of their loops.
/// </summary>
internal abstract class ReferenceHeads
{
    private readonly int seqLen;
    private readonly int heads;
    private readonly int keyDim;
    private readonly int valueDim;

    /// <summary>Widens q, k and v; their lengths must be B·T·H·Dk, B·T·H·Dk and B·T·H·Dv.</summary>
    /// <exception cref="ArgumentNullException">An operand is null.</exception>
    /// <exception cref="ArgumentException">An operand's length differs.</exception>
    protected ReferenceHeads(int batch, int seqLen, int heads, int keyDim, int valueDim, IReadOnlyList<float> q,
        IReadOnlyList<float> k, IReadOnlyList<float> v)
    {
        this.seqLen = seqLen;
        this.heads = heads;
        this.keyDim = keyDim;
        this.valueDim = valueDim;
        Q = Values(q ?? throw new ArgumentNullException(nameof(q)), batch * seqLen * heads * keyDim, nameof(q));
        K = Values(k ?? throw new ArgumentNullException(nameof(k)), batch * seqLen * heads * keyDim, nameof(k));
        V = Values(v ?? throw new ArgumentNullException(nameof(v)), batch * seqLen * heads * valueDim, nameof(v));
    }

    /// <summary>q in double.</summary>
    public double[] Q { get; }

    /// <summary>k in double.</summary>
    public double[] K { get; }

    /// <summary>v in double.</summary>
    public double[] V { get; }

    /// <summary>The first element of q or k at (b, t, h).</summary>
    public int KeyIndex(int b, int t, int h) => ((b * seqLen + t) * heads + h) * keyDim;

    /// <summary>The first element of v or o at (b, t, h).</summary>
    public int ValueIndex(int b, int t, int h) => ((b * seqLen + t) * heads + h) * valueDim;

    /// <summary>Σ_i a[aStart + i]·b[bStart + i] for i &lt; <paramref name="length"/>.</summary>
    public static double Dot(double[] a, int aStart, double[] b, int bStart, int length)
    {
        var sum = 0.0;
        for (var i = 0; i < length; i++)
            sum += a[aStart + i] * b[bStart + i];
        return sum;
    }

    /// <summary>y[yStart + i] += alpha·x[xStart + i] for i &lt; <paramref name="length"/>.</summary>
    public static void Axpy(double alpha, double[] x, int xStart, double[] y, int yStart, int length)
    {
        for (var i = 0; i < length; i++)
            y[yStart + i] += alpha * x[xStart + i];
    }

    /// <summary><paramref name="values"/> widened to double, or <paramref name="length"/> zeros when null.</summary>
    /// <exception cref="ArgumentException">The values are not <paramref name="length"/> long; names
    /// <paramref name="argument"/>.</exception>
    public static double[] Values(IReadOnlyList<float>? values, int length, string argument)
    {
        if (values is null)
            return new double[length];
        if (values.Count != length)
            throw new ArgumentException(
                $"Argument '{argument}' has {values.Count} elements; expected {length}.", argument);
        var result = new double[length];
        for (var i = 0; i < length; i++)
            result[i] = values[i];
        return result;
    }
}
