using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Backends;
using ILGPU.Backends.EntryPoints;
using ILGPU.Backends.OpenCL;
using ILGPU.Backends.PTX;
using ILGPU.Runtime;
using ILGPU.Runtime.CPU;
using ILGPU.Runtime.Cuda;
using ILGPU.Runtime.OpenCL;

namespace RetNet.Ilgpu.Kernels;

/// <summary>A code generator the compile check targets.</summary>
public enum CompileTarget
{
    /// <summary>PTX for NVIDIA Ampere (sm_80).</summary>
    PtxSm80,

    /// <summary>PTX for NVIDIA Hopper (sm_90).</summary>
    PtxSm90,

    /// <summary>OpenCL C 2.0 for AMD devices.</summary>
    OpenClAmd,

    /// <summary>OpenCL C 2.0 for Intel devices.</summary>
    OpenClIntel,
}

/// <summary>The outcome of compiling one kernel for one target.</summary>
/// <param name="Kernel">The kernel.</param>
/// <param name="Target">The target.</param>
/// <param name="Error">Null on success, else the compiler's message.</param>
/// <param name="CodeLength">Characters of generated PTX or OpenCL C (0 on failure).</param>
public sealed record CompileResult(KernelDescriptor Kernel, CompileTarget Target, string? Error, int CodeLength)
{
    /// <summary>True when the kernel compiled.</summary>
    public bool Succeeded => Error is null;
}

/// <summary>
/// Compiles kernels to PTX and OpenCL C through ILGPU's backends without any GPU present, so a kernel that would only
/// fail on a GPU fails in CI instead.
/// </summary>
public static class KernelCompileCheck
{
    /// <summary>Every target, in table order.</summary>
    public static IReadOnlyList<CompileTarget> Targets { get; } =
        [CompileTarget.PtxSm80, CompileTarget.PtxSm90, CompileTarget.OpenClAmd, CompileTarget.OpenClIntel];

    /// <summary>The short column title of a target.</summary>
    public static string Title(CompileTarget target) => target switch
    {
        CompileTarget.PtxSm80 => "PTX sm_80",
        CompileTarget.PtxSm90 => "PTX sm_90",
        CompileTarget.OpenClAmd => "OpenCL AMD",
        _ => "OpenCL Intel",
    };

    /// <summary>Compiles every kernel for every target.</summary>
    public static IReadOnlyList<CompileResult> Run(IEnumerable<KernelDescriptor> kernels, IEnumerable<CompileTarget> targets)
    {
        var kernelList = kernels.ToList();
        var results = new List<CompileResult>();
        foreach (var target in targets)
        {
            Context? context = null;
            Backend? backend = null;
            try
            {
                foreach (var kernel in kernelList)
                {
                    if (context is null)
                    {
                        context = Context.Create(builder => builder.DefaultCPU().EnableAlgorithms());
                        backend = CreateBackend(context, target);
                    }
                    var result = Compile(backend!, kernel, target);
                    results.Add(result);
                    if (!result.Succeeded)
                    {
                        // A failed compile can leave a context poisoned: start the next kernel on a fresh one.
                        backend!.Dispose();
                        context.Dispose();
                        backend = null;
                        context = null;
                    }
                }
            }
            finally
            {
                backend?.Dispose();
                context?.Dispose();
            }
        }
        return results;
    }

    /// <summary>Compiles one kernel for one target and returns the generated source (PTX or OpenCL C).</summary>
    /// <exception cref="Exception">Whatever ILGPU raises when the kernel does not compile.</exception>
    public static string GenerateSource(KernelDescriptor kernel, CompileTarget target)
    {
        using var context = Context.Create(builder => builder.DefaultCPU().EnableAlgorithms());
        using var backend = CreateBackend(context, target);
        return SourceOf(backend.Compile(EntryPointOf(kernel), LaunchBounds.Of(kernel.Method)));
    }

    private static CompileResult Compile(Backend backend, KernelDescriptor kernel, CompileTarget target)
    {
        try
        {
            var code = SourceOf(backend.Compile(EntryPointOf(kernel), LaunchBounds.Of(kernel.Method)));
            return new CompileResult(kernel, target, null, code.Length);
        }
        catch (Exception e)
        {
            var inner = e;
            while (inner.InnerException is not null)
                inner = inner.InnerException;
            return new CompileResult(kernel, target, $"{inner.GetType().Name}: {inner.Message}", 0);
        }
    }

    private static EntryPointDescription EntryPointOf(KernelDescriptor kernel) =>
        kernel.Grouping == KernelGrouping.Explicit
            ? EntryPointDescription.FromExplicitlyGroupedKernel(kernel.Method)
            : EntryPointDescription.FromImplicitlyGroupedKernel(kernel.Method);

    private static string SourceOf(CompiledKernel compiled) => compiled switch
    {
        PTXCompiledKernel ptx => ptx.PTXAssembly,
        CLCompiledKernel cl => cl.Source,
        _ => throw new InvalidOperationException($"Unexpected compiled kernel type {compiled.GetType().Name}."),
    };

    private static Backend CreateBackend(Context context, CompileTarget target) => target switch
    {
        CompileTarget.PtxSm80 => new PTXBackend(context, CudaArchitecture.SM_80, CudaInstructionSet.ISA_80, nvvmAPI: null!),
        CompileTarget.PtxSm90 => new PTXBackend(context, CudaArchitecture.SM_90, CudaInstructionSet.ISA_83, nvvmAPI: null!),
        CompileTarget.OpenClAmd => new CLBackend(
            context, new CLCapabilityContext(true, true, true, true, true), CLDeviceVendor.AMD, CLCVersion.CL20),
        _ => new CLBackend(
            context, new CLCapabilityContext(true, true, true, true, true), CLDeviceVendor.Intel, CLCVersion.CL20),
    };
}
