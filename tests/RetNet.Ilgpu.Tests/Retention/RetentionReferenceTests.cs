using RetNet.Ilgpu.Retention;
using RetNet.Ilgpu.Tests.Support;

namespace RetNet.Ilgpu.Tests.Retention;

/// <summary>The double-precision references: the two forms agree, and their gradients are the loss's derivatives.</summary>
public sealed class RetentionReferenceTests
{
    public static TheoryData<int, int, int, int, int> Shapes => new()
    {
        { 1, 1, 1, 1, 1 },
        { 2, 5, 3, 4, 2 },
        { 1, 9, 2, 3, 5 },
    };

    private static (float[] Q, float[] K, float[] V, float[] S0, float[] DO, float[] DST) Inputs(RetentionShape shape,
        int seed) =>
        (Numerics.Uniform(seed, shape.QueryLength), Numerics.Uniform(seed + 1, shape.QueryLength),
         Numerics.Uniform(seed + 2, shape.ValueLength), Numerics.Uniform(seed + 3, shape.StateLength),
         Numerics.Uniform(seed + 4, shape.ValueLength), Numerics.Uniform(seed + 5, shape.StateLength));

    [Theory, MemberData(nameof(Shapes))]
    public void Quadratic_form_and_recurrence_agree_forward_and_backward(int b, int t, int h, int dk, int dv)
    {
        var shape = new RetentionShape(b, t, h, dk, dv);
        var decay = DecaySchedule.FromValues(Enumerable.Range(0, h).Select(i => 0.5 + 0.45 * i / h).ToArray());
        var (q, k, v, s0, dO, dST) = Inputs(shape, 11);

        var parallel = RetentionReference.Parallel(shape, decay, q, k, v, s0);
        var recurrent = RetentionReference.Recurrent(shape, decay, q, k, v, s0);
        AssertEqual(parallel.Output, recurrent.Output);
        AssertEqual(parallel.FinalState, recurrent.FinalState);

        var parallelGrad = RetentionReference.ParallelBackward(shape, decay, q, k, v, s0, dO, dST);
        var recurrentGrad = RetentionReference.RecurrentBackward(shape, decay, q, k, v, s0, dO, dST);
        AssertEqual(parallelGrad.QueryGradient, recurrentGrad.QueryGradient);
        AssertEqual(parallelGrad.KeyGradient, recurrentGrad.KeyGradient);
        AssertEqual(parallelGrad.ValueGradient, recurrentGrad.ValueGradient);
        AssertEqual(parallelGrad.InitialStateGradient, recurrentGrad.InitialStateGradient);
    }

    [Fact]
    public void Reference_gradients_match_finite_differences_of_the_loss()
    {
        // L = Σ dO ⊙ o + Σ dS_T ⊙ S_T, whose gradients are what the backward passes return for (dO, dS_T).
        var shape = new RetentionShape(2, 5, 2, 3, 2);
        var decay = DecaySchedule.FromValues(0.8, 0.35);
        var (q, k, v, s0, dO, dST) = Inputs(shape, 21);
        double Loss()
        {
            var forward = RetentionReference.Recurrent(shape, decay, q, k, v, s0);
            return Dot(dO, forward.Output) + Dot(dST, forward.FinalState);
        }

        foreach (var backward in new[]
                 {
                     RetentionReference.ParallelBackward(shape, decay, q, k, v, s0, dO, dST),
                     RetentionReference.RecurrentBackward(shape, decay, q, k, v, s0, dO, dST),
                 })
        {
            AssertFiniteDifferences("dq", q, backward.QueryGradient, Loss);
            AssertFiniteDifferences("dk", k, backward.KeyGradient, Loss);
            AssertFiniteDifferences("dv", v, backward.ValueGradient, Loss);
            AssertFiniteDifferences("dS0", s0, backward.InitialStateGradient, Loss);
        }
    }

    [Fact]
    public void Absent_optional_tensors_act_as_zeros()
    {
        var shape = new RetentionShape(1, 4, 1, 2, 3);
        var decay = DecaySchedule.FromValues(0.9);
        var (q, k, v, _, dO, _) = Inputs(shape, 31);
        var zeroState = new float[shape.StateLength];

        AssertEqual(RetentionReference.Parallel(shape, decay, q, k, v).Output,
            RetentionReference.Parallel(shape, decay, q, k, v, zeroState).Output);
        var absent = RetentionReference.ParallelBackward(shape, decay, q, k, v, null, dO, null);
        var zeros = RetentionReference.ParallelBackward(shape, decay, q, k, v, zeroState, dO, zeroState);
        AssertEqual(absent.KeyGradient, zeros.KeyGradient);
        AssertEqual(absent.InitialStateGradient, zeros.InitialStateGradient);
    }

    [Fact]
    public void Reference_rejects_inputs_of_the_wrong_length_or_head_count()
    {
        var shape = new RetentionShape(1, 2, 1, 2, 2);
        var ok = new float[4];
        Assert.Equal("q", Assert.Throws<ArgumentException>(() =>
            RetentionReference.Parallel(shape, DecaySchedule.FromValues(0.5), new float[3], ok, ok)).ParamName);
        Assert.Equal("decay", Assert.Throws<ArgumentException>(() =>
            RetentionReference.Parallel(shape, DecaySchedule.FromValues(0.5, 0.6), ok, ok, ok)).ParamName);
    }

    private static void AssertFiniteDifferences(string what, float[] input, double[] gradient, Func<double> loss)
    {
        // The loss is linear in each single element, so a central difference over the exact (fp32-rounded) step is
        // exact up to double rounding: a wrong term of any size shows.
        for (var i = 0; i < input.Length; i++)
        {
            var original = input[i];
            input[i] = original + 0.25f;
            var up = loss();
            var stepUp = (double)input[i];
            input[i] = original - 0.25f;
            var down = loss();
            var stepDown = (double)input[i];
            input[i] = original;
            var numeric = (up - down) / (stepUp - stepDown);
            Assert.True(Math.Abs(numeric - gradient[i]) <= 1e-9 * (1 + Math.Abs(numeric)),
                $"{what}[{i}]: finite difference {numeric}, backward {gradient[i]}.");
        }
    }

    private static double Dot(float[] a, double[] b)
    {
        var sum = 0.0;
        for (var i = 0; i < a.Length; i++)
            sum += a[i] * b[i];
        return sum;
    }

    private static void AssertEqual(double[] expected, double[] actual)
    {
        Assert.Equal(expected.Length, actual.Length);
        for (var i = 0; i < expected.Length; i++)
            Assert.True(Math.Abs(expected[i] - actual[i]) <= 1e-12 * (1 + Math.Abs(expected[i])),
                $"[{i}]: {expected[i]} vs {actual[i]}");
    }
}
