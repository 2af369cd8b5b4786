using FsCheck;
using FsCheck.Fluent;
using FsCheck.Xunit;
using RetNet.Ilgpu.Attention;
using RetNet.Ilgpu.Tests.Attention;
using RetNet.Ilgpu.Tests.Support;

namespace RetNet.Ilgpu.Properties.Attention;

/// <summary>
/// One random attention problem, small enough for the tiled kernels on the CPU accelerator (a barrier round costs
/// ~0.1 ms there): B, H ≤ 2; T ≤ 40, up to three 16-row tiles or two 32-row tiles with a ragged last one; Dk ≤ 40, up
/// to three 16-deep slices; Dv ≤ 40 and up to 80 in one problem of five (two 64-column tiles). The scale is 1/√Dk or
/// drawn from [0.1, 2]; <see cref="Prefix"/> cuts the sequence into a prefill and decode steps.
/// </summary>
public sealed record AttentionProblem(AttentionShape Shape, float? Scale, int Prefix, int Seed)
{
    /// <summary>Inputs on the device and the double references.</summary>
    public AttentionTestCase Build(RetNetDevice device) => new(device, Shape, Seed, Scale);

    /// <inheritdoc/>
    public override string ToString() =>
        $"{Shape} s={(Scale is null ? "1/√Dk" : Scale.Value.ToString("R"))} prefix={Prefix} seed={Seed}";

    /// <summary>Problems of the sizes above.</summary>
    public static Arbitrary<AttentionProblem> Arbitrary() =>
        (from shape in Gen.Frequency((4, Shapes(valueWidth: 40)), (1, Shapes(valueWidth: 80)))
         from scale in Gen.OneOf(Gen.Constant<float?>(null), Gen.Choose(10, 200).Select(i => (float?)(i / 100f)))
         from prefix in Gen.Choose(0, shape.SeqLen)
         from seed in Gen.Choose(0, int.MaxValue / 2)
         select new AttentionProblem(shape, scale, prefix, seed)).ToArbitrary();

    private static Gen<AttentionShape> Shapes(int valueWidth) =>
        from b in Gen.Choose(1, 2)
        from t in Gen.Choose(1, 40)
        from h in Gen.Choose(1, 2)
        from dk in Gen.Choose(1, 40)
        from dv in Gen.Choose(1, valueWidth)
        select new AttentionShape(b, t, h, dk, dv);
}

/// <summary>
/// Causal attention is one function whatever kernel computes it: on random problems the tiled kernels (one
/// configuration drawn at random), the barrier-free kernels, the host SIMD code (when the device runs on the host) and
/// the double reference agree forward and backward;
/// decoding from a prefilled KV cache one token at a time gives the rows of the full forward pass; and the batch is
/// a set of independent sequences, so permuting it permutes every result bit for bit. Every comparison with the
/// reference uses the project's one tolerance rule; every drawn problem checks that zeros fail it (dq and dk wherever
/// they exceed the check's resolution), and every problem of 8 tokens or more that q and k swapped, a mask one key too
/// wide, the output one position late and dq and dk swapped fail it too.
/// </summary>
[Collection(PropertyDeviceCollection.Name)]
public sealed class AttentionProperties(DeviceFixture fixture)
{
    private readonly RetNetDevice device = fixture.Device;

    private static readonly int TiledConfigurations =
        AttentionLaunch.TiledConfigurations(AttentionLaunch.DefaultGroupSize).Count;

    /// <summary>
    /// The draw (its sixth problem, T = 1) that showed dq cancelling to a residue of 4e-8 where the reference is exactly
    /// 0 — the rows of dS sum to zero — before the gradient checks had a floor from the magnitudes of their terms:
    /// replayed on every run.
    /// </summary>
    [Property(MaxTest = 6, Replay = "15828152326605675714,1664890772615760089")]
    public Property Kernels_equal_the_reference_on_the_draw_where_dq_cancels_to_zero() =>
        Tiled_barrier_free_and_host_launches_equal_the_double_reference_forward_and_backward();

    /// <summary>
    /// The draw (its ninth problem: T = 2, Dk = 34, s = 1.33) whose softmax saturates, so that dq's largest entry,
    /// 3.6e-4, is below its check's bound of 8.8e-4 (1e-4 of its terms' magnitude) and zeros pass the comparison —
    /// which the zeros control took for a vacuous check until it learned to tell the two apart: replayed on every run.
    /// </summary>
    [Property(MaxTest = 9, Replay = "7423227019264430862,16087332179103576573")]
    public Property Kernels_equal_the_reference_on_the_draw_where_the_softmax_saturates() =>
        Tiled_barrier_free_and_host_launches_equal_the_double_reference_forward_and_backward();

