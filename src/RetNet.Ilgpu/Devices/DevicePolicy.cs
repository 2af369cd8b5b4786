using ILGPU.Runtime;
using ILGPU.Runtime.OpenCL;

namespace RetNet.Ilgpu.Devices;

/// <summary>The family of hardware a device belongs to, as far as kernel variants and launch shapes care.</summary>
public enum DeviceClass
{
    /// <summary>ILGPU's CPU accelerator (host execution or its simulator).</summary>
    CpuAccelerator,

    /// <summary>An NVIDIA GPU through CUDA.</summary>
    NvidiaGpu,

    /// <summary>An AMD GPU through OpenCL (wavefronts of 64 on GCN/CDNA, 32 or 64 on RDNA).</summary>
    AmdGpu,

    /// <summary>An Intel GPU through OpenCL (sub-groups of 8, 16 or 32).</summary>
    IntelGpu,

    /// <summary>Any other OpenCL device: an NVIDIA GPU through OpenCL, or a CPU runtime such as PoCL.</summary>
    OtherOpenCL,
}

/// <summary>
/// The one place that decides which kernel variant and which launch geometry a device gets. Operators ask it instead
/// of testing the device kind themselves, so the choices for a device class can be read (and tuned) side by side.
/// Partial: each operator family keeps its decisions in a file of its own beside this one.
/// </summary>
internal sealed partial class DevicePolicy
{
    public DevicePolicy(RetNetDevice device)
    {
        Device = device;
        Class = device.Description.Class;
        Backend = device.RunsOnHost ? OperatorBackend.Host
            : device.IsCpuSimulator ? OperatorBackend.BarrierFree
            : OperatorBackend.Tiled;
    }

    /// <summary>Which implementation of every operator the device runs: host code on the CPU accelerator in host
    /// execution, the barrier-free kernels on its simulator, tiled kernels on GPUs and other OpenCL devices.</summary>
    public OperatorBackend Backend { get; }

    /// <summary>The device the decisions are for.</summary>
    public RetNetDevice Device { get; }

    /// <summary>The device's hardware family.</summary>
    public DeviceClass Class { get; }

    /// <summary>The family of <paramref name="device"/>, known before it is opened.</summary>
    public static DeviceClass ClassOf(Device device) => device switch
    {
        { AcceleratorType: AcceleratorType.CPU } => DeviceClass.CpuAccelerator,
        { AcceleratorType: AcceleratorType.Cuda } => DeviceClass.NvidiaGpu,
        CLDevice cl when cl.DeviceType == CLDeviceType.CL_DEVICE_TYPE_GPU => cl.Vendor switch
        {
            CLDeviceVendor.AMD => DeviceClass.AmdGpu,
            CLDeviceVendor.Intel => DeviceClass.IntelGpu,
            _ => DeviceClass.OtherOpenCL,
        },
        _ => DeviceClass.OtherOpenCL,
    };
}
