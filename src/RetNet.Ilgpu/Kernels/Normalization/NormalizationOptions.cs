using RetNet.Ilgpu.Devices;

namespace RetNet.Ilgpu.Kernels.Normalization;

/// <summary>How the row kernels of a normalisation are organised.</summary>
internal enum NormalizationForm
{
    /// <summary>One group per row, shared-memory tree reduction (the GPU form).</summary>
    GroupPerRow,

    /// <summary>One thread per row, no barriers (the CPU-simulator form, where a barrier round costs ~0.1 ms).</summary>
    ThreadPerRow,
}

/// <summary>
/// The launch configuration of a normalisation: the row-kernel form, its group size (a power of two, used by
/// <see cref="NormalizationForm.GroupPerRow"/>) and the rows per chunk of the first pass of the weight and bias
/// gradients. Library calls use <see cref="For(RetNetDevice, int)"/>; tests pass every configuration explicitly.
/// </summary>
internal readonly record struct NormalizationOptions(NormalizationForm Form, int GroupSize, int ChunkRows)
{
    /// <summary>
    /// The largest group the library asks for: enough threads to keep a row's loads wide, few enough that a row
    /// of a few hundred elements still gives each thread several of them.
    /// </summary>
    public const int PreferredGroupSize = 256;

    /// <summary>
    /// Rows summed by one thread in the first gradient pass: C = ⌈R / 32⌉ chunks give C·D threads, plenty for the
    /// GPU, while the second pass reads only C values per column.
    /// </summary>
    public const int DefaultChunkRows = 32;

    /// <summary>
    /// The configuration the library launches for rows of <paramref name="dim"/> elements: the barrier-free form on
    /// the CPU simulator; elsewhere one group per row, sized to the row (next power of two) up to
    /// <see cref="PreferredGroupSize"/> and the device limit.
    /// </summary>
    public static NormalizationOptions For(RetNetDevice device, int dim) => For(device.Limits, dim);

    /// <summary>The configuration <see cref="For(RetNetDevice, int)"/> gives a device with <paramref name="limits"/>.</summary>
    public static NormalizationOptions For(LaunchLimits limits, int dim)
    {
        if (limits.IsCpuAccelerator)
            return new NormalizationOptions(NormalizationForm.ThreadPerRow, 1, DefaultChunkRows);
        var rowFit = 1;
        while (rowFit < dim && rowFit < PreferredGroupSize)
            rowFit *= 2;
        return new NormalizationOptions(
            NormalizationForm.GroupPerRow, Launch.PowerOfTwoGroup(limits.MaxGroupSize, rowFit), DefaultChunkRows);
    }

    /// <summary>Rejects a group size that is not a power of two within the device limit, or chunks under one row.</summary>
    /// <exception cref="ArgumentOutOfRangeException">The configuration cannot be launched on <paramref name="device"/>.</exception>
    public void Validate(RetNetDevice device)
    {
        if (GroupSize < 1 || (GroupSize & (GroupSize - 1)) != 0 || GroupSize > device.MaxGroupSize)
            throw new ArgumentOutOfRangeException(nameof(GroupSize), GroupSize,
                $"Expected a power of two between 1 and the device's group limit {device.MaxGroupSize}.");
        if (ChunkRows < 1)
            throw new ArgumentOutOfRangeException(nameof(ChunkRows), ChunkRows, "Expected at least one row per chunk.");
    }
}
