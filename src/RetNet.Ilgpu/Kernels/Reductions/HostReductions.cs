using ILGPU.Runtime;
using RetNet.Ilgpu.Tensors;

namespace RetNet.Ilgpu.Kernels.Reductions;

/// <summary>
/// The <see cref="Devices.OperatorBackend.Host"/> implementation of the reductions: the two passes of the kernels over
/// the accelerator's host buffers, with fixed blocks of <see cref="Block"/> elements in place of groups. Each block is
/// reduced by one thread with the kernels' own <see cref="ReductionAccumulator{TOp}"/>, then the partials in order, so
/// the summation order (hence every bit of the result) does not depend on the number of cores.
/// </summary>
internal sealed unsafe class HostReductions : ReductionBackend
{
    // Elements per partial.
    private const int Block = 1 << 14;

    public static HostReductions Instance { get; } = new();

    /// <inheritdoc/>
    public override void Reduce<TFirst, TSecond>(IReadOnlyList<Tensor> inputs, Tensor result, float scale,
        ReductionLaunch launch)
    {
        HostSimd.Enter(result.Device, "The host reduction");
        var blocks = new List<(nint Address, int Length)>();
        foreach (var input in inputs)
        {
            var address = input.ReadView.LoadEffectiveAddressAsPtr();
            for (var start = 0; start < input.Length; start += Block)
                blocks.Add((address + start * sizeof(float), Math.Min(Block, input.Length - start)));
        }
        var partials = new float[Math.Max(blocks.Count, 1)];
        if (blocks.Count > 1)
            Parallel.For(0, blocks.Count, b => partials[b] = Accumulate<TFirst>((float*)blocks[b].Address, blocks[b].Length));
        else if (blocks.Count == 1)
            partials[0] = Accumulate<TFirst>((float*)blocks[0].Address, blocks[0].Length);
        fixed (float* p = partials)
            *HostSimd.Pointer(result) = Accumulate<TSecond>(p, blocks.Count) * scale;
    }

    private static float Accumulate<TOp>(float* input, int length) where TOp : struct, IReduction
    {
        var accumulator = default(ReductionAccumulator<TOp>);
        for (var i = 0; i < length; i++)
            accumulator.Add(input[i]);
        return accumulator.Result;
    }
}
