using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using RetNet.Ilgpu.IO;
using RetNet.Ilgpu.Verification;

namespace RetNet.Ilgpu.Cli.Commands;

/// <summary>
/// <c>retnet verify [--device …] [--json FILE]</c>: every kernel in every launch configuration and each model form
/// against the double-precision references on one device (docs/VERIFY.md); exit code 1 if any check fails or a
/// registered kernel is not exercised.
/// </summary>
internal static class VerifyCommand
{
    public static Command Create()
    {
        var device = CommonOptions.Device();
        var json = CommonOptions.Json();
        var command = new Command("verify",
            "Check every kernel (each tile, group size and form) and each model form against its float64 reference " +
            "on a device; exit 1 if anything fails or a registered kernel is left unexercised.")
        {
            device, json,
        };
        command.SetAction(parse => CommonOptions.Run(() =>
        {
            using var opened = CommonOptions.OpenDevice(parse.GetValue(device));
            // Names read better left-aligned: padded here, the streaming table right-aligns what is left.
            const int kernelWidth = 48, shapeWidth = 38;
            var print = Format.StreamingTable(
                ["kernel".PadRight(kernelWidth), "shape".PadRight(shapeWidth), "max error", "tolerance", "result"],
                [kernelWidth, shapeWidth, 9, 9, 6]);
            var clock = Stopwatch.StartNew();
            var results = DeviceVerifier.Run(opened, progress: r => print(
            [
                r.Kernel.PadRight(kernelWidth), r.Shape.PadRight(shapeWidth), r.Skipped ? "-" : Error(r.MaxError),
                r.Skipped ? "-" : r.Tolerance.ToString("G2", CultureInfo.InvariantCulture),
                r.Skipped ? r.Note ?? "skipped" : r.Passed ? "ok" : $"FAIL{(r.Note is null ? "" : $" ({r.Note})")}",
            ]));
            var skipped = results.Count(r => r.Skipped);
            var failed = results.Count(r => !r.Passed);
            var passed = results.Count - skipped - failed;
            if (parse.GetValue(json) is { } file)
            {
                AtomicFile.WriteAllText(file.FullName, VerificationReport.ToJson(results));
                Console.WriteLine($"wrote {file.FullName}");
            }
            Console.WriteLine($"{passed} checks passed, {failed} failed, {skipped} skipped " +
                              $"({Format.Number(clock.Elapsed.TotalSeconds, "0.0")} s)");
            return failed == 0 ? 0 : 1;
        }));
        return command;
    }

    private static string Error(double value) =>
        double.IsFinite(value) ? value.ToString("0.0E+0", CultureInfo.InvariantCulture) : "inf";
}
