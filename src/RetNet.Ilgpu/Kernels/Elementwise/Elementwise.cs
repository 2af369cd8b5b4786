using RetNet.Ilgpu.Tensors;

namespace RetNet.Ilgpu.Kernels.Elementwise;

/// <summary>
/// Elementwise operations on same-shaped tensors, forward and backward. Outputs may be an input itself (in place) but
/// not a shifted view of one.
/// </summary>
public static class Elementwise
{
    /// <summary>output = a + b. The backward of a sum passes the output gradient to both inputs unchanged.</summary>
    public static void Add(Tensor a, Tensor b, Tensor output) => Zip<AddOp>(a, nameof(a), b, nameof(b), output);

    /// <summary>output = alpha · a + b (a residual scaled by alpha, as deepnorm does). Gradients: alpha · dOutput for
    /// a, dOutput for b.</summary>
    public static void ScaleAdd(Tensor a, float alpha, Tensor b, Tensor output)
    {
        if (!float.IsFinite(alpha))
            throw new ArgumentOutOfRangeException(nameof(alpha), alpha, "Expected a finite scale factor.");
        Zip<ScaleAddOp>(a, nameof(a), b, nameof(b), output, parameter: alpha);
    }

    /// <summary>output = a ⊙ b.</summary>
    public static void Multiply(Tensor a, Tensor b, Tensor output) =>
        Zip<MultiplyOp>(a, nameof(a), b, nameof(b), output);

    /// <summary>Gradients of <see cref="Multiply"/>: da = dOutput ⊙ b, db = dOutput ⊙ a.</summary>
    public static void MultiplyBackward(Tensor a, Tensor b, Tensor dOutput, Tensor da, Tensor db)
    {
        ShapeCheck.Same(b, nameof(b), a, nameof(a));
        ShapeCheck.Same(da, nameof(da), a, nameof(a));
        ShapeCheck.Same(db, nameof(db), a, nameof(a));
        // da is written before db is computed from a: da must not alias a.
        ShapeCheck.Distinct(da, nameof(da), a, nameof(a));
        ShapeCheck.Distinct(da, nameof(da), dOutput, nameof(dOutput));
        Zip<MultiplyOp>(dOutput, nameof(dOutput), b, nameof(b), da);
        Zip<MultiplyOp>(dOutput, nameof(dOutput), a, nameof(a), db);
    }

    /// <summary>output = alpha · x. Its backward is the same operation on the output gradient.</summary>
    public static void Scale(Tensor x, float alpha, Tensor output)
    {
        if (!float.IsFinite(alpha))
            throw new ArgumentOutOfRangeException(nameof(alpha), alpha, "Expected a finite scale factor.");
        Map<ScaleOp>(x, output, alpha);
    }

    /// <summary>output = x·σ(x) (SiLU, swish).</summary>
    public static void Silu(Tensor x, Tensor output) => Map<SiluOp>(x, output, 0f);

    /// <summary>dx = dOutput · d/dx SiLU(x).</summary>
    public static void SiluBackward(Tensor x, Tensor dOutput, Tensor dx) =>
        Zip<SiluBackwardOp>(x, nameof(x), dOutput, nameof(dOutput), dx, nameof(dx));

    /// <summary>output = x·Φ(x) (exact GELU with erf).</summary>
    public static void Gelu(Tensor x, Tensor output) => Map<GeluOp>(x, output, 0f);

    /// <summary>dx = dOutput · (Φ(x) + x·φ(x)).</summary>
    public static void GeluBackward(Tensor x, Tensor dOutput, Tensor dx) =>
        Zip<GeluBackwardOp>(x, nameof(x), dOutput, nameof(dOutput), dx, nameof(dx));

    private static void Map<TOp>(Tensor x, Tensor output, float parameter) where TOp : struct, IUnaryOp
    {
        ArgumentNullException.ThrowIfNull(x);
        ArgumentNullException.ThrowIfNull(output);
        ShapeCheck.SameDevice(x.Device, nameof(output), output);
        ShapeCheck.Same(output, nameof(output), x, nameof(x));
        ShapeCheck.DistinctOrSame(output, nameof(output), x, nameof(x));
        if (x.Length == 0)
            return;
        x.Device.Backend<ElementwiseLaunch>().Map<TOp>(x, output, parameter);
    }

    private static void Zip<TOp>(Tensor a, string aName, Tensor b, string bName, Tensor output,
        string outputName = "output", float parameter = 0f) where TOp : struct, IBinaryOp
    {
        ArgumentNullException.ThrowIfNull(a, aName);
        ArgumentNullException.ThrowIfNull(b, bName);
        ArgumentNullException.ThrowIfNull(output, outputName);
        ShapeCheck.SameDevice(a.Device, bName, b);
        ShapeCheck.SameDevice(a.Device, outputName, output);
        ShapeCheck.Same(b, bName, a, aName);
        ShapeCheck.Same(output, outputName, a, aName);
        ShapeCheck.DistinctOrSame(output, outputName, a, aName);
        ShapeCheck.DistinctOrSame(output, outputName, b, bName);
        if (a.Length == 0)
            return;
        a.Device.Backend<ElementwiseLaunch>().Zip<TOp>(a, b, output, parameter);
    }
}
