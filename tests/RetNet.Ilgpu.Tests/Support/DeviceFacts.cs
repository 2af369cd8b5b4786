using RetNet.Ilgpu.Devices;

namespace RetNet.Ilgpu.Tests.Support;

/// <summary>What this machine's accelerators allow a test to exercise, decided once per test run.</summary>
public static class DeviceFacts
{
    private static readonly Lazy<DeviceKind?> Absent = new(() =>
    {
        var present = RetNetDevice.List().Select(d => d.Kind).ToHashSet();
        return new[] { DeviceKind.Cuda, DeviceKind.OpenCL }.Cast<DeviceKind?>().FirstOrDefault(k => !present.Contains(k!.Value));
    });

    /// <summary>A GPU kind (CUDA, then OpenCL) with no device on this machine, or null when both are present.</summary>
    public static DeviceKind? AbsentKind => Absent.Value;
}

/// <summary>
/// A fact that needs a device kind this machine lacks. On a machine with both CUDA and OpenCL devices it is skipped,
/// and the skip shows in the test summary and in TRX files; xunit 2 decides skips at discovery, hence the attribute.
/// </summary>
public sealed class FactWhenADeviceKindIsAbsentAttribute : FactAttribute
{
    /// <summary>Sets <see cref="FactAttribute.Skip"/> when no kind is absent.</summary>
    public FactWhenADeviceKindIsAbsentAttribute()
    {
        if (DeviceFacts.AbsentKind is null)
            Skip = "CUDA and OpenCL devices are both present: no device kind is absent to ask for.";
    }
}
