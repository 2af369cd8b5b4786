namespace RetNet.Ilgpu.Tests.Support;

/// <summary>
/// A CPU accelerator for the host SIMD code (GEMM, retention and attention), which runs only over the CPU accelerator's
/// host memory: on the CPU lane the test device itself, on another lane a CPU accelerator opened once, so every lane
/// holds the host code to the same checks.
/// </summary>
public sealed class HostCpu : IDisposable
{
    private readonly Lazy<RetNetDevice> cpu = new(() => RetNetDevice.Open(DeviceKind.Cpu));
    private readonly Lazy<RetNetDevice> hostExecution = new(() => RetNetDevice.Open(DeviceKind.Cpu, CpuExecution.Host));

    /// <summary><paramref name="device"/> when it is the CPU accelerator, else a CPU accelerator opened once.</summary>
    public RetNetDevice For(RetNetDevice device) => device.IsCpuSimulator ? device : cpu.Value;

    /// <summary>
    /// <paramref name="device"/> when it runs on the host, else a CPU accelerator in host execution opened once (the
    /// host attention code refuses the simulator execution too).
    /// </summary>
    public RetNetDevice WithHostExecution(RetNetDevice device) => device.RunsOnHost ? device : hostExecution.Value;

    /// <inheritdoc/>
    public void Dispose()
    {
        if (cpu.IsValueCreated)
            cpu.Value.Dispose();
        if (hostExecution.IsValueCreated)
            hostExecution.Value.Dispose();
    }
}
