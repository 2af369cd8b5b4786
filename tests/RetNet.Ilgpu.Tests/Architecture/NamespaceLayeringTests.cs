using System.Reflection;
using System.Text.RegularExpressions;
using RetNet.Ilgpu.Devices;

namespace RetNet.Ilgpu.Tests.Architecture;

/// <summary>
/// The library is layered (docs/ARCHITECTURE.md §1), each layer using only those below it: Devices (device, memory, the
/// device policy, which speaks of device classes, group sizes and backends, never of a kernel) &lt; Tensors &lt;
/// Kernels (shared kernel machinery and the operators GEMM, normalisations, …, each in Kernels.&lt;Operator&gt;), IO
/// and Tokenizers &lt; Retention and Attention (operators built on kernels, independent of each other) &lt; Model (the
/// decoder shell and its mixers) &lt; Generation and Training (which use models and never each other). Two checks,
/// both cheap: the types a type's signatures name (reflection), and the namespaces a source file imports or qualifies
/// names with.
/// </summary>
public sealed partial class NamespaceLayeringTests
{
    private const string Root = "RetNet.Ilgpu";

    /// <summary>The checked layers, lowest first; operators in one layer are siblings that must not use each other.</summary>
    private static readonly string[][] Layers =
    [
        ["Devices"],
        ["Tensors"],
        ["Kernels", "IO", "Tokenizers"],
        ["Retention", "Attention"],
        ["Model"],
        ["Generation", "Training"],
    ];

    [Fact]
    public void No_type_signature_of_a_layer_names_a_type_of_a_higher_or_sibling_layer()
    {
        var violations = new SortedSet<string>();
        foreach (var type in typeof(RetNetDevice).Assembly.GetTypes())
        {
            foreach (var used in Referenced(type))
            {
                if (Forbidden(type.Namespace, used.Namespace))
                    violations.Add($"{type.FullName} → {used.FullName}");
            }
        }
        Assert.True(violations.Count == 0, "Layering violations:\n" + string.Join('\n', violations));
    }

    [Fact]
    public void No_source_file_of_a_layer_imports_or_qualifies_a_higher_or_sibling_layer()
    {
        var source = Path.Combine(RepositoryRoot(), "src", Root);
        var violations = new SortedSet<string>();
        foreach (var file in Directory.EnumerateFiles(source, "*.cs", SearchOption.AllDirectories))
        {
            if (file.Contains($"{Path.DirectorySeparatorChar}obj{Path.DirectorySeparatorChar}"))
                continue;
            var text = File.ReadAllText(file);
            var declared = NamespaceDeclaration().Match(text);
            if (!declared.Success)
                continue;
            var own = declared.Groups[1].Value;
            foreach (var line in text.Split('\n').Select(l => l.Trim()).Where(l => !l.StartsWith("//")))
            {
                foreach (Match used in QualifiedNamespace().Matches(line))
                {
                    var name = used.Groups[1].Value;
                    if (Forbidden(own, name.StartsWith(Root + ".") ? name : $"{Root}.{name}"))
                        violations.Add($"{Path.GetRelativePath(source, file)}: {line}");
                }
            }
        }
        Assert.True(violations.Count == 0, "Layering violations:\n" + string.Join('\n', violations));
    }

    [Fact]
    public void The_rule_rejects_upward_and_sibling_references_and_accepts_downward_ones()
    {
        // Negative controls: what the old code did (the kernel geometry naming the retention launcher, the device
        // policy naming a GEMM tile) and a sibling reference are violations.
        Assert.True(Forbidden("RetNet.Ilgpu.Kernels", "RetNet.Ilgpu.Retention"));
        Assert.True(Forbidden("RetNet.Ilgpu.Devices", "RetNet.Ilgpu.Kernels.Gemm"));
        Assert.True(Forbidden("RetNet.Ilgpu.Attention", "RetNet.Ilgpu.Retention"));
        Assert.True(Forbidden("RetNet.Ilgpu.Tensors", "RetNet.Ilgpu.Model"));
        Assert.False(Forbidden("RetNet.Ilgpu.Retention", "RetNet.Ilgpu.Kernels.Gemm"));
        Assert.False(Forbidden("RetNet.Ilgpu.Kernels.Gemm", "RetNet.Ilgpu.Kernels"));
        Assert.False(Forbidden("RetNet.Ilgpu.Model", "RetNet.Ilgpu.Attention"));
        Assert.True(Forbidden("RetNet.Ilgpu.Model", "RetNet.Ilgpu.Training"));
        Assert.True(Forbidden("RetNet.Ilgpu.Training", "RetNet.Ilgpu.Generation"));
        Assert.False(Forbidden("RetNet.Ilgpu.Training.Data", "RetNet.Ilgpu.Model"));
        Assert.False(Forbidden("RetNet.Ilgpu.Kernels", "System.Reflection"));
        // The source scan sees both spellings of a namespace.
        Assert.Equal("RetNet.Ilgpu.Retention", QualifiedNamespace().Match("using RetNet.Ilgpu.Retention;").Groups[1].Value);
        Assert.Equal("Kernels", QualifiedNamespace().Match("var s = Kernels.Launch.Spread(device, n);").Groups[1].Value);
        Assert.DoesNotMatch(QualifiedNamespace(), "var x = config.Retention.Heads;");
    }

