using System.Globalization;
using RetNet.Ilgpu.Devices;
using RetNet.Ilgpu.Tensors;

namespace RetNet.Ilgpu.Retention;

/// <summary>
/// The per-head decay γ_h of retention, each in the open interval (0, 1). Held in double precision: a γ within 1e-7 of
/// 1 is not representable in fp32 (it would round to 1, or lose most of 1 − γ), so kernels receive log γ and γ − 1,
/// both computed here in double and accurate to fp32's relative precision however close γ is to 1.
/// </summary>
public sealed class DecaySchedule
{
    private readonly double[] gammas;

    private DecaySchedule(double[] gammas, string argument)
    {
        if (gammas.Length == 0)
            throw new ArgumentException($"Argument '{argument}' has no heads; expected at least one γ.", argument);
        for (var h = 0; h < gammas.Length; h++)
        {
            var gamma = gammas[h];
            if (!double.IsFinite(gamma) || gamma <= 0 || gamma >= 1)
                throw new ArgumentOutOfRangeException(argument, gamma,
                    $"Argument '{argument}' has γ[{h}] = {gamma.ToString("R", CultureInfo.InvariantCulture)}; " +
                    "expected a finite value in the open interval (0, 1).");
        }
        this.gammas = gammas;
    }

    /// <summary>The number of heads H.</summary>
    public int Heads => gammas.Length;

    /// <summary>γ_h for h = 0 … H−1.</summary>
    public IReadOnlyList<double> Gammas => gammas;

    /// <summary>
    /// torchscale's default: γ_h = 1 − 2^(−5−h). At most 47 heads: beyond that γ rounds to 1 even in double.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="heads"/> is not in [1, 47].</exception>
    public static DecaySchedule Torchscale(int heads)
    {
        if (heads is < 1 or > 47)
            throw new ArgumentOutOfRangeException(nameof(heads), heads,
                $"Argument 'heads' is {heads}; expected 1 … 47 (γ = 1 − 2^(−5−h) rounds to 1 from h = 48 on).");
        var values = new double[heads];
        for (var h = 0; h < heads; h++)
            values[h] = 1 - Math.ScaleB(1, -5 - h);
        return new DecaySchedule(values, nameof(heads));
    }

    /// <summary>
    /// The RetNet paper's schedule: γ = 1 − exp(linspace(log 1/32, log 1/512, H)); a single head gets 1 − 1/32.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="heads"/> is less than 1.</exception>
    public static DecaySchedule Paper(int heads)
    {
        if (heads < 1)
            throw new ArgumentOutOfRangeException(nameof(heads), heads, $"Argument 'heads' is {heads}; expected ≥ 1.");
        var first = Math.Log(1.0 / 32);
        var last = Math.Log(1.0 / 512);
        var values = new double[heads];
        for (var h = 0; h < heads; h++)
        {
            var exponent = heads == 1 ? first : first + (last - first) * h / (heads - 1);
            values[h] = 1 - Math.Exp(exponent);
        }
        return new DecaySchedule(values, nameof(heads));
    }

    /// <summary>Explicit per-head values.</summary>
    /// <exception cref="ArgumentException">No value is given, or a value is not finite or outside (0, 1).</exception>
    public static DecaySchedule FromValues(params double[] gammas)
    {
        ArgumentNullException.ThrowIfNull(gammas);
        return new DecaySchedule((double[])gammas.Clone(), nameof(gammas));
    }

    /// <summary>Explicit per-head values given in fp32.</summary>
    /// <exception cref="ArgumentException">No value is given, or a value is not finite or outside (0, 1).</exception>
    public static DecaySchedule FromValues(params float[] gammas)
    {
        ArgumentNullException.ThrowIfNull(gammas);
        return new DecaySchedule(gammas.Select(g => (double)g).ToArray(), nameof(gammas));
    }

    /// <summary>
    /// Uploads [log γ_h ; γ_h − 1] as a [2, H] tensor, both rows computed in double and rounded once to fp32. The
    /// caller disposes it.
    /// </summary>
    internal Tensor Upload(RetNetDevice device)
    {
        var table = new float[2 * Heads];
        for (var h = 0; h < Heads; h++)
        {
            table[h] = (float)Math.Log(gammas[h]);
            table[Heads + h] = (float)(gammas[h] - 1);
        }
        return Tensor.FromHost(device, table, 2, Heads);
    }

    /// <inheritdoc/>
    public override string ToString() =>
        "γ = [" + string.Join(", ", gammas.Select(g => g.ToString("G9", CultureInfo.InvariantCulture))) + "]";
}
