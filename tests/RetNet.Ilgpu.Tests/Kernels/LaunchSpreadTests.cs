using ILGPU;
using RetNet.Ilgpu.Devices;
using RetNet.Ilgpu.Kernels;
using RetNet.Ilgpu.Kernels.Elementwise;
using RetNet.Ilgpu.Kernels.Normalization;
using RetNet.Ilgpu.Tensors;
using RetNet.Ilgpu.Tests.Support;

namespace RetNet.Ilgpu.Tests.Kernels;

/// <summary>
/// The implicitly grouped kernels split their items over however many threads <see cref="Launch.Spread"/> picks. These
/// tests force the split to one thread, a few, and far more threads than items, and require the same bits as the
/// device's own policy: each item is computed by one thread with the same arithmetic whatever the split.
/// </summary>
[Collection(DeviceCollection.Name)]
public sealed class LaunchSpreadTests(DeviceFixture fixture)
{
    private readonly RetNetDevice device = fixture.Device;

    // One thread, a count that divides nothing evenly, and more threads than any tensor below has items.
    public static TheoryData<int> ForcedThreads => [1, 3, 70_001];

    [Theory]
    [InlineData(0, 1, 1)]
    [InlineData(1, 1, 1)]
    [InlineData(10, 1, 10)]
    [InlineData(10, 3, 1)]
    [InlineData(10, 3, 4)]
    [InlineData(10, 64, 1)]
    [InlineData(1000, 7, 143)]
    [InlineData(1000, 8, 3)]
    public void Every_item_belongs_to_exactly_one_thread(int count, int threads, int chunk)
    {
        var spread = new Spread(count, threads, chunk);
        var owners = new int[count];
        for (var thread = 0; thread < threads; thread++)
        {
            for (var start = spread.First(new Index1D(thread)); start < spread.Count; start += spread.Step)
            {
                for (var item = start; item < spread.End(start); item++)
                    owners[item]++;
            }
        }
        Assert.All(owners, n => Assert.Equal(1, n));
    }

    [Fact]
    public void The_policy_covers_the_work_with_few_threads_on_the_cpu_accelerator_and_strides_elsewhere()
    {
        foreach (var count in new[] { 1, 5, 1000, 1 << 22 })
        {
            var spread = Launch.Spread(device, count);
            // On the host path a thread is worth it only for enough items; below that the launch runs inline.
            var expected = device.RunsOnHost
                ? Math.Clamp(Launch.CeilDiv(count, RetNetDevice.HostItemsPerThread), 1, device.LaunchThreads)
                : Math.Min(count, device.LaunchThreads);
            Assert.Equal(expected, spread.Threads);
            // The CPU accelerator: one contiguous run per thread. Elsewhere: one item per thread per stride.
            Assert.Equal(device.IsCpuSimulator ? Launch.CeilDiv(count, spread.Threads) : 1, spread.Chunk);
        }
        Assert.Throws<ArgumentOutOfRangeException>(() => new Spread(int.MaxValue - 10, 16, 1));
    }

    [Theory, MemberData(nameof(ForcedThreads))]
    public void Elementwise_kernels_give_the_same_bits_for_any_thread_count(int threads)
    {
        const int n = 4099;
        var a = Numerics.Uniform(31, n, 4f);
        var b = Numerics.Uniform(32, n, 4f);
        using var ta = Tensor.FromHost(device, a, n);
        using var tb = Tensor.FromHost(device, b, n);
        var expected = Run(ta, tb);
        Numerics.AssertClose("add", expected[0], ElementwiseReference.Zip(a, b, (x, y) => x + y));

        var actual = Forced(threads, () => Run(ta, tb));

        for (var i = 0; i < expected.Length; i++)
            Assert.Equal(expected[i], actual[i]);

        float[][] Run(Tensor x, Tensor y)
        {
            using var output = Tensor.Zeros(device, n);
            var results = new List<float[]>();
            Elementwise.Add(x, y, output);
            results.Add(output.ToHost());
            Elementwise.Gelu(x, output);
            results.Add(output.ToHost());
            Elementwise.GeluBackward(x, y, output);
            results.Add(output.ToHost());
            Elementwise.Scale(x, -0.5f, output);
            results.Add(output.ToHost());
            return [.. results];
        }
    }

    [Theory, MemberData(nameof(ForcedThreads))]
    public void Normalization_kernels_give_the_same_bits_for_any_thread_count(int threads)
    {
        // 70 rows of 96: more rows than one gradient chunk, so the column-sum pass runs too.
        const int rows = 70, dim = 96;
        var x = Numerics.Uniform(41, rows * dim, 3f);
        var w = Numerics.Uniform(42, dim);
        var bias = Numerics.Uniform(43, dim);
        var dy = Numerics.Uniform(44, rows * dim);
        using var tx = Tensor.FromHost(device, x, rows, dim);
        using var tw = Tensor.FromHost(device, w, dim);
        using var tb = Tensor.FromHost(device, bias, dim);
        using var tdy = Tensor.FromHost(device, dy, rows, dim);
        var options = new NormalizationOptions(NormalizationForm.ThreadPerRow, 1, NormalizationOptions.DefaultChunkRows);
        var expected = Run();

        var actual = Forced(threads, Run);

        for (var i = 0; i < expected.Length; i++)
            Assert.Equal(expected[i], actual[i]);

        float[][] Run()
        {
            using var y = Tensor.Zeros(device, rows, dim);
            using var dx = Tensor.Zeros(device, rows, dim);
            using var dw = Tensor.Zeros(device, dim);
            using var db = Tensor.Zeros(device, dim);
            var results = new List<float[]>();
            LayerNorm.Forward(tx, tw, tb, 1e-5f, y, null, null, options);
            results.Add(y.ToHost());
            LayerNorm.Backward(tx, tw, tdy, 1e-5f, dx, dw, db, null, null, options);
            results.AddRange([dx.ToHost(), dw.ToHost(), db.ToHost()]);
            RmsNorm.Forward(tx, tw, 1e-6f, y, null, options);
            results.Add(y.ToHost());
            RmsNorm.Backward(tx, tw, tdy, 1e-6f, dx, dw, null, options);
            results.AddRange([dx.ToHost(), dw.ToHost()]);
            return [.. results];
        }
    }

    private T Forced<T>(int threads, Func<T> run)
    {
        device.ForcedLaunchThreads = threads;
        try
        {
            return run();
        }
        finally
        {
            device.ForcedLaunchThreads = null;
        }
    }
}
