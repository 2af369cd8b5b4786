namespace RetNet.Ilgpu.Devices;

/// <summary>
/// What the launch-geometry rules of the library read from a device: its class, its group limit and its warp size.
/// Kept apart from <see cref="RetNetDevice"/> so that the same rules can be evaluated for a device that is not present
/// (the static kernel report describes NVIDIA launches on a machine without a GPU).
/// </summary>
/// <param name="Class">The device's hardware family.</param>
/// <param name="MaxGroupSize">The largest number of threads per group.</param>
/// <param name="WarpSize">Threads that run in lock step.</param>
internal readonly record struct LaunchLimits(DeviceClass Class, int MaxGroupSize, int WarpSize)
{
    /// <summary>Every NVIDIA GPU from Kepler to Blackwell: groups of up to 1024 threads, warps of 32.</summary>
    public static LaunchLimits NvidiaGpu { get; } = new(DeviceClass.NvidiaGpu, 1024, 32);

    /// <summary>True for ILGPU's CPU accelerator, which gets barrier-free kernel forms.</summary>
    public bool IsCpuAccelerator => Class == DeviceClass.CpuAccelerator;
}
