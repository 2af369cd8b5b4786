using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Runtime;
using RetNet.Ilgpu.Tensors;

namespace RetNet.Ilgpu.Kernels.Rotation;

/// <summary>
/// The rotation of queries and keys at absolute positions (docs/MATH.md §5): torchscale's "theta shift" (for head
/// dimension Dk, angle_i = 10000^(−linspace(0, 1, Dk/2)_i), linspace including 1, on interleaved pairs (2i, 2i+1)) or
/// GPT-NeoX's rotary embedding (angle_i = 10000^(−2i/Dk) on pairs (i, i + Dk/2)); each pair of a head row at
/// position p becomes (x0 cos pθ_i − x1 sin pθ_i, x1 cos pθ_i + x0 sin pθ_i). Positions
/// are per sequence: token t of sequence b sits at starts[b] + t, so a batch may continue prompts of different
/// lengths. An optional factor scales the result (the keys' Dk^(−1/2)). The angle p·θ is formed in fp32, as torchscale
/// does; at position 4096 its rounding is ~2e-4 rad.
/// </summary>
public static class ThetaShift
{
    /// <summary>The angles of <paramref name="layout"/> (<see cref="RotationReference.Angles"/>) for i = 0 … Dk/2 − 1,
    /// computed in double and rounded once.</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="headDim"/> is not a positive even number.</exception>
    public static float[] Angles(int headDim, RotaryLayout layout = RotaryLayout.Interleaved, double theta = 10000) =>
        RotationReference.Angles(headDim, layout, theta).Select(a => (float)a).ToArray();

    /// <summary>Rotates x [B, T, H, Dk] in place, token t of sequence b at position startPositions[b] + t, and
    /// multiplies by <paramref name="scale"/>.</summary>
    /// <exception cref="ArgumentException">x is not rank 4, Dk is odd, or the start count is not B; a start is negative.</exception>
    public static void Apply(Tensor x, IReadOnlyList<int> startPositions, float scale = 1f,
        RotaryLayout layout = RotaryLayout.Interleaved)
    {
        ArgumentNullException.ThrowIfNull(x);
        ArgumentNullException.ThrowIfNull(startPositions);
        Validate(x, startPositions.Count);
        if (startPositions.Any(s => s < 0))
            throw new ArgumentException("Argument 'startPositions' holds a negative position.", nameof(startPositions));
        using var angles = Tensor.FromHost(x.Device, Angles(x.Dim(3), layout), x.Dim(3) / 2);
        using var starts = IndexTensor.FromHost(x.Device, startPositions.ToArray(), startPositions.Count);
        Apply(x, starts, angles, scale, layout, hostLoop: false);
        x.Device.Synchronize();
    }

    /// <summary>The model's launch: one start position per sequence in <paramref name="starts"/> [B], angles [Dk/2]
    /// from <see cref="Angles"/> of the same <paramref name="layout"/>. In host execution it runs as host code unless
    /// <paramref name="hostLoop"/> is false (the public overload, so tests and retnet verify reach the kernel).</summary>
    internal static void Apply(Tensor x, IndexTensor starts, Tensor angles, float scale, RotaryLayout layout,
        bool hostLoop = true)
    {
        Validate(x, starts.Length);
        if (x.Length == 0)
            return;
        var device = x.Device;
        var (stride, offset) = RotationReference.Pairs(layout, x.Dim(3));
        var problem = new RotationProblem
        {
            SeqLen = x.Dim(1), Heads = x.Dim(2), HeadDim = x.Dim(3), Scale = scale, PairStride = stride,
            PairOffset = offset,
        };
        if (hostLoop && device.RunsOnHost)
        {
            HostSimd.Enter(device, "the host rotation", requireHostExecution: true);
            HostRotate(x, starts, angles, problem);
            return;
        }
        var kernel = device.Kernel(RotationKernels.ThetaShift, accelerator =>
            accelerator.LoadAutoGroupedKernel<Index1D, ArrayView<float>, ArrayView<int>, ArrayView<float>,
                RotationProblem, Spread>(RotationKernels.ThetaShift));
        var spread = Launch.Spread(device, x.Length / 2);
        kernel(device.Stream, spread.Threads, x.View, starts.View, angles.View, problem, spread);
    }

    /// <summary>
    /// The kernel's rotation as host code (host execution): each (sequence, token, pair) angle's cosine and sine once
    /// for all heads, which share them, then the kernel's arithmetic on every head's pair, so the bits are the kernel's.
    /// </summary>
    private static unsafe void HostRotate(Tensor x, IndexTensor starts, Tensor angles, RotationProblem p)
    {
        var data = HostSimd.Pointer(x);
        var start = (int*)starts.View.LoadEffectiveAddressAsPtr();
        var angle = (float*)angles.ReadView.LoadEffectiveAddressAsPtr();
        var half = p.HeadDim / 2;
        var rows = x.Dim(0) * p.SeqLen;
        for (var bt = 0; bt < rows; bt++)
        {
            var b = bt / p.SeqLen;
            var position = start[b] + (bt - b * p.SeqLen);
            for (var i = 0; i < half; i++)
            {
                var a = position * angle[i];
                var c = XMath.Cos(a);
                var s = XMath.Sin(a);
                for (var h = 0; h < p.Heads; h++)
                {
                    var at = ((nint)bt * p.Heads + h) * p.HeadDim + i * p.PairStride;
                    var x0 = data[at];
                    var x1 = data[at + p.PairOffset];
                    data[at] = p.Scale * (x0 * c - x1 * s);
                    data[at + p.PairOffset] = p.Scale * (x1 * c + x0 * s);
                }
            }
        }
    }

    private static void Validate(Tensor x, int starts)
    {
        ShapeCheck.Rank(x, nameof(x), 4);
        if (x.Dim(3) % 2 != 0)
            throw new ArgumentException(
                $"Argument 'x' has shape {ShapeCheck.Format(x.Shape)}; expected an even head dimension Dk.", nameof(x));
        if (starts != x.Dim(0))
            throw new ArgumentException(
                $"Argument 'startPositions' has {starts} values; expected one per sequence ({x.Dim(0)}).",
                "startPositions");
    }
}
