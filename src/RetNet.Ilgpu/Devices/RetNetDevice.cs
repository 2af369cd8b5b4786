using System.Linq.Expressions;
using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Runtime;
using ILGPU.Runtime.CPU;
using ILGPU.Runtime.OpenCL;

namespace RetNet.Ilgpu.Devices;

/// <summary>
/// An opened accelerator: the ILGPU context and accelerator, the library's memory accounting and the cache of loaded
/// kernels. Every tensor and operation of the library belongs to one device. Not thread-safe: drive one device from
/// one thread at a time; a model or decoding call from a second thread while one runs throws (<see cref="Enter"/>).
/// </summary>
public sealed partial class RetNetDevice : IDisposable
{
    private readonly Dictionary<System.Reflection.MethodInfo, Delegate> kernels = [];
    private readonly Dictionary<System.Reflection.MethodInfo, Delegate> recordingLaunchers = [];
    private object?[] backends = new object?[8];
    private bool disposed;

    private RetNetDevice(Context context, Accelerator accelerator, DeviceDescription description,
        CpuExecution cpuExecution)
    {
        Context = context;
        Accelerator = accelerator;
        Description = description;
        CpuExecution = accelerator.AcceleratorType == AcceleratorType.CPU ? cpuExecution : CpuExecution.Auto;
        Policy = new DevicePolicy(this);
        Limits = LimitsOf(accelerator, Policy.Class);
    }

    /// <summary>One-element buffers that stand in for the unused view of a kernel argument that can read either
    /// storage type (allocated on first use, freed with the device).</summary>
    internal PlaceholderViews Placeholders => placeholders ??= new PlaceholderViews(this);

    private PlaceholderViews? placeholders;

    /// <summary>Which kernel variants and launch shapes this device gets (one object decides for every operator).</summary>
    internal DevicePolicy Policy { get; }

    /// <summary>The ILGPU context that owns <see cref="Accelerator"/>.</summary>
    public Context Context { get; }

    /// <summary>The ILGPU accelerator kernels run on.</summary>
    public Accelerator Accelerator { get; }

    /// <summary>Name, kind and limits of the device.</summary>
    public DeviceDescription Description { get; }

    /// <summary>Cuda, OpenCL or Cpu (never Auto).</summary>
    public DeviceKind Kind => Description.Kind;

    /// <summary>True on ILGPU's CPU accelerator, where barrier-free kernel variants are chosen.</summary>
    public bool IsCpuSimulator => Accelerator.AcceleratorType == AcceleratorType.CPU;

    /// <summary>On ILGPU's CPU accelerator, <see cref="CpuExecution.Host"/> or <see cref="CpuExecution.Simulator"/>;
    /// <see cref="CpuExecution.Auto"/> on other devices, where it does not apply.</summary>
    public CpuExecution CpuExecution { get; }

    /// <summary>True on the CPU accelerator in <see cref="CpuExecution.Host"/> mode: barrier-free kernels are called
    /// directly from host threads, and GEMM and retention run host SIMD code over the buffers.</summary>
    internal bool RunsOnHost => CpuExecution == CpuExecution.Host;

    /// <summary>The largest group the accelerator launches.</summary>
    public int MaxGroupSize => Accelerator.MaxNumThreadsPerGroup;

    /// <summary>What the launch-geometry and variant rules read from this device.</summary>
    internal LaunchLimits Limits { get; }

    /// <summary>
    /// The most threads an implicitly grouped launch uses (see <c>Launch.Spread</c>). On the CPU accelerator, where
    /// every simulated thread costs about a microsecond, a few per core: enough to keep the cores busy when a thread
    /// stalls, few enough that thread overhead stays below the work. On GPUs a cap high enough to fill any current
    /// device; larger launches stride.
    /// </summary>
    internal int LaunchThreads => IsCpuSimulator ? CpuThreadsPerCore * Environment.ProcessorCount : GpuLaunchCap;

    /// <summary>On the host path, the fewest items worth a thread of their own: below that a launch runs inline,
    /// because handing work to the thread pool costs microseconds and an item costs nanoseconds.</summary>
    internal const int HostItemsPerThread = 8192;

    /// <summary>When set, every implicitly grouped launch uses exactly this many threads, even more than its items:
    /// lets tests check that results do not depend on the split.</summary>
    internal int? ForcedLaunchThreads { get; set; }

    // Measured on a 2-core machine (a 1M-element add): 1 to 16 threads per core ran within noise of each other
    // (2.4–3.7 ms) and far below one thread per element; 4 per core sits in the middle of that range.
    private const int CpuThreadsPerCore = 4;

    private const int GpuLaunchCap = 1 << 20;

    /// <summary>Bytes allocated through the library on this device: current and peak.</summary>
    public MemoryTracker Memory { get; } = new();

