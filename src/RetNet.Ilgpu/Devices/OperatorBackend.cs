namespace RetNet.Ilgpu.Devices;

/// <summary>
/// Which implementation of every operator a device runs: the first decision of the device policy
/// (<see cref="DevicePolicy.Backend"/>), taken once per device. Each operator offers one implementation per backend
/// (<see cref="IOperatorBackends{TSelf}"/>), and the device hands the operator its own
/// (<see cref="RetNetDevice.Backend{TOperator}"/>), so no operator tests the device kind itself.
/// </summary>
internal enum OperatorBackend
{
    /// <summary>GPU-shaped kernels (tiled in shared memory, group reductions), launched on CUDA and OpenCL devices.</summary>
    Tiled,

    /// <summary>
    /// ILGPU's CPU accelerator in <see cref="CpuExecution.Simulator"/> execution: the barrier-free kernel variants,
    /// launched through ILGPU's simulator exactly as on a GPU, so CI holds the kernels themselves to the references.
    /// </summary>
    BarrierFree,

    /// <summary>
    /// ILGPU's CPU accelerator in <see cref="CpuExecution.Host"/> execution: host SIMD code over the accelerator's
    /// host buffers for GEMM, retention, attention and the whole-tensor reductions; the barrier-free kernels of the
    /// other operators called as plain .NET methods (<see cref="HostLaunch"/>).
    /// </summary>
    Host,
}

/// <summary>
/// An operator's seam: an abstract type whose implementations are the operator on each <see cref="OperatorBackend"/>
/// (and, for tests, on every launch configuration it has). The operator's entry points validate their arguments,
/// then run <c>device.Backend&lt;TSelf&gt;()</c>, or a configuration a test passes in, without testing the device.
/// </summary>
/// <typeparam name="TSelf">The operator's abstract type itself.</typeparam>
internal interface IOperatorBackends<TSelf> where TSelf : class, IOperatorBackends<TSelf>
{
    /// <summary>The implementation the library runs on the device <paramref name="policy"/> decides for: the
    /// operator's table from <see cref="DevicePolicy.Backend"/> to implementation. Called once per device.</summary>
    static abstract TSelf For(DevicePolicy policy);
}
