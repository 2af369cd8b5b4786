using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Runtime;
using RetNet.Ilgpu.Kernels.Gemm;
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
    /// <paramref name="hostLoop"/> is false (the public overload, so tests and retnet verify reach the kernel), in
    /// vectors of <paramref name="hostPath"/> (tests force each; the widest by default).</summary>
    internal static void Apply(Tensor x, IndexTensor starts, Tensor angles, float scale, RotaryLayout layout,
        bool hostLoop = true, HostGemmPath hostPath = HostGemmPath.Auto)
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
            HostRotate(x, starts, angles, problem, hostPath == HostGemmPath.Auto ? HostGemm.Best : hostPath);
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
    /// <remarks>
    /// In vectors, each lane takes the kernel's operations: scale·(x0·c − x1·s) and scale·(x1·c + x0·s). With halves
    /// the pairs' first and second elements are contiguous runs, so that is written as it reads; with interleaved
    /// pairs a vector holds whole pairs, and both results come at once as scale·(x·c₂ + swap(x)·s₂), c₂ each cosine
    /// twice and s₂ = (−s, s) per pair (<see cref="RotationTable.PairCosines"/>): x0·c + x1·(−s) is x0·c − x1·s
    /// exactly, since a product's rounding is symmetric in sign and a − b is a + (−b). Pairs past the last whole
    /// vector take the scalar loop.
    /// </remarks>
    private static unsafe void HostRotate(Tensor x, IndexTensor starts, Tensor angles, RotationProblem p,
        HostGemmPath path)
    {
        var data = HostSimd.Pointer(x);
        var start = (int*)starts.View.LoadEffectiveAddressAsPtr();
        var angle = (float*)angles.ReadView.LoadEffectiveAddressAsPtr();
        var half = p.HeadDim / 2;
        var rows = x.Dim(0) * p.SeqLen;
        var table = RotationTable.For(start, p.SeqLen, rows, angle, half);
        fixed (float* cosines = table.Cosines, sines = table.Sines, pairCosines = table.PairCosines,
               pairSines = table.PairSines)
        {
            var t = new Tables(cosines, sines, pairCosines, pairSines);
            switch (path)
            {
                case HostGemmPath.Vector512:
                    Rotate<Vector512<float>, Vector512Ops>(data, rows, t, p);
                    break;
                case HostGemmPath.Vector256:
                    Rotate<Vector256<float>, Vector256Ops>(data, rows, t, p);
                    break;
                default:
                    for (var bt = 0; bt < rows; bt++)
                        for (var h = 0; h < p.Heads; h++)
                            RotatePairs(data + ((nint)bt * p.Heads + h) * p.HeadDim, cosines + (nint)bt * half,
                                sines + (nint)bt * half, 0, half, p);
                    break;
            }
        }
    }

    /// <summary>A rotation table's arrays, pinned.</summary>
    private readonly unsafe struct Tables(float* cosines, float* sines, float* pairCosines, float* pairSines)
    {
        public readonly float* Cosines = cosines, Sines = sines, PairCosines = pairCosines, PairSines = pairSines;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static unsafe void Rotate<TV, TOps>(float* data, int rows, Tables t, RotationProblem p)
        where TV : struct
        where TOps : struct, IVectorOps<TV>
    {
        var (w, half, scale) = (TOps.Count, p.HeadDim / 2, TOps.Broadcast(p.Scale));
        var interleaved = p.PairStride == 2 && p.PairOffset == 1;
        var halves = p.PairStride == 1 && p.PairOffset == half;
        for (var bt = 0; bt < rows; bt++)
        {
            float* cosines = t.Cosines + (nint)bt * half, sines = t.Sines + (nint)bt * half;
            for (var h = 0; h < p.Heads; h++)
            {
                var row = data + ((nint)bt * p.Heads + h) * p.HeadDim;
                var done = 0;
                if (interleaved)
                {
                    float* c2 = t.PairCosines + (nint)bt * p.HeadDim, s2 = t.PairSines + (nint)bt * p.HeadDim;
                    var j = 0;
                    for (; j + w <= p.HeadDim; j += w)
                    {
                        var v = TOps.Load(row + j);
                        var turned = TOps.Add(TOps.Multiply(v, TOps.Load(c2 + j)),
                            TOps.Multiply(TOps.SwapPairs(v), TOps.Load(s2 + j)));
                        TOps.Store(TOps.Multiply(scale, turned), row + j);
                    }
                    done = j / 2;
                }
                else if (halves)
                {
                    for (; done + w <= half; done += w)
                    {
                        var (x0, x1) = (TOps.Load(row + done), TOps.Load(row + half + done));
                        var (c, s) = (TOps.Load(cosines + done), TOps.Load(sines + done));
                        TOps.Store(TOps.Multiply(scale, TOps.Subtract(TOps.Multiply(x0, c), TOps.Multiply(x1, s))),
                            row + done);
                        TOps.Store(TOps.Multiply(scale, TOps.Add(TOps.Multiply(x1, c), TOps.Multiply(x0, s))),
                            row + half + done);
                    }
                }
                RotatePairs(row, cosines, sines, done, half, p);
            }
        }
    }

    /// <summary>Pairs <paramref name="from"/> … <paramref name="to"/> − 1 of one head row, the kernel's scalar
    /// operations.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe void RotatePairs(float* row, float* cosines, float* sines, int from, int to,
        RotationProblem p)
    {
        for (var i = from; i < to; i++)
        {
            var (c, s) = (cosines[i], sines[i]);
            var at = i * p.PairStride;
            var x0 = row[at];
            var x1 = row[at + p.PairOffset];
            row[at] = p.Scale * (x0 * c - x1 * s);
            row[at + p.PairOffset] = p.Scale * (x1 * c + x0 * s);
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

        /// <summary>[rows, Dk]: each cosine twice, for interleaved pairs in vectors.</summary>
        public float[] PairCosines { get; private set; } = [];

        /// <summary>[rows, Dk]: (−sine, sine) per pair, for interleaved pairs in vectors.</summary>
        public float[] PairSines { get; private set; } = [];

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
                (Cosines, Sines, PairCosines, PairSines) =
                    (new float[rows * half], new float[rows * half], new float[rows * 2 * half], new float[rows * 2 * half]);
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
                    var (c, s) = (XMath.Cos(a), XMath.Sin(a));
                    (Cosines[bt * half + i], Sines[bt * half + i]) = (c, s);
                    (PairCosines[2 * (bt * half + i)], PairCosines[2 * (bt * half + i) + 1]) = (c, c);
                    (PairSines[2 * (bt * half + i)], PairSines[2 * (bt * half + i) + 1]) = (-s, s);
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
