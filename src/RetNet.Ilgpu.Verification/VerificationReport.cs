using System.Text.Json;

namespace RetNet.Ilgpu.Verification;

/// <summary>The JSON form of a verification run, what <c>retnet verify --json FILE</c> writes.</summary>
public static class VerificationReport
{
    private static readonly JsonSerializerOptions Options = new(JsonSerializerDefaults.Web) { WriteIndented = true };

    /// <summary>
    /// An array of records {kernel, device, shape, maxError, tolerance, passed, skipped, note}, one per row. JSON has
    /// no infinity, so a maxError that is not finite (a NaN output, a wrong length, an exception) is written as null.
    /// </summary>
    public static string ToJson(IEnumerable<VerificationResult> results)
    {
        ArgumentNullException.ThrowIfNull(results);
        return JsonSerializer.Serialize(results.Select(r => new
        {
            kernel = r.Kernel,
            device = r.Device,
            shape = r.Shape,
            maxError = double.IsFinite(r.MaxError) ? r.MaxError : (double?)null,
            tolerance = r.Tolerance,
            passed = r.Passed,
            skipped = r.Skipped,
            note = r.Note,
        }).ToList(), Options);
    }
}
