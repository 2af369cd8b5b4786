using System.CommandLine;
using System.Diagnostics;
using RetNet.Ilgpu.Kernels.Gemm;
using RetNet.Ilgpu.Tensors;

namespace RetNet.Ilgpu.Cli.Commands;

/// <summary>
/// <c>retnet demo</c>: the project's main job. Opens the chosen device, runs a GEMM against the double-precision
/// reference and compile-checks every kernel for PTX and OpenCL.
/// </summary>
internal static class DemoCommand
{
    public static Command Create()
    {
        var device = CommonOptions.Device();
        var command = new Command("demo", "Run a GEMM on the device against its C# reference and compile-check every kernel.")
        {
            device,
        };
        command.SetAction(parse => CommonOptions.Run(() =>
        {
            using var opened = CommonOptions.OpenDevice(parse.GetValue(device));
            var gemmOk = RunGemm(opened);
            var kernelsOk = KernelsCommand.Check(quiet: true) == 0;
            Console.WriteLine(gemmOk && kernelsOk ? "demo: all checks passed" : "demo: FAILED");
            return gemmOk && kernelsOk ? 0 : 1;
        }));
        return command;
    }

    /// <summary>A Linear-layer-shaped product: x [batch, tokens, in] · Wᵀ with W [out, in] broadcast over the batch.</summary>
    private static bool RunGemm(Devices.RetNetDevice device)
    {
        const int batch = 2, tokens = 96, input = 72, output = 80;
        var random = new Random(2307);
        float[] Random(int n) => Enumerable.Range(0, n).Select(_ => (float)(random.NextDouble() * 2 - 1)).ToArray();
        var x = Random(batch * tokens * input);
        var w = Random(output * input);

        using var tx = Tensor.FromHost(device, x, batch, tokens, input);
        using var tw = Tensor.FromHost(device, w, output, input);
        using var ty = Tensor.Uninitialized(device, batch, tokens, output);
        var variant = device.IsCpuSimulator ? GemmVariant.Simple : GemmVariant.Tiled;
        Gemm.Run(tx, tw, ty, transposeB: true, variant: variant);
        device.Synchronize();
        var timer = Stopwatch.StartNew();
        Gemm.Run(tx, tw, ty, transposeB: true, variant: variant);
        device.Synchronize();
        var elapsed = timer.Elapsed.TotalMilliseconds;

        var shape = GemmShape.Of(tx, tw, transposeB: true);
        var expected = GemmReference.Forward(shape, x, w);
        var actual = ty.ToHost();
        double maxDiff = 0, maxRef = 0;
        for (var i = 0; i < expected.Length; i++)
        {
            maxDiff = Math.Max(maxDiff, Math.Abs(actual[i] - expected[i]));
            maxRef = Math.Max(maxRef, Math.Abs(expected[i]));
        }
        // The project's fp32 tolerance rule: max |Δ| ≤ 1e-4 · (1 + max |reference|).
        var bound = 1e-4 * (1 + maxRef);
        var ok = maxDiff <= bound;
        Console.WriteLine(
            $"gemm ({variant}): x [{batch}, {tokens}, {input}] · Wᵀ, W [{output}, {input}] → [{batch}, {tokens}, {output}] " +
            $"in {Format.Number(elapsed, "0.##")} ms ({Format.Number(shape.Flops / elapsed / 1e6, "0.###")} GFLOP/s); " +
            $"max |Δ| vs double reference {maxDiff:G3} (bound {bound:G3}) {(ok ? "ok" : "FAIL")}");
        return ok;
    }
}
