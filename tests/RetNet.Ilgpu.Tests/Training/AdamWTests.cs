using RetNet.Ilgpu.IO;
using RetNet.Ilgpu.Kernels.Optimizer;
using RetNet.Ilgpu.Tests.Support;
using RetNet.Ilgpu.Training;

namespace RetNet.Ilgpu.Tests.Training;

[Collection(DeviceCollection.Name)]
public sealed class AdamWTests(DeviceFixture fixture)
{
    private readonly RetNetDevice device = fixture.Device;

    private const int Steps = 5;
    private const double GradientScale = 0.5;

    // A weight decay ten times the default, so the decoupled term is large enough for a wrong placement to show.
    private static readonly AdamWOptions Options = new(WeightDecay: 0.1);

    public static TheoryData<int, bool> SizesAndDecay => new()
    {
        { 1, true }, { 1, false }, { 7, true }, { 7, false }, { 1000, true }, { 1000, false }, { 4099, true },
        { 4099, false },
    };

    private static double LearningRate(int step) => 0.02 * (1 + 0.1 * step);

    private static float[] Gradient(int step, int n) => Numerics.Uniform(100 + step, n, 2f);

    [Theory, MemberData(nameof(SizesAndDecay))]
    public void Kernel_matches_the_double_reference_over_several_steps(int n, bool decay)
    {
        var initial = Numerics.Uniform(7, n);
        using var value = Tensor.FromHost(device, initial, n);
        using var optimizer = new AdamW([new OptimizedParameter("w", value, decay)], Options);
        var reference = new ReferenceRun(initial);
        var withoutBiasCorrection = new ReferenceRun(initial);
        var l2Decay = new ReferenceRun(initial);

        for (var step = 1; step <= Steps; step++)
        {
            var g = Gradient(step, n);
            using var gradient = Tensor.FromHost(device, g, n);
            optimizer.Step(new Dictionary<string, Tensor> { ["w"] = gradient }, LearningRate(step), GradientScale);
            var wd = decay ? Options.WeightDecay : 0;
            AdamWReference.Step(reference.P, reference.M, reference.V, g, step, LearningRate(step), Options.Beta1,
                Options.Beta2, Options.Eps, wd, GradientScale);
            withoutBiasCorrection.StepWithoutBiasCorrection(g, LearningRate(step), wd);
            l2Decay.StepWithL2Decay(g, step, LearningRate(step), Options.WeightDecay);
        }

        Assert.Equal(Steps, optimizer.StepCount);
        var state = optimizer.ExportState();
        // The displacement from the start, not the parameter itself: steps of ~lr would hide inside 1e-4·max |p|.
        var displacement = Displacement(value.ToHost(), initial);
        Numerics.AssertClose("p − p0", displacement, reference.Displacement(initial));
        Numerics.AssertClose("exp_avg", state.Tensors["w.exp_avg"].Data, reference.M);
        Numerics.AssertClose("exp_avg_sq", state.Tensors["w.exp_avg_sq"].Data, reference.V);

        Numerics.AssertRejected(Numerics.Check("p − p0 without bias correction", displacement,
            withoutBiasCorrection.Displacement(initial)));
        if (decay)
            Numerics.AssertRejected(Numerics.Check("p − p0 with L2 instead of decoupled decay", displacement,
                l2Decay.Displacement(initial)));
    }

