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
    public void Shared_fixture_runs_the_cpu_execution_RETNET_CPU_EXECUTION_names()
    {
        var device = fixture.Device;
        if (!device.IsCpuSimulator)
        {
            Assert.Equal(CpuExecution.Auto, device.CpuExecution);
            return;
        }
        Assert.Equal(CpuExecutions.Resolve(CpuExecution.Auto), device.CpuExecution);
        Assert.Equal(device.CpuExecution == CpuExecution.Host, device.RunsOnHost);
    }

    [Fact]
    public void Cpu_executions_parse_and_an_explicit_choice_overrides_the_environment()
    {
        Assert.Equal(CpuExecution.Host, CpuExecutions.Parse(" HOST "));
        Assert.Equal(CpuExecution.Simulator, CpuExecutions.Parse("simulator"));
        Assert.Equal(CpuExecution.Auto, CpuExecutions.Parse("auto"));
        Assert.Equal(CpuExecution.Simulator, CpuExecutions.Resolve(CpuExecution.Simulator));
        Assert.Equal(CpuExecution.Host, CpuExecutions.Resolve(CpuExecution.Host));
        var error = Assert.Throws<ArgumentException>(() => CpuExecutions.Parse("gpu", "execution"));
        Assert.Equal("execution", error.ParamName);
        Assert.Contains("auto, host or simulator", error.Message);

        foreach (var execution in new[] { CpuExecution.Host, CpuExecution.Simulator })
        {
            using var device = RetNetDevice.Open(DeviceKind.Cpu, execution);
            Assert.Equal(execution, device.CpuExecution);
        }
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

    [Fact]
    public void Every_listed_device_has_the_class_of_its_kind_and_the_open_device_keeps_it()
    {
        foreach (var d in RetNetDevice.List())
        {
            var expected = d.Kind switch
            {
                DeviceKind.Cpu => [DeviceClass.CpuAccelerator],
                DeviceKind.Cuda => [DeviceClass.NvidiaGpu],
                // An OpenCL GPU is AMD, Intel or another vendor's; an OpenCL CPU runtime (PoCL) is never a GPU class.
                _ => d.IsGpu
                    ? new[] { DeviceClass.AmdGpu, DeviceClass.IntelGpu, DeviceClass.OtherOpenCL }
                    : [DeviceClass.OtherOpenCL],
            };
            Assert.Contains(d.Class, expected);
        }
        Assert.Equal(fixture.Device.Description.Class, fixture.Device.Policy.Class);
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
