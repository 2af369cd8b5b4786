using System.Linq.Expressions;
using System.Reflection;
using ILGPU;
using ILGPU.Runtime;

namespace RetNet.Ilgpu.Devices;

/// <summary>
/// Runs implicitly grouped kernels as plain .NET calls on ILGPU's CPU accelerator (<see cref="CpuExecution.Host"/>).
/// Such a kernel is a static method of (Index1D, arguments…) that touches nothing but its arguments: no shared memory,
/// no barriers, no group or warp intrinsics. The simulator runs exactly that method once per simulated thread; here
/// the same method is called directly for every index of the launch, from the thread pool. Every kernel of the library
/// loops over a <c>Spread</c> of contiguous ranges on this device, so a launch is a handful of calls.
/// </summary>
internal static class HostLaunch
{
    /// <summary>
    /// A launcher of delegate type <typeparamref name="TLauncher"/> (stream, Index1D extent, arguments…) that calls
    /// <paramref name="kernel"/> directly, or null when <typeparamref name="TLauncher"/> is not an implicitly grouped
    /// launcher (explicitly grouped kernels keep ILGPU's simulator).
    /// </summary>
    public static TLauncher? TryCreate<TLauncher>(RetNetDevice device, MethodInfo kernel) where TLauncher : Delegate
    {
        var invoke = typeof(TLauncher).GetMethod("Invoke")!;
        var parameters = invoke.GetParameters();
        var kernelParameters = kernel.GetParameters();
        if (!kernel.IsStatic || parameters.Length < 2 || parameters[0].ParameterType != typeof(AcceleratorStream) ||
            parameters[1].ParameterType != typeof(Index1D) || kernelParameters.Length != parameters.Length - 1 ||
            kernelParameters[0].ParameterType != typeof(Index1D))
            return null;

        // (stream, extent, a1, …, an) => HostLaunch.Run(device, extent, i => kernel(new Index1D(i), a1, …, an))
        var outer = parameters.Select(p => Expression.Parameter(p.ParameterType, p.Name)).ToArray();
        var index = Expression.Parameter(typeof(int), "i");
        var call = Expression.Call(kernel,
            [Expression.New(typeof(Index1D).GetConstructor([typeof(int)])!, index), .. outer.Skip(2)]);
        var body = Expression.Lambda<Action<int>>(call, index);
        var run = Expression.Call(typeof(HostLaunch).GetMethod(nameof(Run), BindingFlags.Static | BindingFlags.NonPublic)!,
            Expression.Constant(device), Expression.Property(outer[1], nameof(Index1D.X)), body);
        return Expression.Lambda<TLauncher>(run, outer).Compile();
    }

    /// <summary>Calls <paramref name="body"/> for 0 … <paramref name="extent"/> − 1: inline for one index, else in
    /// parallel. Kernels queued on the simulator before (explicitly grouped ones) finish first.</summary>
    private static void Run(RetNetDevice device, int extent, Action<int> body)
    {
        device.Stream.Synchronize();
        if (extent == 1)
            body(0);
        else if (extent > 1)
            Parallel.For(0, extent, body);
    }
}
