using RetNet.Ilgpu.Kernels;

namespace RetNet.Ilgpu.Tests.Kernels;

public sealed class KernelRegistryTests
{
    [Fact]
    public void Every_kernel_method_of_the_library_is_registered()
    {
        var missing = KernelRegistry.FindUnregisteredKernelMethods()
            .Select(m => $"{m.DeclaringType!.FullName}.{m.Name}")
            .ToList();
        Assert.True(missing.Count == 0, "Kernel methods without [Kernel]: " + string.Join(", ", missing));
    }

    [Fact]
    public void Registry_lists_each_specialisation_once()
    {
        var names = KernelRegistry.All.Select(k => k.Name).ToList();
        Assert.NotEmpty(names);
        Assert.Equal(names.Count, names.Distinct().Count());
        Assert.All(KernelRegistry.All, k => Assert.False(k.Method.ContainsGenericParameters, k.Name));
    }

    public static TheoryData<string> KernelNames => new(KernelRegistry.All.Select(k => k.Name));

    [Theory, MemberData(nameof(KernelNames))]
    public void Kernel_compiles_to_ptx_and_opencl(string name)
    {
        var kernel = KernelRegistry.All.Single(k => k.Name == name);
        var failures = KernelCompileCheck.Run([kernel], KernelCompileCheck.Targets)
            .Where(r => !r.Succeeded)
            .Select(r => $"{KernelCompileCheck.Title(r.Target)}: {r.Error}")
            .ToList();
        Assert.True(failures.Count == 0, string.Join(Environment.NewLine, failures));
    }

    [Fact]
    public void Generated_sources_look_like_ptx_and_opencl_c()
    {
        var kernel = KernelRegistry.All.First();
        // ILGPU writes the lowest .target the kernel needs (sm_80 PTX also loads on sm_90), so only the form is checked.
        foreach (var target in new[] { CompileTarget.PtxSm80, CompileTarget.PtxSm90 })
        {
            var ptx = KernelCompileCheck.GenerateSource(kernel, target);
            Assert.Contains(".target sm_", ptx);
            Assert.Contains(".entry", ptx);
        }
        foreach (var target in new[] { CompileTarget.OpenClAmd, CompileTarget.OpenClIntel })
            Assert.Contains("kernel void", KernelCompileCheck.GenerateSource(kernel, target));
    }
}
