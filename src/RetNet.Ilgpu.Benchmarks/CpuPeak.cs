using System.Globalization;
using System.Runtime.Intrinsics;

namespace RetNet.Ilgpu.Benchmarks;

/// <summary>
/// The nominal fp32 peak of this machine's CPU: cores × SIMD lanes × FMA pipes × 2 operations per FMA × clock. The
/// lanes are those of the widest vector .NET accelerates here (16 with AVX-512, 8 with AVX2, 4 otherwise); every
/// x86-64 core with AVX2 or AVX-512 since Haswell and Zen 5 issues two FMAs of that width per cycle (Zen 2–4 split a
/// 512-bit FMA in two, so their true peak is half of this figure). The clock is the one the OS reports, which under
/// virtualisation is the nominal one, not the boost clock; a figure near or above 100% means the cores boost.
/// </summary>
/// <param name="Cores">Logical processors available to this process.</param>
/// <param name="Lanes">fp32 lanes of the widest accelerated vector.</param>
/// <param name="FmaPipes">FMAs issued per cycle per core (2).</param>
/// <param name="ClockGHz">The clock the OS reports, in GHz.</param>
public sealed record CpuPeak(int Cores, int Lanes, int FmaPipes, double ClockGHz)
{
    /// <summary>The peak in 10⁹ fp32 operations per second.</summary>
    public double GFlops => Cores * Lanes * FmaPipes * 2 * ClockGHz;

    /// <summary>A one-line statement of the figure and how it was formed.</summary>
    public string Describe() => string.Create(CultureInfo.InvariantCulture,
        $"CPU fp32 peak (nominal): {Cores} cores × {Lanes} lanes × {FmaPipes} FMA pipes × 2 × {ClockGHz:0.###} GHz = " +
        $"{GFlops:0.#} GFLOP/s");

    /// <summary>This machine's peak, or null when the OS does not report a clock (only Linux's /proc/cpuinfo is read).</summary>
    public static CpuPeak? Detect()
    {
        var clock = ClockFromCpuInfo();
        if (clock is not > 0)
            return null;
        var lanes = Vector512.IsHardwareAccelerated ? 16 : Vector256.IsHardwareAccelerated ? 8 : 4;
        return new CpuPeak(Environment.ProcessorCount, lanes, 2, clock.Value);
    }

    /// <summary>The highest "cpu MHz" of /proc/cpuinfo, in GHz; null when it cannot be read.</summary>
    internal static double? ClockFromCpuInfo(string path = "/proc/cpuinfo")
    {
        try
        {
            if (!File.Exists(path))
                return null;
            double? best = null;
            foreach (var line in File.ReadLines(path))
            {
                if (!line.StartsWith("cpu MHz", StringComparison.Ordinal))
                    continue;
                var colon = line.IndexOf(':');
                if (colon > 0 && double.TryParse(line[(colon + 1)..], NumberStyles.Float, CultureInfo.InvariantCulture,
                        out var mhz) && mhz > 0)
                    best = Math.Max(best ?? 0, mhz / 1000);
            }
            return best;
        }
        catch (IOException)
        {
            return null;
        }
        catch (UnauthorizedAccessException)
        {
            return null;
        }
    }
}
