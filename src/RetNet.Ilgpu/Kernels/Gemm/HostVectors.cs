using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using RetNet.Ilgpu.Tensors;

namespace RetNet.Ilgpu.Kernels.Gemm;

/// <summary>
/// The vector operations of the host micro-kernels (GEMM's register block, the unpacked small-row product, the
/// recurrent retention scan) over one vector width, so each micro-kernel is written once for AVX-512 and AVX2. The
/// implementations are empty structs whose static members the JIT resolves and inlines for each struct type argument,
/// so a kernel generic in <c>TOps</c> compiles to the code of one written for the width: the .NET 10 JIT emitted the
/// very same instructions for the generic GEMM register block, small-row product and recurrent scans as for the
/// AVX-512 and AVX2 copies they replaced (<c>DOTNET_JitDisasm</c>, with and without <c>DOTNET_EnableAVX512=0</c>).
/// </summary>
/// <typeparam name="TV">The vector type.</typeparam>
internal unsafe interface IVectorOps<TV> where TV : struct
{
    /// <summary>Floats per vector.</summary>
    static abstract int Count { get; }

    /// <summary>All lanes 0.</summary>
    static abstract TV Zero { get; }

    /// <summary>All lanes <paramref name="x"/>.</summary>
    static abstract TV Broadcast(float x);

    /// <summary><see cref="Count"/> floats from <paramref name="p"/>.</summary>
    static abstract TV Load(float* p);

    /// <summary><see cref="Count"/> elements of <typeparamref name="TE"/> storage from element
    /// <paramref name="index"/> at <paramref name="p"/>, widened to fp32.</summary>
    static abstract TV Load<TE>(nint p, nint index) where TE : struct, IElements;

    /// <summary>Writes <paramref name="v"/> to <paramref name="p"/>.</summary>
    static abstract void Store(TV v, float* p);

    /// <summary>a·b + c, rounded once per lane.</summary>
    static abstract TV Fma(TV a, TV b, TV c);

    /// <summary>a + b per lane.</summary>
    static abstract TV Add(TV a, TV b);

    /// <summary>a·b per lane.</summary>
    static abstract TV Multiply(TV a, TV b);

    /// <summary>The sum of the lanes (a fixed order for a given width).</summary>
    static abstract float Sum(TV v);

    /// <summary>
    /// [Sum(a), Sum(b), Sum(c), Sum(d)], each bit for bit <see cref="Sum"/>'s: the same tree of additions per vector,
    /// with four vectors reduced side by side (a transpose-add) instead of one horizontal sum each.
    /// </summary>
    static abstract Vector128<float> Sum4(TV a, TV b, TV c, TV d);

    /// <summary>a − b per lane.</summary>
    static abstract TV Subtract(TV a, TV b);

    /// <summary>a / b per lane, correctly rounded.</summary>
    static abstract TV Divide(TV a, TV b);

    /// <summary>|x| per lane.</summary>
    static abstract TV Abs(TV x);

    /// <summary>e^x per lane (.NET's vector exponential: within an ulp or so, NaN in gives NaN out, ±∞ and overflow
    /// give ∞ and 0). A lane's result depends on that lane alone.</summary>
    static abstract TV Exp(TV x);

    /// <summary>−value in the lanes where <paramref name="x"/> &lt; 0, else value (a NaN x counts as not negative).
    /// </summary>
    static abstract TV NegateWhereNegative(TV value, TV x);

    /// <summary>Lanes 2i and 2i + 1 exchanged: [x1, x0, x3, x2, …].</summary>
    static abstract TV SwapPairs(TV x);
}

