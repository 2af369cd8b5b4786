using RetNet.Ilgpu.Devices;
using RetNet.Ilgpu.Kernels.Elementwise;
using RetNet.Ilgpu.Kernels.Embedding;
using RetNet.Ilgpu.Kernels.Optimizer;
using RetNet.Ilgpu.Kernels.HeadGroups;
using RetNet.Ilgpu.Kernels.Rotation;
using RetNet.Ilgpu.Kernels.ScaledEmbedding;
using RetNet.Ilgpu.Retention;
using RetNet.Ilgpu.Tensors;
using RetNet.Ilgpu.Training;
using RetNet.Ilgpu.Verification.Cases;
using EmbeddingOp = RetNet.Ilgpu.Kernels.Embedding.Embedding;

namespace RetNet.Ilgpu.Verification;

/// <summary>
/// Operators with one launch form (an implicitly grouped kernel over elements or rows): elementwise maps, embedding
/// gather and scatter, theta shift, decay sums, the AdamW update. Their launch geometry is the device's spread, which
/// has no configuration to force.
/// </summary>
internal static class PointwiseChecks
{
    private const double Tolerance = 1e-4;

    // 1, an odd size, and one above the host path's items per thread (several threads).
    private static readonly int[] Sizes = [1, 37, 4099];

    public static void Elementwise(VerificationContext context)
    {
        var device = context.Device;
        foreach (var n in Sizes)
        {
            var shape = $"n={n}";
            var a = CaseInputs.Uniform(11, n, 3f);
            var b = CaseInputs.Uniform(12, n, 3f);
            var g = CaseInputs.Uniform(13, n);
            void Binary(string name, Action<Tensor, Tensor, Tensor> run, Func<double, double, double> f) =>
                context.Check($"Elementwise.{name}", shape, Tolerance, () =>
                {
                    using var ta = Tensor.FromHost(device, a, n);
                    using var tb = Tensor.FromHost(device, b, n);
                    using var output = Tensor.Zeros(device, n);
                    run(ta, tb, output);
                    return [new CheckedOutput("output", output.ToHost(), ElementwiseReference.Zip(a, b, f))];
                });
            Binary("Add", Kernels.Elementwise.Elementwise.Add, (x, y) => x + y);
            Binary("ScaleAdd", (x, y, o) => Kernels.Elementwise.Elementwise.ScaleAdd(x, 2.5f, y, o), (x, y) => 2.5 * x + y);
            Binary("Multiply", Kernels.Elementwise.Elementwise.Multiply, (x, y) => x * y);
            Binary("Scale", (x, _, o) => Kernels.Elementwise.Elementwise.Scale(x, -0.25f, o), (x, _) => -0.25 * x);
            Binary("Silu", (x, _, o) => Kernels.Elementwise.Elementwise.Silu(x, o), (x, _) => ElementwiseReference.Silu(x));
            Binary("Gelu", (x, _, o) => Kernels.Elementwise.Elementwise.Gelu(x, o), (x, _) => ElementwiseReference.Gelu(x));
            Binary("SiluBackward", Kernels.Elementwise.Elementwise.SiluBackward,
                (x, dy) => dy * ElementwiseReference.SiluDerivative(x));
            Binary("GeluBackward", Kernels.Elementwise.Elementwise.GeluBackward,
                (x, dy) => dy * ElementwiseReference.GeluDerivative(x));
            if (device.Policy.Backend == OperatorBackend.Host)
            {
                // The host backend runs these as host loops; the kernels themselves, launched explicitly.
                var kernels = ElementwiseLaunch.KernelLaunch;
                Binary("Add (kernel)", (x, y, o) => kernels.Zip<AddOp>(x, y, o, 0f), (x, y) => x + y);
                Binary("ScaleAdd (kernel)", (x, y, o) => kernels.Zip<ScaleAddOp>(x, y, o, 2.5f), (x, y) => 2.5 * x + y);
                Binary("Multiply (kernel)", (x, y, o) => kernels.Zip<MultiplyOp>(x, y, o, 0f), (x, y) => x * y);
                Binary("Scale (kernel)", (x, _, o) => kernels.Map<ScaleOp>(x, o, -0.25f), (x, _) => -0.25 * x);
                Binary("Silu (kernel)", (x, _, o) => kernels.Map<SiluOp>(x, o, 0f), (x, _) => ElementwiseReference.Silu(x));
                Binary("Gelu (kernel)", (x, _, o) => kernels.Map<GeluOp>(x, o, 0f), (x, _) => ElementwiseReference.Gelu(x));
                Binary("SiluBackward (kernel)", (x, y, o) => kernels.Zip<SiluBackwardOp>(x, y, o, 0f),
                    (x, dy) => dy * ElementwiseReference.SiluDerivative(x));
                Binary("GeluBackward (kernel)", (x, y, o) => kernels.Zip<GeluBackwardOp>(x, y, o, 0f),
                    (x, dy) => dy * ElementwiseReference.GeluDerivative(x));
            }
            context.Check("Elementwise.MultiplyBackward", shape, Tolerance, () =>
            {
                using var ta = Tensor.FromHost(device, a, n);
                using var tb = Tensor.FromHost(device, b, n);
                using var tg = Tensor.FromHost(device, g, n);
                using var da = Tensor.Zeros(device, n);
                using var db = Tensor.Zeros(device, n);
                Kernels.Elementwise.Elementwise.MultiplyBackward(ta, tb, tg, da, db);
                return
                [
                    new CheckedOutput("da", da.ToHost(), ElementwiseReference.Zip(g, b, (x, y) => x * y)),
                    new CheckedOutput("db", db.ToHost(), ElementwiseReference.Zip(g, a, (x, y) => x * y)),
                ];
            });
        }
    }

