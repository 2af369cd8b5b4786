using RetNet.Ilgpu.Kernels.Gemm;

namespace RetNet.Ilgpu.Devices;

/// <summary>The GEMM decisions: which tile the tiled kernel uses on each device class.</summary>
internal sealed partial class DevicePolicy
{
    /// <summary>The tile <see cref="Gemm"/>'s tiled variant launches on this device.</summary>
    public IGemmTile GemmTile => GemmTileFor(Class, Device.Description.IsGpu, Device.MaxGroupSize);

    /// <summary>
    /// The tile for a device of class <paramref name="deviceClass"/> whose groups hold at most
    /// <paramref name="maxGroupSize"/> threads: the class's preferred tile, or the largest that fits when the
    /// device's groups are smaller.
    /// </summary>
    /// <exception cref="NotSupportedException">Not even the smallest tile fits.</exception>
    public static IGemmTile GemmTileFor(DeviceClass deviceClass, bool isGpu, int maxGroupSize)
    {
        IGemmTile preferred = deviceClass switch
        {
            // 256 threads within 128 registers each: two groups (16 warps) per SM, 64 fused multiply-adds per four
            // 16-byte shared-memory loads.
            DeviceClass.NvidiaGpu => new GemmTile128x128(),
            // 256 threads are four 64-wide wavefronts; the same arithmetic per shared-memory load as on NVIDIA.
            DeviceClass.AmdGpu => new GemmTile128x128(),
            // Intel's compiler maps work-items to SIMD lanes and spills large per-lane register blocks at SIMD16 and
            // wider: a smaller group leaves it room to choose SIMD8.
            DeviceClass.IntelGpu => new GemmTile64x64(),
            // The simulator stops at 16 threads a group (Auto runs the host GEMM on the CPU accelerator anyway).
            DeviceClass.CpuAccelerator => new GemmTile32x32(),
            // An OpenCL CPU runtime (PoCL) keeps every value that lives across a barrier in memory, a slot per
            // work-item: 64 work-items' accumulators (16 KB) stay in the L1 cache, 256 work-items' do not, and the
            // 128×128 tile ran 7.6× slower than the 64×64 one there (docs/BENCHMARKS.md).
            _ => isGpu ? new GemmTile128x128() : new GemmTile64x64(),
        };
        return GemmTiles.Threads(preferred) <= maxGroupSize ? preferred : GemmTiles.Largest(maxGroupSize);
    }
}
