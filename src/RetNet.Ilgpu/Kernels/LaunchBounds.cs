using System.Reflection;
using ILGPU.Runtime;

namespace RetNet.Ilgpu.Kernels;

/// <summary>
/// Implemented by the specialisation type of a kernel (a tile) that is always launched with one group size, to state
/// that size and how many groups should fit on one multiprocessor at once. ILGPU turns them into PTX's
/// <c>.maxntid</c> and <c>.minnctapersm</c>, so ptxas keeps the kernel within 65536 / (size · groups) registers
/// instead of taking up to 255 and leaving room for fewer groups.
/// </summary>
internal interface ILaunchBounds
{
    /// <summary>Threads per group, the only group size the kernel is launched with.</summary>
    int GroupSize { get; }

    /// <summary>Groups that should be resident on one multiprocessor together.</summary>
    int MinGroupsPerMultiprocessor { get; }
}

/// <summary>The <see cref="KernelSpecialization"/> both the loader and the compile check give a kernel.</summary>
internal static class LaunchBounds
{
    /// <summary>The bounds of <typeparamref name="T"/>, or none when it states none.</summary>
    public static KernelSpecialization Of<T>() where T : struct => Of(typeof(T));

    /// <summary>The bounds of a closed generic kernel's type argument, or none.</summary>
    public static KernelSpecialization Of(MethodInfo kernel) =>
        kernel.IsGenericMethod ? Of(kernel.GetGenericArguments()[0]) : KernelSpecialization.Empty;

    private static KernelSpecialization Of(Type type) =>
        type.IsValueType && Activator.CreateInstance(type) is ILaunchBounds bounds
            ? new KernelSpecialization(bounds.GroupSize, bounds.MinGroupsPerMultiprocessor)
            : KernelSpecialization.Empty;
}
