using System.Text.Json;
using RetNet.Ilgpu.Kernels;
using RetNet.Ilgpu.Tests.Support;
using RetNet.Ilgpu.Verification;

namespace RetNet.Ilgpu.Tests.Verification;

/// <summary>
/// <c>retnet verify</c>'s library side: it passes on the test device and exercises every registered kernel there, its
/// JSON has the documented fields, and it can fail: a wrong output fails its check and the run, a kernel no check
/// launched is reported, and its tolerance rule is the project's.
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
    public void The_library_tolerance_rule_agrees_with_the_tests_rule()
    {
        var random = new Random(5);
        for (var trial = 0; trial < 200; trial++)
        {
            var n = 1 + random.Next(5);
            var expected = Enumerable.Range(0, n).Select(_ => (random.NextDouble() - 0.5) * Math.Pow(10, random.Next(-3, 3)))
                .ToArray();
            var actual = expected.Select(e => (float)(e * (1 + (random.NextDouble() - 0.5) * 4e-4))).ToArray();
            var floor = random.Next(3) == 0 ? random.NextDouble() : 0;
            var tests = Numerics.Check("x", actual, expected, Numerics.DefaultTolerance, floor);
            var (passed, error) = ToleranceRule.Compare(actual, expected, Numerics.DefaultTolerance, floor);
            Assert.Equal(tests.Passed, passed);
            Assert.Equal(tests.MaxDifference / Math.Max(expected.Max(Math.Abs), floor), error, 1e-12);
        }
        Assert.False(ToleranceRule.Compare([0f, 0f], [1.0, -2.0], 1e-4, 0).Passed);
        Assert.False(ToleranceRule.Compare([float.NaN], [1.0], 1e-4, 0).Passed);
        Assert.Equal(double.PositiveInfinity, ToleranceRule.Compare([1f], [1.0, 2.0], 1e-4, 0).RelativeError);
        Assert.Equal((true, 0.0), ToleranceRule.Compare([0f], [0.0], 1e-4, 0));
    }
}
