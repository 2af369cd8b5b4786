namespace RetNet.Ilgpu.Devices;

/// <summary>
/// How work runs on ILGPU's CPU accelerator (other devices ignore it). Its buffers are host memory, so the library can
/// either hand every kernel to ILGPU's simulator, which runs each simulated GPU thread and pays a fixed cost per launch,
/// or call the kernels' code directly from a few host threads and use host SIMD code for GEMM and retention.
/// </summary>
public enum CpuExecution
{
    /// <summary><c>RETNET_CPU_EXECUTION</c> when it is set, else <see cref="Host"/>.</summary>
    Auto,

    /// <summary>
    /// The fast path (the default): kernels without shared memory or barriers are called as plain .NET methods over
    /// contiguous ranges on the thread pool, and GEMM and retention (parallel and chunkwise) run host SIMD code.
    /// Results equal the simulator's up to fp32 rounding (the same references and properties hold both).
    /// </summary>
    Host,

    /// <summary>
    /// Every operation runs an ILGPU kernel through the CPU accelerator exactly as it would be launched on a GPU (the
    /// barrier-free variants): slow, but it checks the kernels themselves.
    /// </summary>
    Simulator,
}

/// <summary>Parsing of <see cref="CpuExecution"/> as written on a command line or in <c>RETNET_CPU_EXECUTION</c>.</summary>
public static class CpuExecutions
{
    /// <summary>The environment variable that chooses the CPU execution when <see cref="CpuExecution.Auto"/> is asked for.</summary>
    public const string EnvironmentVariable = "RETNET_CPU_EXECUTION";

    /// <summary>Parses <c>auto</c>, <c>host</c> or <c>simulator</c> (case-insensitive).</summary>
    /// <exception cref="ArgumentException">The text is none of the accepted names.</exception>
    public static CpuExecution Parse(string text, string argumentName = "execution") =>
        text.Trim().ToLowerInvariant() switch
        {
            "auto" => CpuExecution.Auto,
            "host" => CpuExecution.Host,
            "simulator" or "simulate" => CpuExecution.Simulator,
            _ => throw new ArgumentException(
                $"Unknown CPU execution '{text}': expected auto, host or simulator.", argumentName),
        };

    /// <summary>Applies <c>RETNET_CPU_EXECUTION</c>: an explicit choice is kept; <see cref="CpuExecution.Auto"/>
    /// becomes the variable's value when set, else <see cref="CpuExecution.Host"/>.</summary>
    /// <exception cref="ArgumentException">The variable holds none of the accepted names.</exception>
    public static CpuExecution Resolve(CpuExecution requested)
    {
        if (requested != CpuExecution.Auto)
            return requested;
        var value = Environment.GetEnvironmentVariable(EnvironmentVariable);
        var parsed = string.IsNullOrWhiteSpace(value) ? CpuExecution.Host : Parse(value, EnvironmentVariable);
        return parsed == CpuExecution.Auto ? CpuExecution.Host : parsed;
    }
}
