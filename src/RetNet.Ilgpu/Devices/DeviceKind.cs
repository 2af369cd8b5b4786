namespace RetNet.Ilgpu.Devices;

/// <summary>The kind of accelerator to run on.</summary>
public enum DeviceKind
{
    /// <summary>CUDA if present, else an OpenCL GPU, else the CPU accelerator.</summary>
    Auto,

    /// <summary>An NVIDIA GPU through the CUDA driver.</summary>
    Cuda,

    /// <summary>An OpenCL 2.0+ device with the generic address space (AMD, Intel, PoCL).</summary>
    OpenCL,

    /// <summary>ILGPU's CPU accelerator (a simulator, for correctness and CI).</summary>
    Cpu,
}

/// <summary>Parsing of device kinds as written on a command line or in <c>RETNET_DEVICE</c>.</summary>
public static class DeviceKinds
{
    /// <summary>The environment variable that selects the device when <see cref="DeviceKind.Auto"/> is asked for.</summary>
    public const string EnvironmentVariable = "RETNET_DEVICE";

    /// <summary>The accepted spellings, in the order they are documented.</summary>
    public static IReadOnlyList<string> Names { get; } = ["auto", "cuda", "opencl", "cpu"];

    /// <summary>Parses <c>auto</c>, <c>cuda</c>, <c>opencl</c> or <c>cpu</c> (case-insensitive).</summary>
    /// <exception cref="ArgumentException">The text is none of the accepted names.</exception>
    public static DeviceKind Parse(string text, string argumentName = "kind") =>
        text.Trim().ToLowerInvariant() switch
        {
            "auto" => DeviceKind.Auto,
            "cuda" => DeviceKind.Cuda,
            "opencl" or "cl" => DeviceKind.OpenCL,
            "cpu" => DeviceKind.Cpu,
            _ => throw new ArgumentException(
                $"Unknown device kind '{text}': expected one of {string.Join(", ", Names)}.", argumentName),
        };

    /// <summary>
    /// Applies <c>RETNET_DEVICE</c>: an explicit kind is kept; <see cref="DeviceKind.Auto"/> becomes the kind named by
    /// the environment variable when it is set and not empty.
    /// </summary>
    public static DeviceKind ResolveFromEnvironment(DeviceKind requested)
    {
        if (requested != DeviceKind.Auto)
            return requested;
        var value = Environment.GetEnvironmentVariable(EnvironmentVariable);
        return string.IsNullOrWhiteSpace(value) ? DeviceKind.Auto : Parse(value, EnvironmentVariable);
    }
}
