using System.Text;
using System.Text.Json;
using RetNet.Ilgpu.Devices;

namespace RetNet.Ilgpu.Kernels;

/// <summary>One kernel of a PTX export: its files and the launch geometry the library gives it on an NVIDIA GPU.</summary>
/// <param name="Name">The registry name.</param>
/// <param name="Grouping">"Implicit" or "Explicit".</param>
/// <param name="ThreadsPerGroup">Threads per group of an explicit kernel; null when the accelerator picks it.</param>
/// <param name="DynamicSharedBytes">Dynamic shared memory per group, in bytes.</param>
/// <param name="Geometry">Where the geometry comes from, in words.</param>
/// <param name="Files">The PTX file of each architecture ("sm_80", "sm_90"), relative to the export folder.</param>
public sealed record PtxManifestEntry(string Name, string Grouping, int? ThreadsPerGroup, int DynamicSharedBytes,
    string Geometry, IReadOnlyDictionary<string, string> Files);

/// <summary>
/// Writes every kernel's PTX for sm_80 and sm_90 into a folder, with a manifest (manifest.json) of the launch geometry
/// the library uses on an NVIDIA GPU: the input of tools/kernel-report, which runs ptxas on the files.
/// </summary>
public static class KernelPtxExport
{
    /// <summary>The manifest's file name inside the export folder.</summary>
    public const string ManifestName = "manifest.json";

    /// <summary>The architectures exported, with the compile target of each.</summary>
    public static IReadOnlyList<(string Arch, CompileTarget Target)> Architectures { get; } =
        [("sm_80", CompileTarget.PtxSm80), ("sm_90", CompileTarget.PtxSm90)];

    private static readonly JsonSerializerOptions JsonOptions = new(JsonSerializerDefaults.Web)
    {
        WriteIndented = true,
        // Kernel names hold angle brackets; the manifest is read by tools, not embedded in HTML.
        Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
    };

    /// <summary>
    /// Compiles <paramref name="kernels"/> for both architectures into <paramref name="directory"/> (created if
    /// missing) and writes the manifest; returns its entries.
    /// </summary>
    /// <exception cref="Exception">Whatever ILGPU raises when a kernel does not compile.</exception>
    public static IReadOnlyList<PtxManifestEntry> Write(string directory, IEnumerable<KernelDescriptor> kernels)
    {
        Directory.CreateDirectory(directory);
        var limits = LaunchLimits.NvidiaGpu;
        var entries = new List<PtxManifestEntry>();
        foreach (var kernel in kernels)
        {
            var files = new Dictionary<string, string>();
            foreach (var (arch, target) in Architectures)
            {
                var file = $"{FileStem(kernel.Name)}.{arch}.ptx";
                File.WriteAllText(Path.Combine(directory, file), KernelCompileCheck.GenerateSource(kernel, target));
                files[arch] = file;
            }
            var geometry = KernelGeometry.For(kernel, limits);
            entries.Add(new PtxManifestEntry(kernel.Name, kernel.Grouping.ToString(), geometry.ThreadsPerGroup,
                geometry.DynamicSharedBytes, geometry.Rule, files));
        }
        var manifest = new
        {
            DeviceClass = limits.Class.ToString(),
            limits.MaxGroupSize,
            limits.WarpSize,
            Kernels = entries,
        };
        File.WriteAllText(Path.Combine(directory, ManifestName), JsonSerializer.Serialize(manifest, JsonOptions));
        return entries;
    }

    /// <summary>A file-name-safe form of a registry name: letters, digits, '.', '-' and '_' only.</summary>
    public static string FileStem(string name)
    {
        var builder = new StringBuilder(name.Length);
        foreach (var c in name)
            builder.Append(char.IsAsciiLetterOrDigit(c) || c is '.' or '-' or '_' ? c : '_');
        return builder.ToString().TrimEnd('_');
    }
}
