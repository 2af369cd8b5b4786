using RetNet.Ilgpu.Kernels.Gemm;
using RetNet.Ilgpu.Kernels.Normalization;
using RetNet.Ilgpu.Tests.Support;

namespace RetNet.Ilgpu.Tests.Kernels;

/// <summary>
/// The host execution's row normalisation (<see cref="HostNormalization"/>) on every instruction-set path, called
/// directly: RMSNorm and LayerNorm, with and without weight, bias and per-row eps, against the double reference at
/// widths that cut the 8- and 16-lane vectors; a row's bits the same alone and among other rows (a decoding step's
/// norms must not depend on the batch).
/// </summary>
public sealed unsafe class HostNormalizationTests
{
    private static readonly int[] Dims = [1, 7, 8, 16, 17, 64, 100];
    private const int Rows = 9;
    private const float Eps = 1e-5f;

    public static TheoryData<string> Paths() =>
        [nameof(HostGemmPath.Vector512), nameof(HostGemmPath.Vector256), nameof(HostGemmPath.Scalar)];

    private sealed record Result(float[] Y, float[] Mean, float[] Rstd);

    private static Result Forward(bool layer, HostGemmPath path, float[] x, float[]? weight, float[]? bias,
        float[]? epsScale, int rows, int dim)
    {
        var (y, mean, rstd) = (new float[rows * dim], new float[rows], new float[rows]);
        var flags = NormalizationFlags.Output | NormalizationFlags.Statistics |
            (weight is null ? 0 : NormalizationFlags.Weight) | (bias is null ? 0 : NormalizationFlags.Bias) |
            (epsScale is null ? 0 : NormalizationFlags.RowEps);
        fixed (float* px = x, pw = weight, pb = bias, pe = epsScale, py = y, pm = mean, pr = rstd)
        {
            if (layer)
                HostNormalization.ForwardRows<LayerNormalization>(px, pw, pb, py, pm, pr, pe, rows, dim, Eps, flags,
                    path);
            else
                HostNormalization.ForwardRows<RmsNormalization>(px, pw, pb, py, pm, pr, pe, rows, dim, Eps, flags,
                    path);
        }
        return new Result(y, mean, rstd);
    }

    private static double[] Wide(float[] values) => values.Select(v => (double)v).ToArray();

    [Theory, MemberData(nameof(Paths))]
    public void Rms_and_layer_norm_match_the_reference_on_every_path(string pathName)
    {
        var path = Enum.Parse<HostGemmPath>(pathName);
        foreach (var dim in Dims)
        {
            // An offset mean makes LayerNorm's centring matter.
            var x = Numerics.Uniform(dim, Rows * dim, 3f).Select(v => v + 2f).ToArray();
            var weight = Numerics.Uniform(dim + 1, dim, 2f);
            var bias = Numerics.Uniform(dim + 2, dim);
            var epsScale = Numerics.Uniform(dim + 3, Rows).Select(v => 1f + Math.Abs(v)).ToArray();
            var name = $"{path} dim={dim}";

            var rms = Forward(false, path, x, weight, null, epsScale, Rows, dim);
            var rmsReference = NormalizationReference.RmsNormForward(Wide(x), Wide(weight), dim, Eps, Wide(epsScale));
            Numerics.AssertClose($"rms y, {name}", rms.Y, rmsReference.Y);
            Numerics.AssertClose($"rms rstd, {name}", rms.Rstd, rmsReference.Rstd);

            var plain = Forward(false, path, x, null, null, null, Rows, dim);
            Numerics.AssertClose($"rms without weight, {name}", plain.Y,
                NormalizationReference.RmsNormForward(Wide(x), null, dim, Eps).Y);

            var layer = Forward(true, path, x, weight, bias, null, Rows, dim);
            var layerReference = NormalizationReference.LayerNormForward(Wide(x), Wide(weight), Wide(bias), dim, Eps);
            Numerics.AssertClose($"layer y, {name}", layer.Y, layerReference.Y);
            Numerics.AssertClose($"layer mean, {name}", layer.Mean, layerReference.Mean);
            Numerics.AssertClose($"layer rstd, {name}", layer.Rstd, layerReference.Rstd);
        }
    }

    [Theory, MemberData(nameof(Paths))]
    public void A_rows_bits_are_the_same_alone_and_among_other_rows(string pathName)
    {
        var path = Enum.Parse<HostGemmPath>(pathName);
        foreach (var dim in Dims)
        {
            var x = Numerics.Uniform(10 + dim, Rows * dim, 3f);
            var weight = Numerics.Uniform(11 + dim, dim);
            var bias = Numerics.Uniform(12 + dim, dim);
            foreach (var layer in new[] { false, true })
            {
                var all = Forward(layer, path, x, weight, layer ? bias : null, null, Rows, dim);
                for (var r = 0; r < Rows; r++)
                {
                    var alone = Forward(layer, path, x[(r * dim)..((r + 1) * dim)], weight, layer ? bias : null, null,
                        1, dim);
                    Assert.Equal(alone.Y, all.Y[(r * dim)..((r + 1) * dim)]);
                    Assert.Equal(alone.Rstd[0], all.Rstd[r]);
                }
            }
        }
    }

    [Fact]
    public void The_reference_check_rejects_a_norm_whose_sum_of_squares_missed_the_tail()
    {
        // Negative control: the rows' last element left out of the statistics (a tail dropped instead of padded)
        // shifts rstd past the tolerance, so the checks above would see a vector loop that skipped its tail.
        const int dim = 17;
        var x = Numerics.Uniform(20, Rows * dim, 3f);
        var reference = NormalizationReference.RmsNormForward(Wide(x), null, dim, Eps);
        var truncated = new float[Rows];
        for (var r = 0; r < Rows; r++)
        {
            var squares = 0.0;
            for (var j = 0; j < dim - 1; j++)
                squares += (double)x[r * dim + j] * x[r * dim + j];
            truncated[r] = (float)(1 / Math.Sqrt(squares / dim + Eps));
        }
        Numerics.AssertRejected(Numerics.Check("rstd without the tail", truncated, reference.Rstd));
        Numerics.AssertClose("rstd", Forward(false, HostGemm.Best, x, null, null, null, Rows, dim).Rstd,
            reference.Rstd);
    }
}
