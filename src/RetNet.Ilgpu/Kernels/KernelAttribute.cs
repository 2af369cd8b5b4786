namespace RetNet.Ilgpu.Kernels;

/// <summary>How a kernel's threads are organised.</summary>
public enum KernelGrouping
{
    /// <summary>Launched over the thread count <c>Launch.Spread</c> picks, each thread looping over its share of the
    /// items; ILGPU picks the group size (no shared memory, no barriers).</summary>
    Implicit,

    /// <summary>Launched with an explicit grid and group size; uses Grid/Group indices, shared memory, barriers.</summary>
    Explicit,
}

/// <summary>
/// Registers a static method as a kernel of the library. The registry (<see cref="KernelRegistry"/>) is built from
/// these attributes; a test fails when a method that looks like a kernel (a static method taking an ArrayView) lacks one.
/// </summary>
[AttributeUsage(AttributeTargets.Method, AllowMultiple = false, Inherited = false)]
public sealed class KernelAttribute(KernelGrouping grouping) : Attribute
{
    /// <summary>Implicit or explicit grouping; decides how the compile check builds the entry point.</summary>
    public KernelGrouping Grouping { get; } = grouping;

    /// <summary>
    /// For a kernel generic in one type parameter (a tile size, an operation): every type argument the library launches
    /// it with. Each is compiled by the compile check.
    /// </summary>
    public Type[] Specializations { get; init; } = [];

    /// <summary>
    /// For an explicitly grouped kernel: the type of its launch rule for the kernel report (an internal struct, or a
    /// class with a parameterless constructor, that implements the library's geometry-rule interface: the operator's
    /// launch shape itself where it is a struct); null for implicitly grouped kernels.
    /// </summary>
    public Type? Geometry { get; init; }
}