/// <summary>Sixteen lanes (AVX-512).</summary>
internal readonly unsafe struct Vector512Ops : IVectorOps<Vector512<float>>
{
    public static int Count => 16;

    public static Vector512<float> Zero => Vector512<float>.Zero;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Broadcast(float x) => Vector512.Create(x);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Load(float* p) => Vector512.Load(p);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Load<TE>(nint p, nint index) where TE : struct, IElements => TE.Load512(p, index);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Store(Vector512<float> v, float* p) => Vector512.Store(v, p);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Fma(Vector512<float> a, Vector512<float> b, Vector512<float> c) =>
        Vector512.FusedMultiplyAdd(a, b, c);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Add(Vector512<float> a, Vector512<float> b) => a + b;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Multiply(Vector512<float> a, Vector512<float> b) => a * b;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Subtract(Vector512<float> a, Vector512<float> b) => a - b;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Divide(Vector512<float> a, Vector512<float> b) => a / b;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Abs(Vector512<float> x) => Vector512.Abs(x);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Exp(Vector512<float> x) => Vector512.Exp(x);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> NegateWhereNegative(Vector512<float> value, Vector512<float> x) =>
        Vector512.ConditionalSelect(Vector512.LessThan(x, Vector512<float>.Zero), -value, value);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> SwapPairs(Vector512<float> x) =>
        Avx512F.IsSupported
            ? Avx512F.Shuffle(x, x, 0b10_11_00_01)
            : Vector512.Shuffle(x, Vector512.Create(1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10, 13, 12, 15, 14));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Sum(Vector512<float> v) => Vector256Ops.Sum(v.GetLower() + v.GetUpper());

    /// <remarks>
    /// <see cref="Sum"/>'s tree is lane l + lane l+8, then l + l+4, then l + l+2, then lane 0 + lane 1. Here the
    /// first level pairs two vectors' halves ([a's 8 | b's 8]), the second takes 128-bit blocks of two such vectors
    /// ([a's 4 | b's 4 | c's 4 | d's 4]), and the last two add neighbours within each block, so every sum takes
    /// exactly <see cref="Sum"/>'s additions (addition commutes bit for bit; only the pairing matters).
    /// </remarks>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> Sum4(Vector512<float> a, Vector512<float> b, Vector512<float> c,
        Vector512<float> d)
    {
        var ab = Vector512.Create(a.GetLower(), b.GetLower()) + Vector512.Create(a.GetUpper(), b.GetUpper());
        var cd = Vector512.Create(c.GetLower(), d.GetLower()) + Vector512.Create(c.GetUpper(), d.GetUpper());
        Vector512<float> low, high;
        if (Avx512F.IsSupported)
        {
            low = Avx512F.Shuffle4x128(ab, cd, 0b10_00_10_00);
            high = Avx512F.Shuffle4x128(ab, cd, 0b11_01_11_01);
        }
        else
        {
            low = Vector512.Create(Vector256.Create(ab.GetLower().GetLower(), ab.GetUpper().GetLower()),
                Vector256.Create(cd.GetLower().GetLower(), cd.GetUpper().GetLower()));
            high = Vector512.Create(Vector256.Create(ab.GetLower().GetUpper(), ab.GetUpper().GetUpper()),
                Vector256.Create(cd.GetLower().GetUpper(), cd.GetUpper().GetUpper()));
        }
        var four = low + high;
        var two = four + Vector512.Shuffle(four, Vector512.Create(2, 3, 0, 1, 6, 7, 4, 5, 10, 11, 8, 9, 14, 15, 12, 13));
        var one = two + Vector512.Shuffle(two, Vector512.Create(1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10, 13, 12, 15, 14));
        return Vector512.Shuffle(one, Vector512.Create(0, 4, 8, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)).GetLower()
            .GetLower();
    }
}

/// <summary>Eight lanes (AVX2 with FMA).</summary>
internal readonly unsafe struct Vector256Ops : IVectorOps<Vector256<float>>
{
    public static int Count => 8;

    public static Vector256<float> Zero => Vector256<float>.Zero;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Broadcast(float x) => Vector256.Create(x);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Load(float* p) => Vector256.Load(p);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Load<TE>(nint p, nint index) where TE : struct, IElements => TE.Load256(p, index);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Store(Vector256<float> v, float* p) => Vector256.Store(v, p);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Fma(Vector256<float> a, Vector256<float> b, Vector256<float> c) =>
        Vector256.FusedMultiplyAdd(a, b, c);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Add(Vector256<float> a, Vector256<float> b) => a + b;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Multiply(Vector256<float> a, Vector256<float> b) => a * b;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Subtract(Vector256<float> a, Vector256<float> b) => a - b;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Divide(Vector256<float> a, Vector256<float> b) => a / b;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Abs(Vector256<float> x) => Vector256.Abs(x);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Exp(Vector256<float> x) => Vector256.Exp(x);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> NegateWhereNegative(Vector256<float> value, Vector256<float> x) =>
        Vector256.ConditionalSelect(Vector256.LessThan(x, Vector256<float>.Zero), -value, value);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> SwapPairs(Vector256<float> x) =>
        Avx.IsSupported ? Avx.Shuffle(x, x, 0b10_11_00_01) : Vector256.Shuffle(x, Vector256.Create(1, 0, 3, 2, 5, 4, 7, 6));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Sum(Vector256<float> v)
    {
        var four = v.GetLower() + v.GetUpper();
        var two = four + Vector128.Shuffle(four, Vector128.Create(2, 3, 0, 1));
        return two.ToScalar() + two.GetElement(1);
    }

    /// <summary>
    /// <see cref="Sum"/> of four vectors at once, bit for bit: the same pairs added in the same tree, with the four
    /// vectors' partial sums transposed into the lanes of one vector (SSE shuffles) instead of one scalar tree each —
    /// a fifth of the instructions, which at k = 64 were as many as the products'.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> Sum4(Vector256<float> a, Vector256<float> b, Vector256<float> c,
        Vector256<float> d)
    {
        if (!Sse.IsSupported)
            return Vector128.Create(Sum(a), Sum(b), Sum(c), Sum(d));
        // Per vector x: f = lower + upper, then (f0 + f2) + (f1 + f3), as Sum adds them.
        Vector128<float> fa = a.GetLower() + a.GetUpper(), fb = b.GetLower() + b.GetUpper();
        Vector128<float> fc = c.GetLower() + c.GetUpper(), fd = d.GetLower() + d.GetUpper();
        // [fa0 + fa2, fa1 + fa3, fb0 + fb2, fb1 + fb3], and the same for c and d.
        var ab = Sse.Shuffle(fa, fb, 0b01_00_01_00) + Sse.Shuffle(fa, fb, 0b11_10_11_10);
        var cd = Sse.Shuffle(fc, fd, 0b01_00_01_00) + Sse.Shuffle(fc, fd, 0b11_10_11_10);
        return Sse.Shuffle(ab, cd, 0b10_00_10_00) + Sse.Shuffle(ab, cd, 0b11_01_11_01);
    }
}

