using System.Reflection;
using System.Text.Json;
using ILGPU;
using ILGPU.Runtime;
using RetNet.Ilgpu.Kernels;
using RetNet.Ilgpu.Kernels.Gemm;
using RetNet.Ilgpu.Tests.Support;
using RetNet.Ilgpu.Verification;

namespace RetNet.Ilgpu.Tests.Verification;

/// <summary>
/// <c>retnet verify</c>'s library side: it passes on the test device and exercises every registered kernel there, its
/// JSON has the documented fields, and it can fail: a wrong output fails its check and the run, a kernel no check
/// launched is reported, and a row's error is relative to the reference's scale.
/// </summary>
[Collection(DeviceCollection.Name)]
public sealed class DeviceVerifierTests(DeviceFixture fixture)
{
    private readonly RetNetDevice device = fixture.Device;

    private const string NotExercised = "not exercised by any check";

    [Fact]
    public void Every_check_passes_and_every_registered_kernel_is_exercised_on_the_test_device()
    {
        var streamed = new List<VerificationResult>();
        var results = DeviceVerifier.Run(device, progress: streamed.Add);

        Assert.Equal(results, streamed);
        Assert.All(results, r => Assert.True(r.Passed, $"{r.Kernel} {r.Shape}: {r.MaxError:G3} > {r.Tolerance:G2} ({r.Note})"));
        Assert.DoesNotContain(results, r => r.Note == NotExercised);
        Assert.All(results.Where(r => !r.Skipped), r => Assert.True(r.MaxError <= r.Tolerance));
        Assert.All(results.Where(r => r.Skipped), r => Assert.StartsWith("skipped: ", r.Note));
        // Every group ran, at size 1 among others.
        foreach (var prefix in new[] { "Gemm", "Elementwise", "RmsNorm", "LayerNorm", "Reductions", "CrossEntropy",
                     "Conversion", "Embedding", "ThetaShift", "DecayNormalization", "AdamW", "ParallelRetention", "ChunkwiseRetention",
                     "RecurrentRetention", "CausalAttention", "LanguageModel", "LanguageModel" })
            Assert.Contains(results, r => r.Kernel.StartsWith(prefix, StringComparison.Ordinal) && !r.Skipped);
        Assert.Contains(results, r => r.Shape == "n=1" && !r.Skipped);
    }

    [Fact]
    public void Every_launchable_gemm_tile_is_checked_on_a_product_of_more_than_two_by_two_tiles()
    {
        var results = DeviceVerifier.Run(device, new VerifyOptions { Groups = ["gemm"] });

        foreach (var tile in GemmTiles.All)
        {
            var spanning = results.Where(r => r.Kernel == $"Gemm tiled {tile.BM}x{tile.BN}x{tile.BK}" &&
                                              Dimension(r.Shape, "M") > 2 * tile.BM &&
                                              Dimension(r.Shape, "N") > 2 * tile.BN).ToList();
            Assert.NotEmpty(spanning);
            Assert.All(spanning, r =>
            {
                Assert.Equal(GemmTiles.Threads(tile) > device.MaxGroupSize, r.Skipped);
                Assert.True(r.Passed, $"{r.Kernel} {r.Shape}: {r.Note}");
            });
        }
        // The tile the device's policy picks is among those that fit, so at least one of these rows ran.
        Assert.Contains(GemmTiles.All, tile => GemmTiles.Threads(tile) <= device.MaxGroupSize);

        static int Dimension(string shape, string name) => int.Parse(
            shape.Split(' ').Single(part => part.StartsWith(name + "=", StringComparison.Ordinal))[(name.Length + 1)..],
            System.Globalization.CultureInfo.InvariantCulture);
    }

    [Fact]
    public void A_wrong_output_fails_its_check_and_the_run()
    {
        var results = DeviceVerifier.Run(device, new VerifyOptions { Groups = ["gemm"], PerturbPrefix = "Gemm simple" });

        var perturbed = results.Where(r => r.Kernel == "Gemm simple").ToList();
        Assert.Equal(8, perturbed.Count);
        Assert.All(perturbed, r =>
        {
            Assert.False(r.Passed);
            Assert.True(r.MaxError > r.Tolerance, $"{r.Shape}: {r.MaxError}");
            Assert.Equal("c out of tolerance", r.Note);
        });
        Assert.All(results.Where(r => r.Kernel.StartsWith("Gemm", StringComparison.Ordinal) && r.Kernel != "Gemm simple"),
            r => Assert.True(r.Passed, $"{r.Kernel} {r.Shape}"));
    }

