using RetNet.Ilgpu.Devices;
using RetNet.Ilgpu.Kernels.Elementwise;
using RetNet.Ilgpu.Kernels.Gemm;
using RetNet.Ilgpu.Kernels.Normalization;
using RetNet.Ilgpu.Model;
using RetNet.Ilgpu.Tensors;
using RetNet.Ilgpu.Tests.Support;

namespace RetNet.Ilgpu.Tests.Model;

/// <summary>
/// The decoding step's k-major weight copies on the CPU accelerator in host execution (<see cref="DecodeWeights"/>):
/// each matrix is copied once and the steps read the copies; a matrix written between steps is copied again before
/// the next step reads it, so the step gives what a model created with the written weights gives, bit for bit (the
/// negative control: the write does change the logits, so a stale copy would be seen); the copies are freed with the
/// model; only that device gets them, and only within the budget.
/// </summary>
[Collection(DeviceCollection.Name)]
public sealed class DecodeWeightsTests(DeviceFixture fixture, HostCpu hostCpu) : IClassFixture<HostCpu>
{
    private readonly RetNetDevice device = hostCpu.WithHostExecution(fixture.Device);

    private static readonly IReadOnlyList<IReadOnlyList<int>> Prompts = [[5, 17, 200, 3], [42], [7, 7, 9]];

    [Theory]
    [InlineData("retnet", TensorDType.Float32)]
    [InlineData("retnet", TensorDType.BFloat16)]
    [InlineData("transformer", TensorDType.Float32)]
    public void Each_matrix_is_copied_once_and_every_step_reads_the_copies(string arch, TensorDType dtype)
    {
        using var model = arch == "retnet"
            ? LanguageModel.Create(device, RetNetConfig.Preset("tiny"), seed: 17, weightType: dtype)
            : LanguageModel.Create(device, TransformerConfig.Preset("tiny"), seed: 17, weightType: dtype);
        var copies = model.DecodeWeights;
        Assert.NotNull(copies);
        Step(model, steps: 3);
        // Every matrix but the embedding table: the mixer's projections, fc1, gate and fc2 per layer, and the output
        // projection (the table itself when it is tied).
        var matrices = model.Parameters.Values.Count(p => p.Rank == 2) - 1;
        Assert.Equal(matrices, copies.Count);
        Assert.Equal(matrices, copies.Made);
        // More steps read the same copies: nothing in a step takes a writable view of a weight.
        Step(model, steps: 5);
        Assert.Equal(matrices, copies.Made);
    }

    [Fact]
    public void A_matrix_written_between_steps_is_copied_again_before_the_next_step()
    {
        using var model = LanguageModel.Create(device, RetNetConfig.Preset("tiny"), seed: 17);
        var before = Step(model, steps: 2);
        var made = model.DecodeWeights!.Made;
        var name = model.Parameters.Keys.First(k => k.EndsWith("ffn.fc2.weight", StringComparison.Ordinal));
        var written = Rewrite(model, name);
        var after = Step(model, steps: 2);
        Assert.Equal(made + 1, model.DecodeWeights.Made);

        using var fresh = LanguageModel.Create(device, RetNetConfig.Preset("tiny"), seed: 17);
        fresh.Parameters[name].CopyFromHost(written);
        var expected = Step(fresh, steps: 2);
        for (var i = 0; i < expected.Count; i++)
            AssertSameBits(expected[i], after[i], $"logits {i} after writing {name}");
        Assert.True(Enumerable.Range(0, before.Count).Any(i => !SameBits(before[i], after[i])),
            $"Writing {name} left every logit as it was: a stale copy would go unseen.");
    }

