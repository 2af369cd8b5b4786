namespace RetNet.Ilgpu.Tensors;

/// <summary>
/// The storage type of a tensor's elements. Arithmetic always runs in fp32; narrower storage types (fp16, bf16) are
/// meant to be added here as storage-only formats.
/// </summary>
public enum TensorDType
{
    /// <summary>IEEE 754 binary32.</summary>
    Float32,
}