    [Fact]
    public void A_kernel_is_recorded_as_exercised_when_its_launcher_runs_not_when_it_is_fetched()
    {
        var recorder = new HashSet<MethodInfo>();
        var previous = device.KernelRecorder;
        device.KernelRecorder = recorder;
        try
        {
            using var values = Tensor.Zeros(device, 5);
            Action<AcceleratorStream, Index1D, ArrayView<float>> Fetch() => device.Kernel(ProbeKernels.FillOnes, accelerator =>
                accelerator.LoadAutoGroupedKernel<Index1D, ArrayView<float>>(ProbeKernels.FillOnes));

            // Negative control: fetched (loaded, then cached) but never launched.
            Fetch();
            Fetch();
            Assert.Empty(recorder);

            Fetch()(device.Stream, values.Length, values.View);
            device.Synchronize();
            Assert.Equal([((Action<Index1D, ArrayView<float>>)ProbeKernels.FillOnes).Method], recorder);
            Assert.Equal([1f, 1f, 1f, 1f, 1f], values.ToHost());
        }
        finally
        {
            device.KernelRecorder = previous;
        }

        // Without a recorder the launcher is the cached one itself, with nothing wrapped around it.
        var plain = device.Kernel(ProbeKernels.FillOnes, accelerator =>
            accelerator.LoadAutoGroupedKernel<Index1D, ArrayView<float>>(ProbeKernels.FillOnes));
        Assert.Same(plain, device.Kernel(ProbeKernels.FillOnes, accelerator =>
            accelerator.LoadAutoGroupedKernel<Index1D, ArrayView<float>>(ProbeKernels.FillOnes)));
    }

    [Fact]
    public void Kernels_no_selected_check_launches_are_reported_as_not_exercised()
    {
        var results = DeviceVerifier.Run(device, new VerifyOptions { Groups = ["elementwise"] });

        var reported = results.Where(r => r.Note == NotExercised).ToList();
        Assert.All(reported, r => Assert.False(r.Passed));
        Assert.Equal(
            KernelRegistry.All.Select(k => k.Name).Where(n => !n.StartsWith("ElementwiseKernels.", StringComparison.Ordinal)),
            reported.Select(r => r.Kernel));
    }

    [Fact]
    public void An_unknown_group_is_rejected_before_anything_runs()
    {
        var error = Assert.Throws<ArgumentException>(() =>
            DeviceVerifier.Run(device, new VerifyOptions { Groups = ["gemm", "softmax"] }));
        Assert.Contains("'softmax'", error.Message);
        Assert.Contains("retention", error.Message);
    }

    [Fact]
    public void Json_records_have_the_documented_fields()
    {
        var results = DeviceVerifier.Run(device, new VerifyOptions { Groups = ["rotation"] }).ToList();
        results.Add(results[0] with { MaxError = double.PositiveInfinity, Passed = false, Note = "an exception" });

        using var json = JsonDocument.Parse(VerificationReport.ToJson(results));
        var records = json.RootElement.EnumerateArray().ToList();
        Assert.Equal(results.Count, records.Count);
        foreach (var (record, result) in records.Zip(results))
        {
            Assert.Equal(["kernel", "device", "shape", "maxError", "tolerance", "passed", "skipped", "note"],
                record.EnumerateObject().Select(p => p.Name));
            Assert.Equal(result.Kernel, record.GetProperty("kernel").GetString());
            Assert.Equal(result.Device, record.GetProperty("device").GetString());
            Assert.Equal(result.Shape, record.GetProperty("shape").GetString());
            Assert.Equal(result.Tolerance, record.GetProperty("tolerance").GetDouble());
            Assert.Equal(result.Passed, record.GetProperty("passed").GetBoolean());
            if (double.IsFinite(result.MaxError))
                Assert.Equal(result.MaxError, record.GetProperty("maxError").GetDouble());
            else
                Assert.Equal(JsonValueKind.Null, record.GetProperty("maxError").ValueKind);
        }
        Assert.Contains(device.ToString(), records[0].GetProperty("device").GetString());
    }

    [Fact]
    public void A_rows_error_is_the_largest_difference_over_the_references_scale_or_its_floor()
    {
        // The rule itself (the one the tests use through Numerics.Check) is specified in NumericsTests.
        var verdict = ToleranceRule.Compare([1f, 2.5f, 3f], [1.0, 2.0, 3.0]);
        Assert.False(verdict.Passed);
        Assert.Equal(0.5 / 3, verdict.RelativeError, 12);
        Assert.Equal(0.5 / 10, ToleranceRule.Compare([1f, 2.5f, 3f], [1.0, 2.0, 3.0], floor: 10).RelativeError, 12);
        Assert.False(ToleranceRule.Compare([0f, 0f], [1.0, -2.0]).Passed);
        Assert.Equal(double.PositiveInfinity, ToleranceRule.Compare([float.NaN], [1.0]).RelativeError);
        Assert.Equal(double.PositiveInfinity, ToleranceRule.Compare([1f, 2f], [1.0, double.NaN]).RelativeError);
        Assert.Equal(double.PositiveInfinity, ToleranceRule.Compare([1f], [1.0, 2.0]).RelativeError);
        var exact = ToleranceRule.Compare([0f], [0.0]);
        Assert.True(exact.Passed);
        Assert.Equal(0.0, exact.RelativeError);
    }
}

/// <summary>A kernel of the tests' own, outside any registry.</summary>
public static class ProbeKernels
{
    /// <summary>Sets every element to 1.</summary>
    public static void FillOnes(Index1D index, ArrayView<float> values) => values[index] = 1f;
}
