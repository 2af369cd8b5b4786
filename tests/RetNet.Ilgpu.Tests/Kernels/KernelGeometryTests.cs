using System.Text.Json;
using RetNet.Ilgpu.Attention;
using RetNet.Ilgpu.Devices;
using RetNet.Ilgpu.Kernels;
using RetNet.Ilgpu.Kernels.CrossEntropy;
using RetNet.Ilgpu.Kernels.Gemm;
using RetNet.Ilgpu.Kernels.Normalization;
using RetNet.Ilgpu.Kernels.Reductions;
using RetNet.Ilgpu.Retention;
using RetNet.Ilgpu.Tests.Robustness;
using RetNet.Ilgpu.Tests.Support;

namespace RetNet.Ilgpu.Tests.Kernels;

[Collection(DeviceCollection.Name)]
public sealed class KernelGeometryTests(DeviceFixture fixture)
{
    private static readonly LaunchLimits Nvidia = LaunchLimits.NvidiaGpu;

    public static TheoryData<string> ExplicitKernelNames =>
        new(KernelRegistry.All.Where(k => k.Grouping == KernelGrouping.Explicit).Select(k => k.Name));

    [Theory, MemberData(nameof(ExplicitKernelNames))]
    public void Every_explicit_kernel_has_a_launch_geometry_within_the_group_limit(string name)
    {
        var geometry = KernelGeometry.For(KernelRegistry.All.Single(k => k.Name == name), Nvidia);
        Assert.NotNull(geometry.ThreadsPerGroup);
        Assert.InRange(geometry.ThreadsPerGroup!.Value, 1, Nvidia.MaxGroupSize);
        Assert.InRange(geometry.DynamicSharedBytes, 0, 48 * 1024);
    }

    [Fact]
    public void An_explicit_kernel_without_a_rule_is_reported_unknown_and_an_implicit_one_has_no_group_size()
    {
        var method = typeof(KernelGeometryTests).GetMethod(nameof(NotAKernel),
            System.Reflection.BindingFlags.Static | System.Reflection.BindingFlags.NonPublic)!;
        var unknown = KernelGeometry.For(new KernelDescriptor("Test.NotAKernel", method, KernelGrouping.Explicit), Nvidia);
        Assert.Null(unknown.ThreadsPerGroup);
        Assert.StartsWith("unknown", unknown.Rule);
        var simple = KernelRegistry.All.Single(k => k.Name == "GemmKernels.Simple");
        Assert.Null(KernelGeometry.For(simple, Nvidia).ThreadsPerGroup);
    }

    [Fact]
    public void Nvidia_geometry_is_what_each_launcher_rule_gives_a_1024_thread_warp_32_gpu()
    {
        // The launchers' rules evaluated for the NVIDIA limits, by the entry points the launchers call. CUDA has warp
        // shuffles, so the policy launches the sub-group variants there, in 256-thread groups.
        Assert.Equal(GroupReduction.SubGroups, DevicePolicy.ReductionFor(Nvidia));
        Assert.Equal((256, 1024), Of("ReductionKernels.ReduceSubGroup<SumReduction>"));
        var reduction = ReductionLaunch.For(Nvidia);
        Assert.Equal(new ReductionLaunch(256, 1024, GroupReduction.SubGroups), reduction);
        Assert.Equal((reduction.GroupSize, reduction.SharedMemory.ArraySize),
            Of("ReductionKernels.ReduceSubGroup<SquareSumReduction>"));
        Assert.Equal((256, 2048), Of("CrossEntropyKernels.RowPerSubGroups"));
        Assert.Equal(new CrossEntropyLaunch(CrossEntropyForm.RowPerSubGroups, 256), CrossEntropyLaunch.For(Nvidia));
        Assert.Equal((256, 2048), Of("NormalizationKernels.ForwardSubGroup<RmsNormalization>"));
        Assert.Equal((256, 2048), Of("NormalizationKernels.BackwardSubGroup<LayerNormalization>"));
        Assert.Equal(NormalizationForm.SubGroupPerRow, NormalizationOptions.For(Nvidia, 4096).Form);
        Assert.Equal(128, NormalizationOptions.For(Nvidia, 100).GroupSize);
        // The tree variants, which the NVIDIA policy does not launch, keep the shape their launchers would give them.
        Assert.Equal((256, 1024), Of("ReductionKernels.Reduce<SumReduction>"));
        Assert.Equal((256, 2048), Of("CrossEntropyKernels.RowPerGroup"));
        Assert.Equal((256, 1024), Of("NormalizationKernels.ForwardGroup<RmsNormalization>"));
        Assert.Equal((256, 1024), Of("NormalizationKernels.BackwardGroup<LayerNormalization>"));
        Assert.Equal((256, 0), Of("RetentionKernels.CausalTiled<RetentionTile32x64>"));
        Assert.Equal((256, 0), Of("AttentionKernels.KeyValueGradientTiled<AttentionTile16>"));
    }