    [Fact]
    public void First_step_matches_the_numbers_torch_optim_AdamW_gives()
    {
        // torch.optim.AdamW([p], lr=0.1, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01), one step. At step 1 the
        // bias corrections cancel the moments' (1 − β) factors: m = 0.1·g, v = 0.001·g², step_size = lr / 0.1 and
        // denom = √v / √0.001 + eps = |g| + eps, so p1 = p·(1 − lr·wd) − lr·g / (|g| + eps):
        //   p = 1,    g = 0.125   → 0.999 − 0.1·0.125/0.12500001    = 0.899000008
        //   p = −2,   g = −0.0625 → −1.998 + 0.1·0.0625/0.06250001  = −1.898000016
        //   p = 0.5,  g = 0       → 0.4995 (m = v = 0: only the decay)
        //   p = 3,    g = 1       → 2.997 − 0.1/1.00000001          = 2.897000001
        // and for the same values without decay (1 − lr·wd replaced by 1): 0.900000008, −1.900000016, 0.5, 2.900000001.
        var options = new AdamWOptions(Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, WeightDecay: 0.01);
        float[] p = [1f, -2f, 0.5f, 3f];
        float[] g = [0.125f, -0.0625f, 0f, 1f];
        using var decayed = Tensor.FromHost(device, p, 2, 2);
        using var kept = Tensor.FromHost(device, p, 4);
        using var gDecayed = Tensor.FromHost(device, g, 2, 2);
        using var gKept = Tensor.FromHost(device, g, 4);
        using var optimizer = new AdamW(
            [new OptimizedParameter("matrix", decayed, true), new OptimizedParameter("norm", kept, false)], options);

        optimizer.Step(new Dictionary<string, Tensor> { ["matrix"] = gDecayed, ["norm"] = gKept }, 0.1);

        // A few fp32 ulps of the largest value: the kernel rounds each operation once, as torch does in fp32.
        const double tolerance = 1e-6;
        var state = optimizer.ExportState();
        var actual = decayed.ToHost();
        Numerics.AssertClose("decayed p1", actual, [0.899000008, -1.898000016, 0.4995, 2.897000001], tolerance);
        Numerics.AssertClose("undecayed p1", kept.ToHost(), [0.900000008, -1.900000016, 0.5, 2.900000001], tolerance);
        Numerics.AssertClose("m1", state.Tensors["matrix.exp_avg"].Data, [0.0125, -0.00625, 0, 0.1], tolerance);
        Numerics.AssertClose("v1", state.Tensors["matrix.exp_avg_sq"].Data, [1.5625e-5, 3.90625e-6, 0, 0.001],
            tolerance);
        // L2 decay folds wd·p into g (the 0.5 entry then moves a whole lr); decay without lr shrinks p by 1 %.
        Numerics.AssertRejected(Numerics.Check("L2 decay", actual, [0.899, -1.898, 0.4, 2.897], tolerance));
        Numerics.AssertRejected(Numerics.Check("decay not scaled by lr", actual,
            [0.890000008, -1.880000016, 0.495, 2.870000001], tolerance));
    }

    [Fact]
    public void Exported_state_continues_bit_identically_in_a_new_optimizer()
    {
        const int n = 1000;
        var initial = Numerics.Uniform(21, n);
        using var straight = Tensor.FromHost(device, initial, n);
        using var first = new AdamW([new OptimizedParameter("w", straight, true)]);
        for (var step = 1; step <= 6; step++)
            StepWith(first, "w", step, n);
        var expected = straight.ToHost();
        var expectedState = first.ExportState();

        using var resumed = Tensor.FromHost(device, initial, n);
        AdamWState halfway;
        using (var before = new AdamW([new OptimizedParameter("w", resumed, true)]))
        {
            for (var step = 1; step <= 3; step++)
                StepWith(before, "w", step, n);
            halfway = before.ExportState();
        }
        var atHalfway = resumed.ToHost();
        using var after = new AdamW([new OptimizedParameter("w", resumed, true)]);
        after.ImportState(halfway);
        Assert.Equal(3, after.StepCount);
        for (var step = 4; step <= 6; step++)
            StepWith(after, "w", step, n);

        Assert.Equal(expected, resumed.ToHost());
        var state = after.ExportState();
        Assert.Equal(6, state.StepCount);
        Assert.Equal(expectedState.Tensors["w.exp_avg"].Data, state.Tensors["w.exp_avg"].Data);
        Assert.Equal(expectedState.Tensors["w.exp_avg_sq"].Data, state.Tensors["w.exp_avg_sq"].Data);

        // Negative control: resuming with fresh moments (state not imported) is detected by the same comparison.
        using var fresh = Tensor.FromHost(device, atHalfway, n);
        using var unrestored = new AdamW([new OptimizedParameter("w", fresh, true)]);
        for (var step = 4; step <= 6; step++)
            StepWith(unrestored, "w", step, n);
        Assert.NotEqual(expected, fresh.ToHost());
    }