    /// <summary>True when code in namespace <paramref name="user"/> must not use namespace <paramref name="used"/>:
    /// <paramref name="user"/> lies in a checked layer and <paramref name="used"/> is a library namespace in a higher
    /// layer, a sibling of the same layer, or outside the checked layers.</summary>
    private static bool Forbidden(string? user, string? used)
    {
        var from = LayerOf(user, out var fromName);
        if (from < 0 || used is null || !(used == Root || used.StartsWith(Root + ".", StringComparison.Ordinal)))
            return false;
        var to = LayerOf(used, out var toName);
        return to < 0 || to > from || (to == from && toName != fromName);
    }

    private static int LayerOf(string? ns, out string? name)
    {
        name = ns is not null && ns.StartsWith(Root + ".", StringComparison.Ordinal)
            ? ns[(Root.Length + 1)..].Split('.')[0]
            : null;
        var first = name;
        return Array.FindIndex(Layers, layer => layer.Contains(first));
    }

    /// <summary>Every type <paramref name="type"/>'s declaration names: base type, interfaces, fields, properties,
    /// events, method and constructor signatures, generic constraints and attribute types (compiler-generated
    /// closures included, whose fields are the captured locals of method bodies).</summary>
    private static IEnumerable<Type> Referenced(Type type)
    {
        const BindingFlags all = BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Static |
                                 BindingFlags.Instance | BindingFlags.DeclaredOnly;
        var named = new List<Type?> { type.BaseType };
        named.AddRange(type.GetInterfaces());
        named.AddRange(type.GetCustomAttributesData().Select(a => a.AttributeType));
        named.AddRange(type.GetFields(all).Select(f => f.FieldType));
        named.AddRange(type.GetProperties(all).Select(p => p.PropertyType));
        named.AddRange(type.GetEvents(all).Select(e => e.EventHandlerType));
        foreach (var method in type.GetMethods(all).Cast<MethodBase>().Concat(type.GetConstructors(all)))
        {
            if (method is MethodInfo info)
                named.Add(info.ReturnType);
            named.AddRange(method.GetParameters().Select(p => p.ParameterType));
            if (method.IsGenericMethodDefinition)
                named.AddRange(method.GetGenericArguments().SelectMany(a => a.GetGenericParameterConstraints()));
            foreach (var attribute in method.GetCustomAttributesData())
            {
                named.Add(attribute.AttributeType);
                named.AddRange(attribute.NamedArguments.Select(a => a.TypedValue.Value).OfType<Type>());
                named.AddRange(attribute.NamedArguments.Select(a => a.TypedValue.Value)
                    .OfType<IEnumerable<CustomAttributeTypedArgument>>().SelectMany(v => v).Select(v => v.Value)
                    .OfType<Type>());
            }
        }
        return named.OfType<Type>().SelectMany(Expand).Where(t => t != type);
    }

    private static IEnumerable<Type> Expand(Type type)
    {
        if (type.HasElementType)
            return Expand(type.GetElementType()!);
        if (type.IsGenericParameter)
            return [];
        return type.IsGenericType && !type.IsGenericTypeDefinition
            ? [type.GetGenericTypeDefinition(), .. type.GetGenericArguments().SelectMany(Expand)]
            : [type];
    }

    private static string RepositoryRoot()
    {
        for (var folder = new DirectoryInfo(AppContext.BaseDirectory); folder is not null; folder = folder.Parent)
        {
            if (File.Exists(Path.Combine(folder.FullName, "RetNet.Ilgpu.sln")))
                return folder.FullName;
        }
        throw new DirectoryNotFoundException($"No RetNet.Ilgpu.sln above {AppContext.BaseDirectory}.");
    }

    [GeneratedRegex(@"^namespace\s+([\w.]+)\s*;", RegexOptions.Multiline)]
    private static partial Regex NamespaceDeclaration();

    /// <summary>A library namespace as a using directive or a qualified name writes it: <c>RetNet.Ilgpu.X</c>, or
    /// <c>X.Type</c> for a namespace X of the library resolved from inside it (not after a dot: that is a member).</summary>
    [GeneratedRegex(@"(?<![\w.])((?:RetNet\.Ilgpu\.)?(?:Devices|Tensors|Kernels|Retention|Attention|Model|Transformer|Generation|Training|Verification|Benchmarks|IO|Tokenizers))(?=\.[A-Z]|;)")]
    private static partial Regex QualifiedNamespace();
}
