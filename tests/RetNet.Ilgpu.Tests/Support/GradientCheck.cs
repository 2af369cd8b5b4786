using System.Globalization;

namespace RetNet.Ilgpu.Tests.Support;

/// <summary>
/// A parameter gradient held to finite differences of a float64 loss, measured once from the inputs (the parameter
/// and the loss) and then applied to any candidate gradient: the one under test, and the wrong ones it must reject.
/// <para>
/// Two comparisons, both by the project's rule
/// (<see cref="Numerics.Check(string, IReadOnlyList{float}, IReadOnlyList{double}, double, double)"/>), and a
/// candidate passes only if both do:
/// </para>
/// <list type="bullet">
/// <item><description>entries: central differences at <see cref="SampleCount"/> entries spread deterministically
/// over the tensor (the first and the last among them), relative to the largest of them, floored by the tensor's
/// root-mean-square gradient <see cref="Floor"/>;</description></item>
/// <item><description>directions: the derivative of the loss along <see cref="DirectionCount"/> random ±1 vectors
/// that move every entry at once, against Σ_i g_i·step_i of the candidate — so no entry of the tensor goes
/// unchecked.</description></item>
/// </list>
/// <para>
/// Nothing in the bounds comes from the candidate: the scale is the float64 reference's, and the floor is estimated
/// from the directional differences (E[(s·g)²] = |g|² for random signs s), i.e. from the inputs. A sampled entry
/// may itself be near zero (a row of the embedding whose token does not occur) while its neighbours carry the
/// tensor's scale; the floor holds it to that scale rather than to its own.
/// </para>
/// </summary>
public sealed class GradientCheck
{
    /// <summary>How many entries of each tensor are compared one by one (fewer when the tensor is smaller).</summary>
    public const int SampleCount = 12;

    /// <summary>How many random ±1 directions move the whole tensor.</summary>
    public const int DirectionCount = 2;

    /// <summary>The step of a single entry: large enough that float64 rounding of the loss (~1e-16 · L / h) is far
    /// below the tolerance, small enough that the O(h²) truncation is too.</summary>
    private const double EntryStep = 1e-3;

    /// <summary>The step of every entry along a direction: the whole move has length h·√n, so it is smaller than
    /// <see cref="EntryStep"/> to keep the truncation, O((h√n)²), as small.</summary>
    private const double DirectionStep = 1e-4;

    private readonly double[][] steps;
    private readonly double[] directional;

    private GradientCheck(int[] indices, double[] entries, double[][] steps, double[] directional, double floor)
    {
        Indices = indices;
        Entries = entries;
        this.steps = steps;
        this.directional = directional;
        Floor = floor;
    }

    /// <summary>The entries compared one by one.</summary>
    public IReadOnlyList<int> Indices { get; }

    /// <summary>The central differences of the loss at <see cref="Indices"/>.</summary>
    public IReadOnlyList<double> Entries { get; }

    /// <summary>The root-mean-square of the reference gradient over the tensor, from the directional
    /// differences.</summary>
    public double Floor { get; }