    [Fact]
    public void Mismatched_gradients_are_rejected_before_anything_is_written()
    {
        float[] initial = [1f, 2f, 3f, 4f, 5f, 6f];
        using var w = Tensor.FromHost(device, initial, 2, 3);
        using var b = Tensor.FromHost(device, [0.5f, -0.5f], 2);
        using var optimizer = new AdamW([new OptimizedParameter("w", w, true), new OptimizedParameter("b", b, false)]);
        using var gw = Tensor.FromHost(device, Numerics.Uniform(1, 6), 2, 3);
        using var gwTransposed = Tensor.FromHost(device, Numerics.Uniform(1, 6), 3, 2);
        using var gb = Tensor.FromHost(device, [1f, 1f], 2);

        // "b" fails after "w" validated: nothing may have been launched for "w" either.
        var missing = Assert.Throws<ArgumentException>(() =>
            optimizer.Step(new Dictionary<string, Tensor> { ["w"] = gw }, 0.1));
        Assert.Contains("'b'", missing.Message);
        var shape = Assert.Throws<ArgumentException>(() =>
            optimizer.Step(new Dictionary<string, Tensor> { ["w"] = gwTransposed, ["b"] = gb }, 0.1));
        Assert.Contains("gradients['w']", shape.Message);
        Assert.Contains("[3, 2]", shape.Message);
        Assert.Contains("[2, 3]", shape.Message);
        var extra = Assert.Throws<ArgumentException>(() =>
            optimizer.Step(new Dictionary<string, Tensor> { ["w"] = gw, ["b"] = gb, ["c"] = gb }, 0.1));
        Assert.Contains("'c'", extra.Message);
        var aliased = Assert.Throws<ArgumentException>(() =>
            optimizer.Step(new Dictionary<string, Tensor> { ["w"] = gw, ["b"] = b }, 0.1));
        Assert.Contains("gradients['b']", aliased.Message);
        Assert.Throws<ArgumentOutOfRangeException>(() =>
            optimizer.Step(new Dictionary<string, Tensor> { ["w"] = gw, ["b"] = gb }, double.NaN));
        Assert.Throws<ArgumentOutOfRangeException>(() =>
            optimizer.Step(new Dictionary<string, Tensor> { ["w"] = gw, ["b"] = gb }, 0.1, double.PositiveInfinity));

        Assert.Equal(0, optimizer.StepCount);
        Assert.Equal(initial, w.ToHost());
        Assert.Equal([0.5f, -0.5f], b.ToHost());
        Assert.All(optimizer.ExportState().Tensors.Values, t => Assert.All(t.Data, v => Assert.Equal(0f, v)));

        // Negative control: a valid step does write, so the unchanged values above mean something.
        optimizer.Step(new Dictionary<string, Tensor> { ["w"] = gw, ["b"] = gb }, 0.1);
        Assert.Equal(1, optimizer.StepCount);
        Assert.NotEqual(initial, w.ToHost());
    }

    [Fact]
    public void Invalid_state_is_rejected_naming_the_tensor_and_leaves_the_state_alone()
    {
        using var w = Tensor.FromHost(device, [1f, 2f, 3f, 4f], 2, 2);
        using var gw = Tensor.FromHost(device, [1f, -1f, 0.5f, 2f], 2, 2);
        using var optimizer = new AdamW([new OptimizedParameter("w", w, true)]);
        optimizer.Step(new Dictionary<string, Tensor> { ["w"] = gw }, 0.1);
        var good = optimizer.ExportState();

        static AdamWState With(AdamWState state, string name, HostTensor? tensor)
        {
            var tensors = new Dictionary<string, HostTensor>(state.Tensors);
            if (tensor is null)
                tensors.Remove(name);
            else
                tensors[name] = tensor;
            return state with { Tensors = tensors };
        }

        var zeros = new HostTensor([2, 2], new float[4]);
        AssertRejectedNaming(With(good, "w.exp_avg", null), "w.exp_avg");
        AssertRejectedNaming(With(good, "w.exp_avg_sq", new HostTensor([4], new float[4])), "w.exp_avg_sq");
        AssertRejectedNaming(With(good, "v.exp_avg", zeros), "v.exp_avg");
        AssertRejectedNaming(With(good, "w.exp_avg_sq", new HostTensor([2, 2], [0f, -1f, 0f, 0f])), "w.exp_avg_sq");
        AssertRejectedNaming(With(good, "w.exp_avg", new HostTensor([2, 2], [0f, float.NaN, 0f, 0f])), "w.exp_avg");
        Assert.Throws<ArgumentOutOfRangeException>(() => optimizer.ImportState(good with { StepCount = -1 }));

        var after = optimizer.ExportState();
        Assert.Equal(1, after.StepCount);
        Assert.Equal(good.Tensors["w.exp_avg"].Data, after.Tensors["w.exp_avg"].Data);
        Assert.Equal(good.Tensors["w.exp_avg_sq"].Data, after.Tensors["w.exp_avg_sq"].Data);

        // Negative control: a valid state is taken.
        optimizer.ImportState(With(good, "w.exp_avg", zeros) with { StepCount = 7 });
        Assert.Equal(7, optimizer.StepCount);
        Assert.All(optimizer.ExportState().Tensors["w.exp_avg"].Data, v => Assert.Equal(0f, v));

        void AssertRejectedNaming(AdamWState state, string name)
        {
            var error = Assert.Throws<ArgumentException>(() => optimizer.ImportState(state));
            Assert.Contains($"'{name}'", error.Message);
        }
    }

