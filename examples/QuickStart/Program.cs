// A feed-forward block built from the library's kernels: y = W2 · silu(W1 · rmsnorm(x)), on whatever device is present.
// Run: dotnet run --project examples/QuickStart -c Release [-- auto|cuda|opencl|cpu]
using RetNet.Ilgpu.Devices;
using RetNet.Ilgpu.Kernels.Elementwise;
using RetNet.Ilgpu.Kernels.Gemm;
using RetNet.Ilgpu.Kernels.Normalization;
using RetNet.Ilgpu.Kernels.Reductions;
using RetNet.Ilgpu.Tensors;

var kind = args.Length > 0 ? DeviceKinds.Parse(args[0]) : DeviceKind.Auto;
using var device = RetNetDevice.Open(kind);
Console.WriteLine($"running on {device}");

const int tokens = 32, model = 64, hidden = 128;
var random = new Random(7);
float[] Values(int n, float scale) => Enumerable.Range(0, n).Select(_ => (float)(random.NextDouble() * 2 - 1) * scale).ToArray();

using var x = Tensor.FromHost(device, Values(tokens * model, 1f), tokens, model);
using var norm = Tensor.FromHost(device, Enumerable.Repeat(1f, model).ToArray(), model);
using var w1 = Tensor.FromHost(device, Values(hidden * model, 0.1f), hidden, model);
using var w2 = Tensor.FromHost(device, Values(model * hidden, 0.1f), model, hidden);

using var normed = Tensor.Uninitialized(device, tokens, model);
using var h = Tensor.Uninitialized(device, tokens, hidden);
using var y = Tensor.Uninitialized(device, tokens, model);

device.Memory.ResetPeak();
RmsNorm.Forward(x, norm, 1e-6f, normed);
Gemm.Run(normed, w1, h, transposeB: true);   // Linear layers store W as [out, in]
Elementwise.Silu(h, h);                      // in place
Gemm.Run(h, w2, y, transposeB: true);

Console.WriteLine($"y {ShapeCheck.Format(y.Shape)}: ‖y‖² = {Reductions.SumOfSquares(y):G6}, max |y| = {Reductions.MaxAbs(y):G6}");
Console.WriteLine($"device memory: {device.Memory.CurrentBytes} bytes live, peak {device.Memory.PeakBytes} bytes");
