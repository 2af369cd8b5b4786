using RetNet.Ilgpu.Tests.Support;

namespace RetNet.Ilgpu.Properties;

/// <summary>
/// The property suite's collection over the tests' shared <see cref="DeviceFixture"/> (xunit collections are per
/// assembly, so this assembly defines its own).
/// </summary>
[CollectionDefinition(Name)]
public sealed class PropertyDeviceCollection : ICollectionFixture<DeviceFixture>
{
    /// <summary>The collection's name.</summary>
    public const string Name = "property-device";
}