    [Fact]
    public void Parameters_must_be_unique_distinct_and_the_options_valid()
    {
        using var w = Tensor.Zeros(device, 4, 2);
        Assert.Contains("'w'", Assert.Throws<ArgumentException>(() => new AdamW(
            [new OptimizedParameter("w", w, true), new OptimizedParameter("w", w.Slice(0, 1), true)])).Message);
        Assert.Contains("shares storage", Assert.Throws<ArgumentException>(() => new AdamW(
            [new OptimizedParameter("a", w.Slice(0, 3), true), new OptimizedParameter("b", w.Slice(2, 2), true)])).Message);
        Assert.Equal("Beta2", Assert.Throws<ArgumentOutOfRangeException>(() =>
            new AdamW([new OptimizedParameter("w", w, true)], new AdamWOptions(Beta2: 1.0))).ParamName);
        Assert.Equal("Eps", Assert.Throws<ArgumentOutOfRangeException>(() =>
            new AdamW([new OptimizedParameter("w", w, true)], new AdamWOptions(Eps: 0))).ParamName);

        // Negative control: disjoint slices of one tensor are separate parameters.
        using var ok = new AdamW(
            [new OptimizedParameter("a", w.Slice(0, 2), true), new OptimizedParameter("b", w.Slice(2, 2), true)]);
        Assert.Equal(2, ok.Parameters.Count);
        Assert.Equal(new AdamWOptions(0.9, 0.98, 1e-8, 0.01), ok.Options);
    }

    [Fact]
    public void Matrices_decay_by_default_but_not_norm_weights_or_the_embedding()
    {
        Assert.True(AdamW.DecaysByDefault("layers.0.retention.q_proj.weight", 2));
        Assert.True(AdamW.DecaysByDefault("output_projection.weight", 2));
        Assert.False(AdamW.DecaysByDefault("embed_tokens.weight", 2));
        Assert.False(AdamW.DecaysByDefault("layers.3.final_layer_norm.weight", 1));
        Assert.False(AdamW.DecaysByDefault("layer_norm.weight", 1));
    }

    private void StepWith(AdamW optimizer, string name, int step, int n)
    {
        using var gradient = Tensor.FromHost(device, Gradient(step, n), n);
        optimizer.Step(new Dictionary<string, Tensor> { [name] = gradient }, LearningRate(step), GradientScale);
    }

    private static float[] Displacement(float[] current, float[] initial) =>
        current.Select((v, i) => (float)((double)v - initial[i])).ToArray();

    /// <summary>A double-precision run of one tensor, and the two wrong variants the check must reject.</summary>
    private sealed class ReferenceRun(float[] initial)
    {
        public double[] P { get; } = initial.Select(v => (double)v).ToArray();
        public double[] M { get; } = new double[initial.Length];
        public double[] V { get; } = new double[initial.Length];

        public double[] Displacement(float[] start) => P.Select((v, i) => v - start[i]).ToArray();

        /// <summary>Adam without 1/(1 − β^t): the first steps are too small.</summary>
        public void StepWithoutBiasCorrection(float[] gradient, double lr, double wd)
        {
            for (var i = 0; i < P.Length; i++)
            {
                var g = GradientScale * gradient[i];
                P[i] *= 1 - lr * wd;
                M[i] = Options.Beta1 * M[i] + (1 - Options.Beta1) * g;
                V[i] = Options.Beta2 * V[i] + (1 - Options.Beta2) * g * g;
                P[i] -= lr * M[i] / (Math.Sqrt(V[i]) + Options.Eps);
            }
        }

        /// <summary>Adam with L2 regularisation: wd·p added to the gradient instead of decoupled decay.</summary>
        public void StepWithL2Decay(float[] gradient, long step, double lr, double wd)
        {
            var g = gradient.Select((v, i) => (float)(GradientScale * v + wd * P[i])).ToArray();
            AdamWReference.Step(P, M, V, g, step, lr, Options.Beta1, Options.Beta2, Options.Eps, 0, 1.0);
        }
    }

    [Fact]
    public void A_16_bit_parameter_is_refused_by_its_name_with_the_way_to_mixed_precision()
    {
        using var matrix = Tensor.Zeros(device, TensorDType.BFloat16, 4, 4);
        using var vector = Tensor.Zeros(device, 4);
        var error = Assert.Throws<ArgumentException>(() => new AdamW(
        [
            new OptimizedParameter("norm.weight", vector, Decay: false),
            new OptimizedParameter("layers.0.ffn.fc1.weight", matrix, Decay: true),
        ]));
        Assert.Contains("'layers.0.ffn.fc1.weight') is stored as BFloat16", error.Message);
        Assert.Contains("UseComputeType", error.Message);
        // Negative control: fp32 parameters are taken.
        using var fp32 = Tensor.Zeros(device, 4, 4);
        using var optimizer = new AdamW([new OptimizedParameter("layers.0.ffn.fc1.weight", fp32, Decay: true)]);
        Assert.Single(optimizer.Parameters);
    }
}
