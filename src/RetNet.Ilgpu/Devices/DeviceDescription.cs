namespace RetNet.Ilgpu.Devices;

/// <summary>What the library knows of one accelerator before it is opened.</summary>
/// <param name="Name">The device's name as its driver reports it.</param>
/// <param name="Kind">Cuda, OpenCL or Cpu.</param>
/// <param name="MemoryBytes">Device memory in bytes.</param>
/// <param name="WarpSize">Threads that run in lock step (32 on NVIDIA, 64 on most AMD; never hard-coded).</param>
/// <param name="MaxGroupSize">The largest number of threads per group.</param>
/// <param name="IsGpu">False for the CPU accelerator and for OpenCL CPU devices.</param>
/// <param name="Class">The hardware family the library chooses kernel variants and launch shapes for.</param>
public sealed record DeviceDescription(
    string Name, DeviceKind Kind, long MemoryBytes, int WarpSize, int MaxGroupSize, bool IsGpu, DeviceClass Class);