    /// <summary>fp32 ↔ fp16/bf16 on the device against the host's rounding: exact (tolerance 0), since rounding to
    /// nearest even has one right answer.</summary>
    public static void Conversion(VerificationContext context)
    {
        var device = context.Device;
        foreach (var n in Sizes)
        {
            var shape = $"n={n}";
            var values = CaseInputs.Uniform(14, n, 3f);
            foreach (var dtype in new[] { TensorDType.BFloat16, TensorDType.Float16 })
            {
                var other = dtype == TensorDType.BFloat16 ? TensorDType.Float16 : TensorDType.BFloat16;
                var rounded = values.Select(v => (double)TensorDTypes.Round(v, dtype)).ToArray();
                context.Check($"Conversion.{TensorDTypes.Name(dtype)}", shape, 0, () =>
                {
                    using var source = Tensor.FromHost(device, values, n);
                    using var narrow = Kernels.Conversion.Conversion.To(source, dtype);
                    using var wide = Kernels.Conversion.Conversion.To(narrow, TensorDType.Float32);
                    using var recoded = Kernels.Conversion.Conversion.To(narrow, other);
                    return
                    [
                        new CheckedOutput("narrowed", narrow.ToHost(), rounded),
                        new CheckedOutput("widened", wide.ToHost(), rounded),
                        new CheckedOutput("recoded", recoded.ToHost(),
                            rounded.Select(v => (double)TensorDTypes.Round((float)v, other)).ToArray()),
                    ];
                });
            }
        }
    }

    public static void Embedding(VerificationContext context)
    {
        var device = context.Device;
        foreach (var (vocabulary, width, count) in new[] { (1, 1, 1), (13, 37, 20), (50, 40, 300) })
        {
            var shape = $"V={vocabulary} D={width} ids={count}";
            var table = CaseInputs.Uniform(21, vocabulary * width);
            var random = new Random(22);
            // Repeated ids: the scatter groups each row's positions.
            var ids = Enumerable.Range(0, count).Select(_ => random.Next(vocabulary)).ToArray();
            context.Check("Embedding.Forward", shape, Tolerance, () =>
            {
                using var tTable = Tensor.FromHost(device, table, vocabulary, width);
                using var tIds = IndexTensor.FromHost(device, ids, count);
                using var output = Tensor.Zeros(device, count, width);
                EmbeddingOp.Forward(tTable, tIds, output);
                return [new CheckedOutput("output", output.ToHost(),
                    EmbeddingReference.Forward(table, vocabulary, width, ids))];
            });
            context.Check("ScaledEmbedding.Forward", shape, Tolerance, () =>
            {
                using var tTable = Tensor.FromHost(device, table, vocabulary, width);
                using var output = Tensor.Zeros(device, count, width);
                ScaledEmbedding.Forward(tTable, ids, 1.5f, output);
                return [new CheckedOutput("output", output.ToHost(),
                    EmbeddingReference.Forward(table, vocabulary, width, ids).Select(v => 1.5 * v).ToArray())];
            });
            context.Check("Embedding.Backward", shape, Tolerance, () =>
            {
                var dOutput = CaseInputs.Uniform(23, count * width);
                var dTable = CaseInputs.Uniform(24, vocabulary * width);
                using var tIds = IndexTensor.FromHost(device, ids, count);
                using var tdOutput = Tensor.FromHost(device, dOutput, count, width);
                using var tdTable = Tensor.FromHost(device, dTable, vocabulary, width);
                EmbeddingOp.Backward(tIds, tdOutput, tdTable);
                return [new CheckedOutput("dTable", tdTable.ToHost(),
                    EmbeddingReference.Backward(ids, dOutput, dTable, vocabulary, width))];
            });
        }
    }