    [Property(MaxTest = 25)]
    public Property Tiled_barrier_free_and_host_launches_equal_the_double_reference_forward_and_backward() =>
        Prop.ForAll(AttentionProblem.Arbitrary(), Gen.Choose(0, TiledConfigurations - 1).ToArbitrary(),
            (problem, configuration) =>
        {
            var tiled = AttentionLaunch.TiledConfigurations(device.MaxGroupSize)[configuration];
            using var test = problem.Build(device);
            var results = new List<float[]>();
            List<AttentionLaunch> launches = [AttentionLaunch.BarrierFree, tiled];
            if (device.RunsOnHost)
                launches.Add(AttentionLaunch.Host);
            foreach (var launch in launches)
            {
                using var output = test.NewOutput();
                using var logSumExp = test.NewLogSumExp();
                using var gradients = test.NewGradients();
                CausalAttention.Forward(test.QueryTensor, test.KeyTensor, test.ValueTensor, test.Scale, output,
                    logSumExp, launch);
                test.AssertForward($"{launch}, {problem}", output, logSumExp);
                CausalAttention.Backward(test.QueryTensor, test.KeyTensor, test.ValueTensor, test.Scale, output,
                    logSumExp, test.OutputGradientTensor, gradients.Dq, gradients.Dk, gradients.Dv, launch);
                test.AssertBackward($"{launch}, {problem}", gradients);
                results.Add(output.ToHost());
            }
            // The launches against each other, by the same rule.
            for (var i = 1; i < results.Count; i++)
                Numerics.AssertClose($"{launches[i]} against barrier-free, {problem}", results[i], results[0]);
            test.AssertZerosAreRejected(problem.ToString());
            AssertWrongComputationsAreRejected(test, problem, results[0]);
        });

    /// <summary>
    /// Negative controls on the drawn inputs: wrong computations held to the reference by the same comparison
    /// (<see cref="AttentionTestCase.CheckOutput"/>, <see cref="AttentionTestCase.CheckBackward"/>) and asserted
    /// rejected where T ≥ 8. At T = 1 each of them is right — a query that sees one key returns its value whatever the
    /// logit, and dq = dk = 0 — and from T = 8 on every row past the first differs in a sum over several keys:
    /// q and k swapped (logits k_t·q_j), a mask that lets each query see one key past itself, the output read one
    /// position late (o_(t−1) in place of o_t), and dq and dk swapped. (Zeros are rejected on every draw,
    /// dq and dk wherever they exceed the check's resolution.)
    /// </summary>
    private void AssertWrongComputationsAreRejected(AttentionTestCase test, AttentionProblem problem,
        float[] output)
    {
        var s = problem.Shape;
        if (s.SeqLen < 8)
            return;
        Numerics.AssertRejected(test.CheckOutput($"q and k swapped, {problem}",
            NegativeControls.ToFloat(AttentionReference.Forward(s, test.Scale, test.K, test.Q, test.V).Output)));
        Numerics.AssertRejected(test.CheckOutput($"a mask one key past the query, {problem}",
            NegativeControls.ToFloat(AttentionReference.Forward(s, test.Scale, test.Q, test.K, test.V,
                (i, j) => j <= i + 1).Output)));
        Numerics.AssertRejected(test.CheckOutput($"one position late, {problem}",
            NegativeControls.OnePositionLate(output, s.Batch, s.SeqLen, s.Heads * s.ValueDim)));
        var expected = test.ReferenceGradients;
        NegativeControls.AssertAnyRejected(test.CheckBackward($"dq and dk swapped, {problem}",
            NegativeControls.ToFloat(expected.KeyGradient), NegativeControls.ToFloat(expected.QueryGradient),
            NegativeControls.ToFloat(expected.ValueGradient)));
    }