/// <summary>
/// How an operand's elements become fp32 as they load: scalars, or 16 and 8 consecutive elements from element
/// <c>index</c> of the storage at <c>p</c>. Struct type arguments let the JIT compile one copy of each loop per
/// storage type, with the conversion inlined and no branch per element. The loads are marked for inlining: fp16's
/// is too long for the inliner's default budget, and a call to it ran unoptimised (tier-0) code, 25× slower.
/// </summary>
internal interface IElements
{
    /// <summary>Bytes per stored element.</summary>
    static abstract int Size { get; }

    static abstract float Load(nint p, nint index);

    static abstract Vector512<float> Load512(nint p, nint index);

    static abstract Vector256<float> Load256(nint p, nint index);
}

internal readonly unsafe struct Float32Elements : IElements
{
    public static int Size => sizeof(float);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Load(nint p, nint index) => ((float*)p)[index];

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Load512(nint p, nint index) => Vector512.Load((float*)p + index);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Load256(nint p, nint index) => Vector256.Load((float*)p + index);
}

/// <summary>bfloat16 is fp32's upper half: zero-extend each element to 32 bits and shift it up.</summary>
internal readonly unsafe struct BFloat16Elements : IElements
{
    public static int Size => sizeof(ushort);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Load(nint p, nint index) => NarrowFloat.BFloat16ToSingle(((ushort*)p)[index]);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Load512(nint p, nint index) =>
        Vector512.ShiftLeft(Vector512.WidenLower(Vector256.Load((ushort*)p + index).ToVector512Unsafe()), 16)
            .AsSingle();

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Load256(nint p, nint index) =>
        Vector256.ShiftLeft(Vector256.WidenLower(Vector128.Load((ushort*)p + index).ToVector256Unsafe()), 16)
            .AsSingle();
}

/// <summary>
/// IEEE binary16 widened with integer vector operations (.NET exposes no F16C conversion): exponent and mantissa
/// shift into place and the exponent is rebiased by 112; ∞/NaN get a second 112 so their exponent is all ones;
/// zeros and subnormals are rebuilt as 2^-14·(1 + m/1024) − 2^-14 = m·2^-24, exact in fp32; the sign goes on last.
/// </summary>
internal readonly unsafe struct HalfElements : IElements
{
    // fp16's exponent field once the element has shifted up by 13 bits.
    private const uint ExponentMask = 0x1Fu << 23;
    private const uint Rebias = 112u << 23;

    public static int Size => sizeof(ushort);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Load(nint p, nint index) => NarrowFloat.HalfToSingle(((ushort*)p)[index]);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Load512(nint p, nint index)
    {
        var h = Vector512.WidenLower(Vector256.Load((ushort*)p + index).ToVector512Unsafe());
        var o = (h & Vector512.Create(0x7FFFu)) << 13;
        var exponent = o & Vector512.Create(ExponentMask);
        o += Vector512.Create(Rebias);
        o += Vector512.Equals(exponent, Vector512.Create(ExponentMask)) & Vector512.Create(Rebias);
        var tiny = Vector512.Equals(exponent, Vector512<uint>.Zero);
        o += tiny & Vector512.Create(1u << 23);
        var f = o.AsSingle();
        f = Vector512.ConditionalSelect(tiny.AsSingle(), f - Vector512.Create(1f / 16384), f);
        return (f.AsUInt32() | ((h & Vector512.Create(0x8000u)) << 16)).AsSingle();
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Load256(nint p, nint index)
    {
        var h = Vector256.WidenLower(Vector128.Load((ushort*)p + index).ToVector256Unsafe());
        var o = (h & Vector256.Create(0x7FFFu)) << 13;
        var exponent = o & Vector256.Create(ExponentMask);
        o += Vector256.Create(Rebias);
        o += Vector256.Equals(exponent, Vector256.Create(ExponentMask)) & Vector256.Create(Rebias);
        var tiny = Vector256.Equals(exponent, Vector256<uint>.Zero);
        o += tiny & Vector256.Create(1u << 23);
        var f = o.AsSingle();
        f = Vector256.ConditionalSelect(tiny.AsSingle(), f - Vector256.Create(1f / 16384), f);
        return (f.AsUInt32() | ((h & Vector256.Create(0x8000u)) << 16)).AsSingle();
    }
}