    /// <summary>
    /// What the copies' staleness check rests on: every way to write a tensor counts in its WriteCount (host copies,
    /// device copies, an operator's output on the host path: GEMM, a norm, an elementwise map), views share the count;
    /// and reading weights as a decoding pass does (GEMM operands, a norm's weight, a copy to the host) leaves it.
    /// </summary>
    [Fact]
    public void Every_write_counts_and_no_read_does()
    {
        using var x = Tensor.FromHost(device, [.. Enumerable.Range(0, 64).Select(i => i / 64f)], 8, 8);
        using var weight = Tensor.FromHost(device, [.. Enumerable.Range(0, 64).Select(i => 1 - i / 64f)], 8, 8);
        using var norm = Tensor.FromHost(device, [.. Enumerable.Range(0, 8).Select(i => 1 + i / 8f)], 8);
        using var target = Tensor.Zeros(device, 8, 8);
        var writes = new (string What, Action Write)[]
        {
            ("CopyFromHost", () => target.CopyFromHost(new float[64])),
            ("CopyFrom", () => target.CopyFrom(x)),
            ("a GEMM's output", () => Gemm.Run(x, weight, target, transposeB: true)),
            ("a norm's output", () => RmsNorm.Forward(x, norm, 1e-6f, target)),
            ("an elementwise output", () => Elementwise.Silu(x, target)),
            ("a write to a view", () => target.Slice(2, 3).CopyFromHost(new float[24])),
        };
        foreach (var (what, write) in writes)
        {
            var before = target.WriteCount;
            write();
            Assert.True(target.WriteCount > before, $"Writing the tensor by {what} left its WriteCount at {before}.");
        }
        // How a decoding pass reads weights: as GEMM operands and norm weights. (Some host loops take their inputs
        // through writable views too, which counts; that only costs a copy made again, never a stale one, and the
        // test above shows no weight of a step goes through one.)
        var counts = (x.WriteCount, weight.WriteCount, norm.WriteCount);
        _ = weight.ToHost();
        Gemm.Run(x, weight, target, transposeB: true);
        Gemm.RunBatchInvariant(x, weight, target);
        RmsNorm.Forward(target, norm, 1e-6f, target);
        Assert.Equal(counts, (x.WriteCount, weight.WriteCount, norm.WriteCount));
    }

    [Fact]
    public void Disposing_the_model_frees_its_copies()
    {
        var live = device.UndisposedBuffers.Count;
        var model = LanguageModel.Create(device, RetNetConfig.Preset("tiny"), seed: 17);
        Step(model, steps: 1);
        Assert.True(model.DecodeWeights!.Count > 0);
        model.Dispose();
        Assert.Equal(live, device.UndisposedBuffers.Count);
    }

    [Fact]
    public void Only_host_execution_within_the_budget_gets_copies()
    {
        using var megabyte = Tensor.Zeros(device, 512, 512);
        using (var within = DecodeWeights.Create(device, Enumerable.Repeat(megabyte, 256)))
            Assert.NotNull(within);
        Assert.Null(DecodeWeights.Create(device, Enumerable.Repeat(megabyte, 257)));
        using var simulator = RetNetDevice.Open(DeviceKind.Cpu, CpuExecution.Simulator);
        Assert.Null(DecodeWeights.Create(simulator, []));
    }

    /// <summary>Prefills <see cref="Prompts"/>, then steps them: every row of the prefill's logits and of each
    /// step's.</summary>
    private static List<float[]> Step(LanguageModel model, int steps)
    {
        var prefill = model.Prefill(Prompts);
        using var state = prefill.State;
        var logits = new List<float[]>(prefill.Logits);
        for (var s = 0; s < steps; s++)
            logits.AddRange(model.Step([.. Enumerable.Range(0, Prompts.Count).Select(b => (s * 31 + b * 7) % 256)],
                state));
        return logits;
    }

    /// <summary>Writes <paramref name="name"/> with values of its own scale in a new order; returns them.</summary>
    private static float[] Rewrite(LanguageModel model, string name)
    {
        var weight = model.Parameters[name];
        var values = weight.ToHost();
        var written = new float[values.Length];
        for (var i = 0; i < values.Length; i++)
            written[i] = -values[(i * 7 + 3) % values.Length];
        weight.CopyFromHost(written);
        return written;
    }

    private static bool SameBits(float[] a, float[] b) =>
        a.Select(BitConverter.SingleToInt32Bits).SequenceEqual(b.Select(BitConverter.SingleToInt32Bits));

    private static void AssertSameBits(float[] expected, float[] actual, string what) =>
        Assert.True(SameBits(expected, actual), $"The bits differ ({what}).");
}