    /// <summary>
    /// The limits of <paramref name="accelerator"/>. Sub-group operations: CUDA always has them (PTX shuffles) and so
    /// does the CPU accelerator (it emulates warps of <see cref="Accelerator.WarpSize"/> threads); an OpenCL device
    /// when it has cl_khr_subgroups or cl_intel_subgroups and ILGPU's probe kernel succeeded. ILGPU.Algorithms emits
    /// sub_group_reduce_add/max without enabling the extension, so a device without it would fail only when the
    /// OpenCL compiler builds the kernel.
    /// </summary>
    private static LaunchLimits LimitsOf(Accelerator accelerator, DeviceClass deviceClass) => new(deviceClass,
        accelerator.MaxNumThreadsPerGroup, accelerator.WarpSize,
        SupportsSubGroups: accelerator is not CLAccelerator cl || cl.Capabilities.SubGroups,
        IsOpenClCpu: accelerator is CLAccelerator { Device.DeviceType: CLDeviceType.CL_DEVICE_TYPE_CPU });

    /// <summary>
    /// Opens a device of the requested kind. <see cref="DeviceKind.Auto"/> first honours <c>RETNET_DEVICE</c>, then
    /// prefers CUDA, then an OpenCL GPU, then the CPU accelerator. <paramref name="cpuExecution"/> applies to the CPU
    /// accelerator only (<see cref="CpuExecution.Auto"/> honours <c>RETNET_CPU_EXECUTION</c>, else the host path).
    /// <paramref name="localRank"/> spreads the processes of a data-parallel job over a machine's devices: of the
    /// devices of the chosen kind, it takes number localRank modulo their count (the CPU accelerator is one device,
    /// shared by every process).
    /// </summary>
    /// <exception cref="InvalidOperationException">No device of the requested kind is present; the message lists
    /// the devices that are.</exception>
    /// <exception cref="ArgumentException"><c>RETNET_DEVICE</c> or <c>RETNET_CPU_EXECUTION</c> holds an unknown
    /// name.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="localRank"/> is negative.</exception>
    public static RetNetDevice Open(DeviceKind kind = DeviceKind.Auto, CpuExecution cpuExecution = CpuExecution.Auto,
        int localRank = 0)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(localRank);
        var requested = DeviceKinds.ResolveFromEnvironment(kind);
        var execution = CpuExecutions.Resolve(cpuExecution);
        var context = CreateContext();
        try
        {
            var first = Choose(context, requested);
            var siblings = context.Devices.Where(d => SameKind(d, first)).ToList();
            var device = siblings[localRank % siblings.Count];
            var accelerator = device is CPUDevice cpu
                ? cpu.CreateCPUAccelerator(context, CPUAcceleratorMode.Parallel)
                : device.CreateAccelerator(context);
            return new RetNetDevice(context, accelerator, Describe(device), execution);
        }
        catch
        {
            context.Dispose();
            throw;
        }
    }

    /// <summary>Lists every accelerator ILGPU can open on this machine.</summary>
    public static IReadOnlyList<DeviceDescription> List()
    {
        using var context = CreateContext();
        return context.Devices.Select(Describe).ToList();
    }

    /// <summary>The kind <see cref="Open"/> picks for <see cref="DeviceKind.Auto"/> on this machine, ignoring <c>RETNET_DEVICE</c>.</summary>
    public static DeviceKind AutoChoice()
    {
        using var context = CreateContext();
        return Describe(Choose(context, DeviceKind.Auto)).Kind;
    }

    /// <summary>Creates the context every device and compile check uses: default devices, algorithms enabled
    /// (without them XMath fails to compile for PTX).</summary>
    internal static Context CreateContext() => Context.Create(builder => builder.Default().EnableAlgorithms());

    // Devices a data-parallel job spreads over: CUDA devices, or OpenCL devices of one type (GPU or CPU).
    private static bool SameKind(Device candidate, Device chosen) => chosen switch
    {
        CLDevice cl => candidate is CLDevice other && other.DeviceType == cl.DeviceType,
        _ when chosen.AcceleratorType == AcceleratorType.Cuda => candidate.AcceleratorType == AcceleratorType.Cuda,
        _ => ReferenceEquals(candidate, chosen),
    };

    private static Device Choose(Context context, DeviceKind requested)
    {
        var devices = context.Devices;
        Device? chosen = requested switch
        {
            DeviceKind.Cuda => devices.FirstOrDefault(d => d.AcceleratorType == AcceleratorType.Cuda),
            DeviceKind.OpenCL => devices.OfType<CLDevice>().OrderByDescending(d => d.DeviceType == CLDeviceType.CL_DEVICE_TYPE_GPU).FirstOrDefault(),
            DeviceKind.Cpu => devices.FirstOrDefault(d => d.AcceleratorType == AcceleratorType.CPU),
            _ => devices.FirstOrDefault(d => d.AcceleratorType == AcceleratorType.Cuda)
                 ?? devices.OfType<CLDevice>().FirstOrDefault(d => d.DeviceType == CLDeviceType.CL_DEVICE_TYPE_GPU)
                 ?? devices.FirstOrDefault(d => d.AcceleratorType == AcceleratorType.CPU),
        };
        if (chosen is null)
        {
            var present = !devices.Any()
                ? "none"
                : string.Join("; ", devices.Select(d => $"{Describe(d).Kind}: {d.Name}"));
            throw new InvalidOperationException(
                $"No {requested} device is present. Devices present: {present}. " +
                $"Open another DeviceKind, or set {DeviceKinds.EnvironmentVariable} (auto|cuda|opencl|cpu) for DeviceKind.Auto.");
        }
        return chosen;
    }

    private static DeviceDescription Describe(Device device)
    {
        var kind = device.AcceleratorType switch
        {
            AcceleratorType.Cuda => DeviceKind.Cuda,
            AcceleratorType.OpenCL => DeviceKind.OpenCL,
            _ => DeviceKind.Cpu,
        };
        var isGpu = device switch
        {
            CLDevice cl => cl.DeviceType == CLDeviceType.CL_DEVICE_TYPE_GPU,
            _ => kind == DeviceKind.Cuda,
        };
        // The CPU accelerator reports long.MaxValue; its memory is the host's.
        var memory = device.AcceleratorType == AcceleratorType.CPU
            ? GC.GetGCMemoryInfo().TotalAvailableMemoryBytes
            : device.MemorySize;
        return new DeviceDescription(
            device.Name.Trim(), kind, memory, device.WarpSize, device.MaxNumThreadsPerGroup, isGpu,
            DevicePolicy.ClassOf(device));
    }

    /// <summary>
    /// Returns the launcher of a kernel, loading it on first use (~150 ms) and caching it per device after (~free).
    /// The one way the library loads kernels: <paramref name="kernel"/> names the kernel method (its closed generic
    /// form for specialised kernels) and <paramref name="load"/> is the ILGPU loader to use for it. On the host path
    /// (<see cref="RunsOnHost"/>) an implicitly grouped kernel gets a launcher that calls its method directly. While
    /// <see cref="KernelRecorder"/> is set, the launcher returned records the kernel each time it runs.
    /// </summary>
    internal TLauncher Kernel<TLauncher>(Delegate kernel, Func<Accelerator, TLauncher> load)
        where TLauncher : Delegate
    {
        ObjectDisposedException.ThrowIf(disposed, this);
        CheckThread();
        if (!kernels.TryGetValue(kernel.Method, out var launcher))
        {
            launcher = (RunsOnHost ? HostLaunch.TryCreate<TLauncher>(this, kernel.Method) : null) ?? load(Accelerator);
            kernels.Add(kernel.Method, launcher);
        }
        return KernelRecorder is null ? (TLauncher)launcher : Recording((TLauncher)launcher, kernel.Method);
    }

    /// <summary>
    /// The implementation of the operator <typeparamref name="TOperator"/> this device runs, chosen on first use by the
    /// operator's table from the policy's <see cref="DevicePolicy.Backend"/> and kept for the device's lifetime.
    /// </summary>
    internal TOperator Backend<TOperator>() where TOperator : class, IOperatorBackends<TOperator>
    {
        ObjectDisposedException.ThrowIf(disposed, this);
        // An array slot per operator type rather than a dictionary: a decoding step asks for a backend per GEMM.
        var slot = BackendSlot<TOperator>.Index;
        if (slot < backends.Length && backends[slot] is TOperator cached)
            return cached;
        if (slot >= backends.Length)
            Array.Resize(ref backends, Math.Max(slot + 1, 2 * backends.Length));
        var backend = TOperator.For(Policy);
        backends[slot] = backend;
        return backend;
    }

    private static int backendSlots;

    /// <summary>The slot of operator type <typeparamref name="T"/> in every device's backend array.</summary>
    private static class BackendSlot<T>
    {
        public static readonly int Index = Interlocked.Increment(ref backendSlots) - 1;
    }

    /// <summary>When set, every kernel whose launcher from <see cref="Kernel{TLauncher}"/> runs is added to it (a
    /// launcher fetched and never invoked adds nothing): how <c>retnet verify</c> tells which registered kernels its
    /// checks exercised (docs/VERIFY.md). Unset, launchers are ILGPU's own, at no extra cost.</summary>
    internal HashSet<System.Reflection.MethodInfo>? KernelRecorder { get; set; }

    /// <summary>
    /// <paramref name="launcher"/> behind a launcher of the same type that first adds <paramref name="kernel"/> to
    /// <see cref="KernelRecorder"/> (as it is when the launcher runs), built once per kernel.
    /// </summary>
    private TLauncher Recording<TLauncher>(TLauncher launcher, System.Reflection.MethodInfo kernel)
        where TLauncher : Delegate
    {
        if (!recordingLaunchers.TryGetValue(kernel, out var recording))
        {
            // (a1, …, an) => { this.RecordLaunch(kernel); launcher(a1, …, an); }
            var parameters = typeof(TLauncher).GetMethod("Invoke")!.GetParameters()
                .Select(p => Expression.Parameter(p.ParameterType, p.Name)).ToArray();
            var record = Expression.Call(Expression.Constant(this),
                typeof(RetNetDevice).GetMethod(nameof(RecordLaunch),
                    System.Reflection.BindingFlags.Instance | System.Reflection.BindingFlags.NonPublic)!,
                Expression.Constant(kernel));
            var body = Expression.Block(record, Expression.Invoke(Expression.Constant(launcher), parameters));
            recording = Expression.Lambda<TLauncher>(body, parameters).Compile();
            recordingLaunchers.Add(kernel, recording);
        }
        return (TLauncher)recording;
    }

    private void RecordLaunch(System.Reflection.MethodInfo kernel) => KernelRecorder?.Add(kernel);

    /// <summary>The stream every operation of the library is queued on, so their order is their program order.</summary>
    internal AcceleratorStream Stream => Accelerator.DefaultStream;

    /// <summary>Waits until every queued operation has finished.</summary>
    public void Synchronize() => Accelerator.Synchronize();

    /// <summary>Allocates a buffer of <paramref name="length"/> elements; <paramref name="what"/> describes it in the
    /// report of buffers never freed (<see cref="UndisposedBuffers"/>).</summary>
    internal MemoryBuffer1D<T, Stride1D.Dense> Allocate<T>(long length, string? what = null) where T : unmanaged
    {
        ObjectDisposedException.ThrowIf(disposed, this);
        CheckThread();
        var buffer = Accelerator.Allocate1D<T>(length);
        Memory.OnAllocated(buffer.LengthInBytes);
        Track(buffer, what ?? $"{typeof(T).Name}[{length}]");
        return buffer;
    }

    /// <summary>
    /// A buffer over <paramref name="length"/> elements of host memory at <paramref name="address"/> that something
    /// else owns (a memory-mapped file): the CPU accelerator reads it in place. It is listed in the report of buffers
    /// never freed like an allocation, but its bytes are not the device's (<see cref="Memory"/> does not count them).
    /// Release it with <see cref="Unwrap"/>.
    /// </summary>
    internal MemoryBuffer WrapHost(nint address, long length, int elementSize, string what)
    {
        ObjectDisposedException.ThrowIf(disposed, this);
        CheckThread();
        var buffer = ILGPU.Runtime.CPU.CPUMemoryBuffer.Create(Accelerator, address, length, elementSize);
        Track(buffer, what);
        return buffer;
    }

    /// <summary>Forgets a buffer of <see cref="WrapHost"/> (the memory stays its owner's).</summary>
    internal void Unwrap(MemoryBuffer buffer)
    {
        Untrack(buffer);
        buffer.Dispose();
    }

    internal void Free(MemoryBuffer buffer)
    {
        var bytes = buffer.LengthInBytes;
        Untrack(buffer);
        buffer.Dispose();
        Memory.OnFreed(bytes);
    }

    /// <inheritdoc/>
    public override string ToString() => $"{Kind}: {Description.Name}";

    /// <summary>Releases the accelerator and the context. Tensors of this device must be disposed first: any that were
    /// not are reported on the standard error stream (<see cref="UndisposedBuffers"/>), then freed.</summary>
    public void Dispose()
    {
        if (disposed)
            return;
        ReportUndisposed();
        disposed = true;
        kernels.Clear();
        recordingLaunchers.Clear();
        Array.Clear(backends);
        placeholders?.Dispose();
        Accelerator.Dispose();
        Context.Dispose();
    }
}

/// <summary>The placeholder views of one device (see <see cref="RetNetDevice.Placeholders"/>).</summary>
internal sealed class PlaceholderViews : IDisposable
{
    private readonly MemoryBuffer1D<float, Stride1D.Dense> singles;
    private readonly MemoryBuffer1D<ushort, Stride1D.Dense> halves;

    public PlaceholderViews(RetNetDevice device)
    {
        singles = device.Accelerator.Allocate1D<float>(1);
        halves = device.Accelerator.Allocate1D<ushort>(1);
    }

    /// <summary>A one-element fp32 view.</summary>
    public ArrayView<float> Singles => singles.View;

    /// <summary>A one-element 16-bit view.</summary>
    public ArrayView<ushort> Halves => halves.View;

    public void Dispose()
    {
        singles.Dispose();
        halves.Dispose();
    }
}