    [Fact]
    public void Report_rules_name_the_variant_the_policy_launches()
    {
        var subGroup = Geometry("ReductionKernels.ReduceSubGroup<SumReduction>");
        var tree = Geometry("ReductionKernels.Reduce<SumReduction>");
        Assert.Contains("the device policy's reduction", subGroup.Rule);
        // Negative control: the variant the policy does not pick is marked as forced.
        Assert.Contains("forced", tree.Rule);
        Assert.DoesNotContain("forced", subGroup.Rule);
    }

    /// <summary>The reduction decisions evaluated from limits alone, for device classes not present here.</summary>
    [Theory]
    [InlineData(DeviceClass.AmdGpu, 256, 64, true, false, true, 256)]
    [InlineData(DeviceClass.IntelGpu, 512, 8, true, false, true, 256)]
    [InlineData(DeviceClass.AmdGpu, 256, 64, false, false, false, 256)]
    [InlineData(DeviceClass.OtherOpenCL, 4096, 4096, true, true, false, 16)]
    [InlineData(DeviceClass.OtherOpenCL, 32, 64, true, false, false, 32)]
    [InlineData(DeviceClass.CpuAccelerator, 16, 4, true, false, false, 16)]
    public void Policy_decides_the_reduction_from_limits_without_a_device(DeviceClass deviceClass, int maxGroup,
        int warp, bool subGroups, bool openClCpu, bool expectSubGroups, int expectedGroup)
    {
        var limits = new LaunchLimits(deviceClass, maxGroup, warp, subGroups, openClCpu);
        var expected = expectSubGroups ? GroupReduction.SubGroups : GroupReduction.SharedMemoryTree;
        Assert.Equal(expected, DevicePolicy.ReductionFor(limits));
        var launch = ReductionLaunch.For(limits);
        Assert.Equal(expected, launch.Reduction);
        Assert.Equal(expectedGroup, launch.GroupSize);
        if (deviceClass == DeviceClass.CpuAccelerator)
            return;
        Assert.Equal(expectSubGroups ? CrossEntropyForm.RowPerSubGroups : CrossEntropyForm.RowPerGroup,
            CrossEntropyLaunch.For(limits).Form);
        Assert.Equal(expectSubGroups ? NormalizationForm.SubGroupPerRow : NormalizationForm.GroupPerRow,
            NormalizationOptions.For(limits, 4096).Form);
        if (expectSubGroups)
            Assert.Equal(0, launch.GroupSize % DevicePolicy.SubGroupGranularityFor(limits));
    }

    [Fact]
    public void Gemm_tiles_report_the_group_of_the_tiled_launch_and_the_nvidia_tile_is_registered()
    {
        var tiles = KernelRegistry.All
            .Where(k => k.Method.DeclaringType == typeof(GemmKernels) && k.Method.Name == nameof(GemmKernels.Tiled))
            .ToList();
        Assert.NotEmpty(tiles);
        var shape = new GemmShape(3, 100, 70, 20);
        foreach (var kernel in tiles)
        {
            var tile = (IGemmTile)Activator.CreateInstance(kernel.Method.GetGenericArguments()[0])!;
            var launch = Gemm.TiledConfig(tile, shape);
            Assert.Equal(launch.GroupDim.Size, KernelGeometry.For(kernel, Nvidia).ThreadsPerGroup);
            Assert.Equal(launch.SharedMemoryConfig.ArraySize, KernelGeometry.For(kernel, Nvidia).DynamicSharedBytes);
        }
        var chosen = GemmTiles.Largest(Nvidia.MaxGroupSize).GetType();
        Assert.Contains(tiles, k => k.Method.GetGenericArguments()[0] == chosen);
        // Negative control: tiles of different sizes do not all report the same group.
        Assert.True(tiles.Count < 2 ||
                    tiles.Select(k => KernelGeometry.For(k, Nvidia).ThreadsPerGroup).Distinct().Count() > 1);
    }

