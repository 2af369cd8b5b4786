namespace RetNet.Ilgpu.Devices;

/// <summary>
/// What the launch-geometry and variant rules of the library read from a device: its class, its group limit, its
/// warp (sub-group) size, whether it runs sub-group operations and whether it is an OpenCL CPU runtime. Kept apart
/// from <see cref="RetNetDevice"/> so that the same rules can be evaluated for a device that is not present (the
/// static kernel report describes NVIDIA launches on a machine without a GPU).
/// </summary>
/// <param name="Class">The device's hardware family.</param>
/// <param name="MaxGroupSize">The largest number of threads per group.</param>
/// <param name="WarpSize">Threads that run in lock step (the sub-group size an OpenCL device reports).</param>
/// <param name="SupportsSubGroups">True when ILGPU's warp reductions compile and run on the device (see
/// <see cref="RetNetDevice.Limits"/> for how a live device answers).</param>
/// <param name="IsOpenClCpu">True for an OpenCL device that is a CPU (PoCL), where GPU-shaped choices do not fit.</param>
internal readonly record struct LaunchLimits(DeviceClass Class, int MaxGroupSize, int WarpSize,
    bool SupportsSubGroups, bool IsOpenClCpu)
{
    /// <summary>Every NVIDIA GPU from Kepler to Blackwell through CUDA: groups of up to 1024 threads, warps of 32, warp
    /// shuffles always available.</summary>
    public static LaunchLimits NvidiaGpu { get; } =
        new(DeviceClass.NvidiaGpu, 1024, 32, SupportsSubGroups: true, IsOpenClCpu: false);

    /// <summary>True for ILGPU's CPU accelerator, which gets barrier-free kernel forms.</summary>
    public bool IsCpuAccelerator => Class == DeviceClass.CpuAccelerator;

    /// <summary>True for a device whose sub-groups are always full warps (CUDA, and the CPU accelerator's emulated
    /// warps); an OpenCL sub-group may instead shrink to a smaller work-group.</summary>
    public bool HasFixedWarps => Class is DeviceClass.NvidiaGpu or DeviceClass.CpuAccelerator;
}
