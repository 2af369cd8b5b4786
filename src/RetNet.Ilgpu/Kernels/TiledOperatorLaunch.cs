using RetNet.Ilgpu.Devices;
using RetNet.Ilgpu.Kernels.Gemm;

namespace RetNet.Ilgpu.Kernels;

/// <summary>
/// The implementations a tiled operator's launch class names (retention's and attention's), from which
/// <see cref="TiledOperatorLaunch{TSelf}"/> builds the operator's backend table and its test configurations.
/// </summary>
/// <typeparam name="TSelf">The launch class itself.</typeparam>
internal interface ITiledOperator<TSelf> where TSelf : class
{
    /// <summary>The barrier-free kernels (one thread per output row or state column).</summary>
    static abstract TSelf BarrierFree { get; }

    /// <summary>Host SIMD code run as <paramref name="simd"/> says.</summary>
    static abstract TSelf OnHost(HostSimd simd);

    /// <summary>The tiled kernels at the narrow tile (16 output columns) or the wide one, with
    /// <paramref name="groupSize"/> threads per group.</summary>
    static abstract TSelf Tiled(bool narrow, int groupSize);

    /// <summary>The tiled kernels with the tile picked per call from the head dimensions.</summary>
    static abstract TSelf AutoTiled(int groupSize);
}

/// <summary>
/// The seam of an operator made of tiled kernels (retention, attention): which of its implementations each
/// <see cref="OperatorBackend"/> runs, and every configuration its kernels can be launched with, which tests pass
/// explicitly through the operator's internal overloads.
/// </summary>
/// <typeparam name="TSelf">The operator's launch class.</typeparam>
internal abstract class TiledOperatorLaunch<TSelf> : IOperatorBackends<TSelf>
    where TSelf : TiledOperatorLaunch<TSelf>, ITiledOperator<TSelf>
{
    /// <summary>The group size of tiled launches on a GPU: enough threads to give each a few tile elements.</summary>
    public const int DefaultGroupSize = 256;

    /// <summary>
    /// The <see cref="OperatorBackend.Host"/> implementation: host SIMD code on ILGPU's CPU accelerator, on the widest
    /// instruction set the processor has and every core.
    /// </summary>
    public static TSelf Host { get; } = TSelf.OnHost(HostSimd.Auto);

    /// <summary>
    /// <see cref="Host"/> on a forced instruction-set path and thread count, so tests reach the AVX2 and scalar paths
    /// and the single-threaded schedule on any machine.
    /// </summary>
    public static TSelf HostWith(HostGemmPath path, int threads) => TSelf.OnHost(new HostSimd(path, threads));

    /// <summary>Threads per group of the tiled kernels on a device whose groups hold at most
    /// <paramref name="maxGroupSize"/>.</summary>
    public static int TiledGroupSize(int maxGroupSize) => Math.Min(DefaultGroupSize, maxGroupSize);

    /// <summary>What the library launches on <paramref name="device"/> (<see cref="RetNetDevice.Backend{TOperator}"/>).</summary>
    public static TSelf For(RetNetDevice device) => device.Backend<TSelf>();

    /// <summary>The implementation of each backend: host SIMD code, the barrier-free kernels, the tiled kernels at the
    /// device's group size.</summary>
    static TSelf IOperatorBackends<TSelf>.For(DevicePolicy policy) => policy.Backend switch
    {
        OperatorBackend.Host => Host,
        OperatorBackend.BarrierFree => TSelf.BarrierFree,
        _ => TSelf.AutoTiled(TiledGroupSize(policy.Device.MaxGroupSize)),
    };

    /// <summary>
    /// Every configuration the library can launch on <paramref name="device"/>: the barrier-free kernels, the tiled
    /// ones (<see cref="TiledConfigurations"/>), and the host SIMD code when the device runs on the host.
    /// </summary>
    public static IReadOnlyList<TSelf> Configurations(RetNetDevice device)
    {
        List<TSelf> all = [TSelf.BarrierFree, .. TiledConfigurations(device.MaxGroupSize)];
        if (device.Policy.Backend == OperatorBackend.Host)
            all.Add(Host);
        return all;
    }

    /// <summary>
    /// Each tile at the default group size (at most <paramref name="maxGroupSize"/>) and at 7 threads (fewer threads
    /// than tile elements, not dividing them).
    /// </summary>
    public static IReadOnlyList<TSelf> TiledConfigurations(int maxGroupSize)
    {
        var full = TiledGroupSize(maxGroupSize);
        return [TSelf.Tiled(true, full), TSelf.Tiled(true, 7), TSelf.Tiled(false, full), TSelf.Tiled(false, 7)];
    }

    /// <summary>A short description, for test names and messages.</summary>
    public abstract string Name { get; }

    /// <inheritdoc/>
    public override string ToString() => Name;
}