    [Fact]
    public void The_launchers_device_entry_points_give_the_geometry_of_the_devices_limits()
    {
        // What the launchers call (with the device) and what the report calls (with limits) must agree on any device.
        var device = fixture.Device;
        var limits = device.Limits;
        Assert.Equal(ReductionLaunch.For(device), ReductionLaunch.For(limits));
        Assert.Equal(CrossEntropyLaunch.For(device), CrossEntropyLaunch.For(limits));
        Assert.Equal(NormalizationOptions.For(device, 300), NormalizationOptions.For(limits, 300));
        Assert.Equal(device.MaxGroupSize, limits.MaxGroupSize);
        Assert.Equal(device.IsCpuSimulator, limits.IsCpuAccelerator);
        Assert.Equal(RetentionLaunch.TiledConfigurations(device.MaxGroupSize)[0].Name,
            RetentionLaunch.Tiled<RetentionTile16>(RetentionLaunch.TiledGroupSize(limits.MaxGroupSize)).Name);
        Assert.Equal(AttentionLaunch.TiledConfigurations(device.MaxGroupSize)[0].Name,
            AttentionLaunch.Tiled<AttentionTile16>(AttentionLaunch.TiledGroupSize(limits.MaxGroupSize)).Name);
        // The report's geometry for the reduction kernel this device's policy launches is the launch the library makes.
        var launched = ReductionLaunch.For(device);
        Assert.Equal(device.Policy.Reduction, launched.Reduction);
        var name = launched.Reduction == GroupReduction.SubGroups
            ? "ReductionKernels.ReduceSubGroup<SumReduction>"
            : "ReductionKernels.Reduce<SumReduction>";
        var reduce = KernelRegistry.All.Single(k => k.Name == name);
        Assert.Equal(launched.GroupSize, KernelGeometry.For(reduce, limits).ThreadsPerGroup);
        Assert.Equal(launched.SharedMemory.ArraySize, KernelGeometry.For(reduce, limits).DynamicSharedBytes);
        // Negative control: the CPU accelerator's reduction shape is not the GPU's.
        var cpu = new LaunchLimits(DeviceClass.CpuAccelerator, 16, 4, SupportsSubGroups: true, IsOpenClCpu: false);
        var tree = KernelRegistry.All.Single(k => k.Name == "ReductionKernels.Reduce<SumReduction>");
        Assert.NotEqual(KernelGeometry.For(tree, Nvidia), KernelGeometry.For(tree, cpu));
    }

    [Fact]
    public void File_stems_keep_names_readable_and_safe()
    {
        Assert.Equal("GemmKernels.Tiled_GemmTile64x64", KernelPtxExport.FileStem("GemmKernels.Tiled<GemmTile64x64>"));
        Assert.Equal("AdamWKernels.Update", KernelPtxExport.FileStem("AdamWKernels.Update"));
    }

    [Fact]
    public void Retnet_kernels_ptx_writes_ptx_and_a_manifest_for_the_filtered_kernels()
    {
        var directory = Path.Combine(Path.GetTempPath(), $"retnet-ptx-{Guid.NewGuid():N}");
        try
        {
            var (code, _, output) = ChildProcess.Run(ChildProcess.RetnetDll,
                ["kernels", "--ptx", directory, "--filter", "Reduce<Sum"]);
            Assert.True(code == 0, string.Join('\n', output));
            using var manifest = JsonDocument.Parse(File.ReadAllText(Path.Combine(directory, KernelPtxExport.ManifestName)));
            Assert.Equal("NvidiaGpu", manifest.RootElement.GetProperty("deviceClass").GetString());
            var kernel = Assert.Single(manifest.RootElement.GetProperty("kernels").EnumerateArray());
            Assert.Equal("ReductionKernels.Reduce<SumReduction>", kernel.GetProperty("name").GetString());
            Assert.Equal(256, kernel.GetProperty("threadsPerGroup").GetInt32());
            Assert.Equal(1024, kernel.GetProperty("dynamicSharedBytes").GetInt32());
            foreach (var arch in new[] { "sm_80", "sm_90" })
            {
                var ptx = File.ReadAllText(Path.Combine(directory, kernel.GetProperty("files").GetProperty(arch).GetString()!));
                Assert.StartsWith("//\n// Generated by ILGPU", ptx.ReplaceLineEndings("\n"));
                Assert.Matches(@"(?m)^\.version \d+\.\d+$", ptx);
                Assert.Matches(@"(?m)^\.target sm_\d+$", ptx);
                Assert.Contains(".entry Kernel_Reduce", ptx);
            }
            // Negative control: a filter that matches nothing fails and writes no manifest.
            var empty = Path.Combine(directory, "empty");
            var (emptyCode, _, _) = ChildProcess.Run(ChildProcess.RetnetDll,
                ["kernels", "--ptx", empty, "--filter", "NoSuchKernel"]);
            Assert.Equal(1, emptyCode);
            Assert.False(File.Exists(Path.Combine(empty, KernelPtxExport.ManifestName)));
        }
        finally
        {
            if (Directory.Exists(directory))
                Directory.Delete(directory, recursive: true);
        }
    }

    private static (int Threads, int Shared) Of(string name)
    {
        var geometry = Geometry(name);
        return (geometry.ThreadsPerGroup ?? -1, geometry.DynamicSharedBytes);
    }

    private static KernelGeometry Geometry(string name) =>
        KernelGeometry.For(KernelRegistry.All.Single(k => k.Name == name), Nvidia);

    private static void NotAKernel()
    {
    }
}
