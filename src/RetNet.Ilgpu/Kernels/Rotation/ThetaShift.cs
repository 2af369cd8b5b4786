using System.Runtime.InteropServices;
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
    /// The kernel's rotation as host code (host execution): the kernel's arithmetic on every head's pair with the
    /// kernel's cosine and sine of each (sequence, token, pair) angle, so the bits are the kernel's. A decoding step
    /// rotates the queries and keys of every layer at the same positions with the same angles, so the cosines and
    /// sines are kept per thread (<see cref="RotationTable"/>) and computed again only when the positions or the
    /// angles differ from the last call's.
    /// </summary>
    private static unsafe void HostRotate(Tensor x, IndexTensor starts, Tensor angles, RotationProblem p)
    {
        var data = HostSimd.Pointer(x);
        var start = (int*)starts.View.LoadEffectiveAddressAsPtr();
        var angle = (float*)angles.ReadView.LoadEffectiveAddressAsPtr();
        var half = p.HeadDim / 2;
        var rows = x.Dim(0) * p.SeqLen;
        var table = RotationTable.For(start, p.SeqLen, rows, angle, half);
        fixed (float* cosines = table.Cosines, sines = table.Sines)
        {
            for (var bt = 0; bt < rows; bt++)
            {
                for (var i = 0; i < half; i++)
                {
                    var c = cosines[(nint)bt * half + i];
                    var s = sines[(nint)bt * half + i];
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
    }

    /// <summary>
    /// The last host rotation's cosines and sines on this thread, [rows, Dk/2], with the positions and angles they
    /// were computed from: a call whose positions and angles are equal reuses them (their bits are what the
    /// computation would give again); any difference recomputes. Buffers only grow, so a steady decoding step
    /// allocates nothing.
    /// </summary>
    private sealed class RotationTable
    {
        [ThreadStatic] private static RotationTable? current;

        private int[] positions = [];
        private float[] angles = [];
        private int rows;
        private int half;

        public float[] Cosines { get; private set; } = [];

        public float[] Sines { get; private set; } = [];

        public static unsafe RotationTable For(int* starts, int seqLen, int rows, float* angles, int half)
        {
            var table = current ??= new RotationTable();
            if (!table.Matches(starts, seqLen, rows, angles, half))
                table.Compute(starts, seqLen, rows, angles, half);
            return table;
        }

        private unsafe bool Matches(int* starts, int seqLen, int rows, float* angles, int half)
        {
            if (rows != this.rows || half != this.half)
                return false;
            // Angles compared by bits, so a NaN angle never matches and −0 differs from 0.
            if (!new ReadOnlySpan<int>((int*)angles, half).SequenceEqual(
                    MemoryMarshal.Cast<float, int>(this.angles.AsSpan(0, half))))
                return false;
            for (var bt = 0; bt < rows; bt++)
            {
                var b = bt / seqLen;
                if (positions[bt] != starts[b] + (bt - b * seqLen))
                    return false;
            }
            return true;
        }

        private unsafe void Compute(int* starts, int seqLen, int rows, float* angles, int half)
        {
            if (positions.Length < rows)
                positions = new int[rows];
            if (this.angles.Length < half)
                this.angles = new float[half];
            if (Cosines.Length < rows * half)
                (Cosines, Sines) = (new float[rows * half], new float[rows * half]);
            (this.rows, this.half) = (0, 0);
            new ReadOnlySpan<float>(angles, half).CopyTo(this.angles);
            for (var bt = 0; bt < rows; bt++)
            {
                var b = bt / seqLen;
                var position = starts[b] + (bt - b * seqLen);
                positions[bt] = position;
                for (var i = 0; i < half; i++)
                {
                    var a = position * angles[i];
                    Cosines[bt * half + i] = XMath.Cos(a);
                    Sines[bt * half + i] = XMath.Sin(a);
                }
            }
            (this.rows, this.half) = (rows, half);
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