    public static void Rotation(VerificationContext context)
    {
        var device = context.Device;
        // fp32 angles at positions in the hundreds lose ~1e-5 relative; the tests hold theta shift to 1e-3 likewise.
        const double tolerance = 1e-3;
        foreach (var layout in new[] { RotaryLayout.Interleaved, RotaryLayout.Halves })
        foreach (var (dims, starts) in new[] { (new[] { 1, 1, 1, 2 }, new[] { 0 }), (new[] { 2, 7, 3, 18 }, new[] { 0, 300 }) })
        {
            context.Check("ThetaShift.Apply", $"{layout} [{VerificationContext.List(dims)}] starts {VerificationContext.List(starts)}",
                tolerance, () =>
                {
                    var x = CaseInputs.Uniform(31, dims.Aggregate(1, (p, d) => p * d));
                    using var tx = Tensor.FromHost(device, x, dims);
                    ThetaShift.Apply(tx, starts, 0.5f, layout);
                    return [new CheckedOutput("x", tx.ToHost(), RotationReference.Apply(
                        CaseInputs.ToDouble(x), dims[0], dims[1], dims[2], dims[3], starts, 0.5, layout))];
                });
        }
    }

    public static void HeadGroups(VerificationContext context)
    {
        var device = context.Device;
        foreach (var (rows, kvHeads, group, width) in new[] { (1, 1, 1, 1), (5, 2, 3, 7), (3, 1, 4, 16) })
        {
            var heads = kvHeads * group;
            context.Check("HeadGroups.Expand/Reduce", $"N {rows}, kv heads {kvHeads}, G {group}, D {width}", 1e-6, () =>
            {
                var kv = CaseInputs.Uniform(41, rows * kvHeads * width);
                var spread = CaseInputs.Uniform(43, rows * heads * width);
                using var tkv = Tensor.FromHost(device, kv, rows, kvHeads, width);
                using var expanded = Tensor.Zeros(device, rows, heads, width);
                using var tspread = Tensor.FromHost(device, spread, rows, heads, width);
                using var reduced = Tensor.Zeros(device, rows, kvHeads, width);
                Kernels.HeadGroups.HeadGroups.Expand(tkv, expanded);
                Kernels.HeadGroups.HeadGroups.Reduce(tspread, reduced);
                return
                [
                    new CheckedOutput("expanded", expanded.ToHost(),
                        HeadGroupsReference.Expand(CaseInputs.ToDouble(kv), rows, kvHeads, group, width)),
                    new CheckedOutput("reduced", reduced.ToHost(),
                        HeadGroupsReference.Reduce(CaseInputs.ToDouble(spread), rows, kvHeads, group, width)),
                ];
            });
        }
    }

    public static void DecaySums(VerificationContext context)
    {
        var device = context.Device;
        foreach (var (seqLen, heads, starts) in new[] { (1, 1, new[] { 0 }), (13, 3, new[] { 0, 1000 }) })
        {
            var decay = DecaySchedule.Torchscale(heads);
            context.Check("DecayNormalization.RowSums", $"B={starts.Length} T={seqLen} H={heads}", 1e-5, () =>
            {
                using var sums = Tensor.Zeros(device, starts.Length, seqLen, heads);
                DecayNormalization.RowSums(sums, starts, decay);
                return [new CheckedOutput("sums", sums.ToHost(),
                    DecayNormalizationReference.RowSums(starts, seqLen, decay.Gammas))];
            });
        }
    }

    public static void AdamW(VerificationContext context)
    {
        var device = context.Device;
        var options = new AdamWOptions(WeightDecay: 0.1);
        const int steps = 3;
        foreach (var n in new[] { 1, 1037 })
        {
            context.Check("AdamW.Step", $"n={n} steps={steps}", Tolerance, () =>
            {
                var initial = CaseInputs.Uniform(41, n);
                using var value = Tensor.FromHost(device, initial, n);
                using var optimizer = new Training.AdamW([new OptimizedParameter("w", value, true)], options);
                var p = CaseInputs.ToDouble(initial);
                var m = new double[n];
                var v = new double[n];
                for (var step = 1; step <= steps; step++)
                {
                    var gradient = CaseInputs.Uniform(41 + step, n, 2f);
                    using var tg = Tensor.FromHost(device, gradient, n);
                    var learningRate = 0.02 * step;
                    optimizer.Step(new Dictionary<string, Tensor> { ["w"] = tg }, learningRate, 0.5);
                    AdamWReference.Step(p, m, v, gradient, step, learningRate, options.Beta1, options.Beta2,
                        options.Eps, options.WeightDecay, 0.5);
                }
                var state = optimizer.ExportState();
                // The displacement, not the parameter: steps of ~lr would hide inside 1e-4 · max |p|.
                var actual = value.ToHost();
                return
                [
                    new CheckedOutput("p − p0", actual.Select((x, i) => x - initial[i]).ToArray(),
                        p.Select((x, i) => x - initial[i]).ToArray()),
                    new CheckedOutput("exp_avg", state.Tensors["w.exp_avg"].Data, m),
                    new CheckedOutput("exp_avg_sq", state.Tensors["w.exp_avg_sq"].Data, v),
                ];
            });
        }
    }
}
