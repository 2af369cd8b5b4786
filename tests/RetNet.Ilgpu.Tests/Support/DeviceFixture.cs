using RetNet.Ilgpu.Devices;

namespace RetNet.Ilgpu.Tests.Support;

/// <summary>
/// The one accelerator every test runs on: <c>RETNET_DEVICE</c> (auto|cuda|opencl|cpu) chooses it, so the same tests
/// cover the CPU accelerator and the OpenCL lane. Tests that use it share a collection and run one at a time.
/// </summary>
public sealed class DeviceFixture : IDisposable
{
    /// <summary>The opened device.</summary>
    public RetNetDevice Device { get; } = RetNetDevice.Open(DeviceKind.Auto);

    /// <inheritdoc/>
    public void Dispose() => Device.Dispose();
}

/// <summary>The xunit collection of tests that share <see cref="DeviceFixture"/>.</summary>
[CollectionDefinition(Name)]
public sealed class DeviceCollection : ICollectionFixture<DeviceFixture>
{
    /// <summary>The collection's name.</summary>
    public const string Name = "device";
}
