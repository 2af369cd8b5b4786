using RetNet.Ilgpu.Benchmarks;

namespace RetNet.Ilgpu.Tests.Devices;

public sealed class CpuPeakTests
{
    [Fact]
    public void The_peak_is_cores_times_lanes_times_two_fma_pipes_times_two_times_the_clock()
    {
        var peak = new CpuPeak(Cores: 2, Lanes: 16, FmaPipes: 2, ClockGHz: 2.5);
        Assert.Equal(320.0, peak.GFlops, 9);
        Assert.Contains("2 cores × 16 lanes × 2 FMA pipes × 2 × 2.5 GHz = 320 GFLOP/s", peak.Describe());
    }

    [Fact]
    public void The_clock_is_the_highest_cpu_MHz_line_and_absent_without_one()
    {
        var path = Path.GetTempFileName();
        try
        {
            File.WriteAllLines(path,
            [
                "processor\t: 0", "model name\t: Some CPU", "cpu MHz\t\t: 2596.098", "",
                "processor\t: 1", "cpu MHz\t\t: 3100.5", "cpu MHz\t\t: not a number",
            ]);
            Assert.Equal(3.1005, CpuPeak.ClockFromCpuInfo(path)!.Value, 9);
            File.WriteAllLines(path, ["processor\t: 0", "model name\t: Some CPU"]);
            Assert.Null(CpuPeak.ClockFromCpuInfo(path));
            Assert.Null(CpuPeak.ClockFromCpuInfo(path + ".absent"));
        }
        finally
        {
            File.Delete(path);
        }
    }
}
