using System.Runtime.Intrinsics;
using ILGPU.Runtime;
using RetNet.Ilgpu.Devices;
using RetNet.Ilgpu.Kernels.Gemm;
using RetNet.Ilgpu.Tensors;

namespace RetNet.Ilgpu.Kernels;

/// <summary>
/// How an operator's host SIMD code (its <see cref="OperatorBackend.Host"/> implementation) runs: the instruction-set
/// path of its micro-kernels and the most threads it uses (null: every core). The library runs
/// <see cref="Auto"/>; tests force the AVX2 and scalar paths and a single thread on any machine.
/// </summary>
/// <param name="Path">The micro-kernels' instruction set.</param>
/// <param name="ThreadLimit">The most threads, or null for <see cref="Environment.ProcessorCount"/>.</param>
internal readonly record struct HostSimd(HostGemmPath Path, int? ThreadLimit)
{
    /// <summary>The widest path the processor executes, on every core.</summary>
    public static HostSimd Auto { get; } = new(HostGemmPath.Auto, null);

    /// <summary>The threads the code may use.</summary>
    public int Threads => ThreadLimit ?? Environment.ProcessorCount;

    /// <summary>A short description, for test names and messages.</summary>
    public override string ToString() =>
        ThreadLimit is null ? $"host SIMD ({Path})" : $"host SIMD ({Path}, {ThreadLimit} threads)";

    /// <summary>
    /// Before host code touches <paramref name="device"/>'s buffers: <see cref="Check"/>, then waits for the kernels
    /// queued before, which may still be writing the buffers. Nothing is queued behind host code, so no fence is
    /// needed after.
    /// </summary>
    /// <exception cref="NotSupportedException">The device does not qualify.</exception>
    public static void Enter(RetNetDevice device, string what, bool requireHostExecution = false,
        string? advice = null)
    {
        Check(device, what, requireHostExecution, advice);
        device.Stream.Synchronize();
    }

    /// <summary>
    /// Refuses a device that keeps its buffers in device memory (anything but ILGPU's CPU accelerator, whose buffers are
    /// pinned host memory) or, with <paramref name="requireHostExecution"/>, one in simulator execution (asked to run
    /// the kernels themselves).
    /// </summary>
    /// <exception cref="NotSupportedException">The device does not qualify; the message names <paramref name="what"/>
    /// and ends with <paramref name="advice"/>.</exception>
    public static void Check(RetNetDevice device, string what, bool requireHostExecution = false,
        string? advice = null)
    {
        if (device.IsCpuSimulator && (!requireHostExecution || device.RunsOnHost))
            return;
        throw new NotSupportedException(
            $"{what} runs on the host over host memory and needs ILGPU's CPU accelerator" +
            $"{(requireHostExecution ? " in host execution" : "")}; {device} " +
            $"{(device.IsCpuSimulator ? "does not run on the host" : "keeps its buffers in device memory")}." +
            (advice is null ? "" : $" {advice}"));
    }

    /// <summary>
    /// Runs <paramref name="item"/> for 0 … <paramref name="items"/> − 1 on at most <paramref name="threads"/> threads:
    /// inline when one thread or one item, else on the thread pool. Host code splits its work into fixed items, each
    /// summed alone in a fixed order, so the thread count never changes a bit.
    /// </summary>
    public static void For(int items, int threads, Action<int> item)
    {
        if (threads <= 1 || items == 1)
        {
            for (var i = 0; i < items; i++)
                item(i);
            return;
        }
        Parallel.For(0, items, new ParallelOptions { MaxDegreeOfParallelism = threads }, item);
    }

    /// <summary>The host address of an fp32 tensor's first element on the CPU accelerator; null for no tensor.</summary>
    public static unsafe float* Pointer(Tensor? tensor) =>
        tensor is null ? null : (float*)tensor.View.LoadEffectiveAddressAsPtr();

    /// <summary>The host address of an index tensor's first element on the CPU accelerator.</summary>
    public static unsafe int* Pointer(IndexTensor tensor) => (int*)tensor.View.LoadEffectiveAddressAsPtr();

    /// <summary>to[i] = factor·from[i] for i &lt; <paramref name="count"/>, in vectors where the processor has them:
    /// one rounded product per element, so the bits are the scalar loop's. <paramref name="to"/> may be
    /// <paramref name="from"/>.</summary>
    public static unsafe void Scale(float* from, float* to, int count, float factor)
    {
        var i = HostGemm.Best switch
        {
            HostGemmPath.Vector512 => ScaleLanes<Vector512<float>, Vector512Ops>(from, to, count, factor),
            HostGemmPath.Vector256 => ScaleLanes<Vector256<float>, Vector256Ops>(from, to, count, factor),
            _ => 0,
        };
        for (; i < count; i++)
            to[i] = factor * from[i];
    }

    /// <summary>The whole vectors of <see cref="Scale"/>; returns how many elements they covered.</summary>
    private static unsafe int ScaleLanes<TV, TOps>(float* from, float* to, int count, float factor)
        where TV : struct
        where TOps : struct, IVectorOps<TV>
    {
        var (w, f) = (TOps.Count, TOps.Broadcast(factor));
        var i = 0;
        for (; i + w <= count; i += w)
            TOps.Store(TOps.Multiply(f, TOps.Load(from + i)), to + i);
        return i;
    }
}
