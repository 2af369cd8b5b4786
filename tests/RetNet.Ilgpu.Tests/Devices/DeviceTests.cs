using RetNet.Ilgpu.Devices;
using RetNet.Ilgpu.Tensors;
using RetNet.Ilgpu.Tests.Support;

namespace RetNet.Ilgpu.Tests.Devices;

[Collection(DeviceCollection.Name)]
public sealed class DeviceTests(DeviceFixture fixture)
{
    [Fact]
    public void Shared_fixture_runs_on_the_device_RETNET_DEVICE_names()
    {
        var requested = DeviceKinds.ResolveFromEnvironment(DeviceKind.Auto);
        if (requested != DeviceKind.Auto)
            Assert.Equal(requested, fixture.Device.Kind);
        else
            Assert.Equal(RetNetDevice.AutoChoice(), fixture.Device.Kind);
    }

    [Fact]
    public void Device_kinds_parse_and_unknown_names_are_rejected()
    {
        Assert.Equal(DeviceKind.Cuda, DeviceKinds.Parse("CUDA"));
        Assert.Equal(DeviceKind.OpenCL, DeviceKinds.Parse("opencl"));
        Assert.Equal(DeviceKind.Cpu, DeviceKinds.Parse(" cpu "));
        Assert.Equal(DeviceKind.Auto, DeviceKinds.Parse("auto"));
        var error = Assert.Throws<ArgumentException>(() => DeviceKinds.Parse("tpu", "device"));
        Assert.Equal("device", error.ParamName);
        Assert.Contains("auto, cuda, opencl, cpu", error.Message);
    }

    [Fact]
    public void Listing_includes_the_cpu_accelerator()
    {
        Assert.Contains(RetNetDevice.List(), d => d.Kind == DeviceKind.Cpu);
    }

    [FactWhenADeviceKindIsAbsent]
    public void Asking_for_an_absent_kind_lists_what_is_present()
    {
        var absent = DeviceFacts.AbsentKind!.Value;
        var error = Assert.Throws<InvalidOperationException>(() => RetNetDevice.Open(absent));
        Assert.Contains($"No {absent} device", error.Message);
        Assert.Contains("Cpu:", error.Message);
    }

    [Fact]
    public void Memory_accounting_tracks_current_and_peak_bytes()
    {
        var memory = fixture.Device.Memory;
        var before = memory.CurrentBytes;
        memory.ResetPeak();
        using (Tensor.Zeros(fixture.Device, 1000))
        {
            using (Tensor.Zeros(fixture.Device, 500))
                Assert.Equal(before + 6000, memory.CurrentBytes);
            Assert.Equal(before + 4000, memory.CurrentBytes);
        }
        Assert.Equal(before, memory.CurrentBytes);
        Assert.Equal(before + 6000, memory.PeakBytes);
        memory.ResetPeak();
        Assert.Equal(before, memory.PeakBytes);
    }
}