    [Property(MaxTest = 40)]
    public Property Prefill_then_decode_steps_equals_the_full_forward() =>
        Prop.ForAll(AttentionProblem.Arbitrary(), problem =>
        {
            using var test = problem.Build(device);
            var s = problem.Shape;
            var capacity = s.SeqLen + problem.Seed % 3;
            using var keyCache = Tensor.Zeros(device, s.Batch, s.Heads, capacity, s.KeyDim);
            using var valueCache = Tensor.Zeros(device, s.Batch, s.Heads, capacity, s.ValueDim);
            var outputs = new float[s.ValueLength];
            var lengths = new int[s.Batch];
            Tensor Tokens(float[] x, int dim, int start, int count) =>
                Tensor.FromHost(device, AttentionTokens.Slice(x, s, dim, start, count), s.Batch, count, s.Heads, dim);

            using (var q = Tokens(test.Q, s.KeyDim, 0, problem.Prefix))
            using (var k = Tokens(test.K, s.KeyDim, 0, problem.Prefix))
            using (var v = Tokens(test.V, s.ValueDim, 0, problem.Prefix))
            using (var o = Tensor.Zeros(device, s.Batch, problem.Prefix, s.Heads, s.ValueDim))
            {
                CausalAttention.Forward(q, k, v, test.Scale, o);
                CausalAttention.AppendToCache(k, keyCache, lengths);
                CausalAttention.AppendToCache(v, valueCache, lengths);
                AttentionTokens.Place(o.ToHost(), outputs, s, s.ValueDim, 0, problem.Prefix);
            }
            for (var t = problem.Prefix; t < s.SeqLen; t++)
            {
                Array.Fill(lengths, t);
                using var q = Tokens(test.Q, s.KeyDim, t, 1);
                using var k = Tokens(test.K, s.KeyDim, t, 1);
                using var v = Tokens(test.V, s.ValueDim, t, 1);
                using var o = Tensor.Zeros(device, s.Batch, 1, s.Heads, s.ValueDim);
                CausalAttention.AppendToCache(k, keyCache, lengths);
                CausalAttention.AppendToCache(v, valueCache, lengths);
                Array.Fill(lengths, t + 1);
                CausalAttention.Step(q, keyCache, valueCache, lengths, test.Scale, o);
                AttentionTokens.Place(o.ToHost(), outputs, s, s.ValueDim, t, 1);
            }
            Numerics.AssertClose($"prefill + steps, capacity {capacity}, {problem}", outputs, test.Reference.Output);
            // The negative control: the same outputs one position late, which the comparison must reject wherever
            // there are 8 positions (see AssertWrongComputationsAreRejected).
            if (s.SeqLen >= 8)
                Numerics.AssertRejected(Numerics.Check($"prefill + steps one position late, {problem}",
                    NegativeControls.OnePositionLate(outputs, s.Batch, s.SeqLen, s.Heads * s.ValueDim),
                    test.Reference.Output));
        });

    [Property(MaxTest = 40)]
    public Property Permuting_the_batch_permutes_every_result() =>
        Prop.ForAll(AttentionProblem.Arbitrary(), problem =>
        {
            var s = problem.Shape with { Batch = problem.Shape.Batch + 1 };
            using var test = new AttentionTestCase(device, s, problem.Seed, problem.Scale);
            // A rotation by one sequence: every sequence moves, none stays at its index.
            var order = Enumerable.Range(0, s.Batch).Select(b => (b + 1) % s.Batch).ToArray();
            using var q = Tensor.FromHost(device, Permute(test.Q, order), s.QueryShape);
            using var k = Tensor.FromHost(device, Permute(test.K, order), s.QueryShape);
            using var v = Tensor.FromHost(device, Permute(test.V, order), s.ValueShape);
            using var dO = Tensor.FromHost(device, Permute(test.OutputGradient, order), s.ValueShape);

            var original = Run(test.QueryTensor, test.KeyTensor, test.ValueTensor, test.OutputGradientTensor);
            var permuted = Run(q, k, v, dO);
            for (var i = 0; i < original.Length; i++)
                Assert.Equal(Permute(original[i], order), permuted[i]);
            // The negative control: the results left in their order differ from the permuted ones (every sequence
            // moved and has its own random inputs), so the equality above is not vacuous.
            Assert.NotEqual(original[0], permuted[0]);

            float[][] Run(Tensor tq, Tensor tk, Tensor tv, Tensor tdO)
            {
                using var output = test.NewOutput();
                using var logSumExp = test.NewLogSumExp();
                using var gradients = test.NewGradients();
                CausalAttention.Forward(tq, tk, tv, test.Scale, output, logSumExp);
                CausalAttention.Backward(tq, tk, tv, test.Scale, output, logSumExp, tdO, gradients.Dq, gradients.Dk,
                    gradients.Dv);
                return
                [
                    output.ToHost(), logSumExp.ToHost(), gradients.Dq.ToHost(), gradients.Dk.ToHost(),
                    gradients.Dv.ToHost(),
                ];
            }
        });

    /// <summary>Sequence b of the result is sequence order[b] of x (any tensor with B leading).</summary>
    private static float[] Permute(float[] x, int[] order)
    {
        var length = x.Length / order.Length;
        var result = new float[x.Length];
        for (var b = 0; b < order.Length; b++)
            Array.Copy(x, order[b] * length, result, b * length, length);
        return result;
    }
}