    /// <summary>
    /// <see cref="SampleCount"/> distinct indices into a tensor of <paramref name="length"/> entries: the first, the
    /// last, and the rest spread by the golden-ratio sequence (so a stride of the tensor's layout, a row or a head,
    /// is not sampled at one column only). All indices when the tensor has no more than that.
    /// </summary>
    public static int[] SampleIndices(int length, int count = SampleCount)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(length, 1);
        if (length <= count)
            return Enumerable.Range(0, length).ToArray();
        var indices = new SortedSet<int> { 0, length - 1 };
        var phase = 0.5;
        while (indices.Count < count)
        {
            phase = (phase + 0.6180339887498949) % 1;
            indices.Add((int)(phase * length));
        }
        return [.. indices];
    }

    /// <summary>
    /// Measures the reference: central differences of <paramref name="loss"/> at the sampled entries of
    /// <paramref name="parameter"/>, and along the random directions. <paramref name="loss"/> must read
    /// <paramref name="parameter"/> as it is when called; each entry is moved by steps fp32 can take and restored.
    /// </summary>
    public static GradientCheck Measure(float[] parameter, Func<double> loss)
    {
        ArgumentNullException.ThrowIfNull(parameter);
        ArgumentNullException.ThrowIfNull(loss);
        var indices = SampleIndices(parameter.Length);
        var entries = indices.Select(i => CentralDifference(parameter, loss, i)).ToArray();

        var steps = new double[DirectionCount][];
        var directional = new double[DirectionCount];
        var original = (float[])parameter.Clone();
        for (var r = 0; r < DirectionCount; r++)
        {
            var random = new Random(1000 + r);
            var signs = Enumerable.Range(0, parameter.Length).Select(_ => random.Next(2) == 0 ? -1.0 : 1.0).ToArray();
            var step = new double[parameter.Length];
            for (var i = 0; i < parameter.Length; i++)
                parameter[i] = (float)(original[i] + DirectionStep * signs[i]);
            var up = loss();
            for (var i = 0; i < parameter.Length; i++)
                step[i] = (double)parameter[i] - original[i];
            for (var i = 0; i < parameter.Length; i++)
                parameter[i] = (float)(original[i] - DirectionStep * signs[i]);
            var down = loss();
            for (var i = 0; i < parameter.Length; i++)
                step[i] += original[i] - (double)parameter[i];
            Array.Copy(original, parameter, parameter.Length);
            // In units of the nominal move 2h, so that the values read as derivatives along s.
            steps[r] = step.Select(s => s / (2 * DirectionStep)).ToArray();
            directional[r] = (up - down) / (2 * DirectionStep);
        }
        var floor = Math.Sqrt(directional.Sum(d => d * d) / DirectionCount / parameter.Length);
        return new(indices, entries, steps, directional, floor);
    }

    /// <summary>
    /// The verdict on <paramref name="gradient"/>: the entries' comparison if it fails, else the directions'.
    /// </summary>
    public Closeness Check(string what, IReadOnlyList<float> gradient, double tolerance)
    {
        ArgumentNullException.ThrowIfNull(gradient);
        var entries = Numerics.Check(
            $"{what} at [{string.Join(",", Indices.Select(i => i.ToString(CultureInfo.InvariantCulture)))}]",
            Indices.Select(i => gradient[i]).ToArray(), Entries.ToArray(), tolerance, Floor);
        if (!entries.Passed)
            return entries;
        var predicted = steps.Select(step =>
        {
            var sum = 0.0;
            for (var i = 0; i < step.Length; i++)
                sum += gradient[i] * step[i];
            return (float)sum;
        }).ToArray();
        return Numerics.Check($"{what} along {DirectionCount} random ±1 directions", predicted, directional,
            tolerance);
    }

    /// <summary>
    /// Asserts that <paramref name="gradient"/> passes, and that the same check rejects three wrong gradients made
    /// from it: zeros (a missing backward), doubled (the += rule applied twice) and every entry read one place on (an
    /// index or layout off by one). The controls run for every tensor, unconditionally: the directional comparison
    /// covers every entry, so zeros and doubled miss the reference by the whole directional derivative whenever the
    /// tensor's gradient is not zero, and a gradient read one place on is a different random-sign sum.
    /// </summary>
    public void AssertAgreesAndRejectsWrongGradients(string what, IReadOnlyList<float> gradient, double tolerance)
    {
        ArgumentNullException.ThrowIfNull(gradient);
        var verdict = Check(what, gradient, tolerance);
        Assert.True(verdict.Passed, verdict.Message);
        Numerics.AssertRejected(Check($"{what} zeroed", new float[gradient.Count], tolerance));
        Numerics.AssertRejected(Check($"{what} doubled", gradient.Select(v => 2 * v).ToArray(), tolerance));
        Assert.True(gradient.Count > 1, $"{what}: one entry; the one-entry-off control needs two");
        Numerics.AssertRejected(Check($"{what} one entry off", NegativeControls.OneEntryOff(gradient), tolerance));
    }

    /// <summary>(L(w + h) − L(w − h)) / (δ₊ + δ₋) at one entry, δ the steps fp32 can take.</summary>
    private static double CentralDifference(float[] parameter, Func<double> loss, int index)
    {
        var original = parameter[index];
        parameter[index] = (float)(original + EntryStep);
        var up = loss();
        var stepUp = (double)parameter[index] - original;
        parameter[index] = (float)(original - EntryStep);
        var down = loss();
        var stepDown = original - (double)parameter[index];
        parameter[index] = original;
        return (up - down) / (stepUp + stepDown);
    }
}
