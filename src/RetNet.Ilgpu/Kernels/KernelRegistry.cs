using System.Reflection;
using ILGPU;

namespace RetNet.Ilgpu.Kernels;

/// <summary>One compilable kernel: a closed (fully specialised) method and its grouping.</summary>
/// <param name="Name">Type.Method, with the specialisation in angle brackets when generic.</param>
/// <param name="Method">The closed method that ILGPU compiles.</param>
/// <param name="Grouping">Implicit or explicit grouping.</param>
public sealed record KernelDescriptor(string Name, MethodInfo Method, KernelGrouping Grouping);

/// <summary>Every kernel of the library, each specialisation in use listed separately.</summary>
public static class KernelRegistry
{
    private static readonly Lazy<IReadOnlyList<KernelDescriptor>> all = new(Build);

    /// <summary>All registered kernels, ordered by name.</summary>
    public static IReadOnlyList<KernelDescriptor> All => all.Value;

    /// <summary>
    /// Non-private static methods of the library that take an ILGPU ArrayView (the signature of a kernel) but carry no
    /// <see cref="KernelAttribute"/>. Host code never takes ArrayViews in static methods, so this list must be empty.
    /// Private ones are skipped: host code outside the class cannot launch them, so they are bodies shared by
    /// registered kernels (one body, compiled with a tree or a sub-group reduction), compiled as part of those.
    /// </summary>
    public static IReadOnlyList<MethodInfo> FindUnregisteredKernelMethods() =>
        LibraryMethods()
            .Where(m => m.GetCustomAttribute<KernelAttribute>() is null && !m.IsPrivate)
            .Where(m => m.GetParameters().Any(p => IsArrayView(p.ParameterType)))
            .ToList();

    private static IEnumerable<MethodInfo> LibraryMethods() =>
        typeof(KernelRegistry).Assembly.GetTypes()
            .SelectMany(t => t.GetMethods(BindingFlags.Static | BindingFlags.Public | BindingFlags.NonPublic |
                                          BindingFlags.DeclaredOnly))
            .Where(m => !m.IsSpecialName && m.GetCustomAttribute<System.Runtime.CompilerServices.CompilerGeneratedAttribute>() is null);

    private static bool IsArrayView(Type type) =>
        type.IsGenericType && type.Namespace == typeof(ArrayView<>).Namespace &&
        type.Name.StartsWith("ArrayView", StringComparison.Ordinal);

    private static IReadOnlyList<KernelDescriptor> Build()
    {
        var result = new List<KernelDescriptor>();
        foreach (var method in LibraryMethods())
        {
            var attribute = method.GetCustomAttribute<KernelAttribute>();
            if (attribute is null)
                continue;
            var baseName = $"{method.DeclaringType!.Name}.{method.Name}";
            if (!method.IsGenericMethodDefinition)
            {
                if (attribute.Specializations.Length > 0)
                    throw new InvalidOperationException($"Kernel {baseName} is not generic but lists specialisations.");
                result.Add(new KernelDescriptor(baseName, method, attribute.Grouping));
                continue;
            }
            if (method.GetGenericArguments().Length != 1 || attribute.Specializations.Length == 0)
                throw new InvalidOperationException(
                    $"Generic kernel {baseName} must have one type parameter and list its specialisations.");
            foreach (var type in attribute.Specializations)
                result.Add(new KernelDescriptor($"{baseName}<{type.Name}>", method.MakeGenericMethod(type), attribute.Grouping));
        }
        result.Sort((a, b) => string.CompareOrdinal(a.Name, b.Name));
        return result;
    }
}
