using RetNet.Ilgpu.Training.Data;

namespace RetNet.Ilgpu.Tests.Training;

public sealed class DataWindowTests : IDisposable
{
    private readonly string folder = Directory.CreateTempSubdirectory("retnet-windows-").FullName;

    public void Dispose() => Directory.Delete(folder, recursive: true);

    /// <summary>A dataset whose id at i is i mod 65536, so a window's position can be read off its ids.</summary>
    private TokenDataset Counting(int count, string name = "counting.bin")
    {
        var path = Path.Combine(folder, name);
        TokenDataset.WriteTokenFile(path, Enumerable.Range(0, count).Select(i => i % 65536).ToArray());
        return TokenDataset.Open([path], null, 65536);
    }

    private static int[,] Draw(WindowSampler sampler, int batch)
    {
        var windows = new int[batch, sampler.SeqLen + 1];
        sampler.Next(windows);
        return windows;
    }

    [Fact]
    public void The_same_seed_draws_the_same_windows_and_other_seeds_differ()
    {
        using var data = Counting(10_000);
        var a = new WindowSampler(data, 16, 42);
        var b = new WindowSampler(data, 16, 42);
        var c = new WindowSampler(data, 16, 43);

        for (var step = 0; step < 5; step++)
        {
            var wa = Draw(a, 8);
            Assert.Equal(wa, Draw(b, 8));
            Assert.NotEqual(wa, Draw(c, 8));
        }
    }

    [Fact]
    public void The_first_draws_are_pinned_so_the_generator_cannot_change_unnoticed()
    {
        // xoshiro256** from SplitMix64(0); the starts are Lemire's ⌊x · n / 2^64⌋ of its outputs for n = 1,000,000.
        using var data = Counting(1_000_000 + 4);
        var sampler = new WindowSampler(data, 4, 0);
        // SplitMix64's first output from seed 0, the published constant every implementation reproduces.
        Assert.Equal(0xE220A8397B1DCDAFUL, sampler.State[0]);
        var starts = Enumerable.Range(0, 3).Select(_ => sampler.NextStart()).ToArray();
        Assert.Equal(ReferenceStarts(0, 1_000_000, 3), starts);
    }

    /// <summary>
    /// An independent transcription of SplitMix64 seeding and xoshiro256** with BigInteger arithmetic, which shares no
    /// code with the sampler.
    /// </summary>
    private static long[] ReferenceStarts(ulong seed, ulong n, int count)
    {
        var mask = (System.Numerics.BigInteger.One << 64) - 1;
        System.Numerics.BigInteger x = seed;
        var s = new System.Numerics.BigInteger[4];
        for (var i = 0; i < 4; i++)
        {
            x = (x + 0x9E3779B97F4A7C15UL) & mask;
            var z = x;
            z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL) & mask;
            z = ((z ^ (z >> 27)) * 0x94D049BB133111EBUL) & mask;
            s[i] = z ^ (z >> 31);
        }
        System.Numerics.BigInteger Rotl(System.Numerics.BigInteger v, int k) => ((v << k) | (v >> (64 - k))) & mask;
        var result = new long[count];
        for (var i = 0; i < count; i++)
        {
            var output = Rotl((s[1] * 5) & mask, 7) * 9 & mask;
            var t = (s[1] << 17) & mask;
            s[2] ^= s[0];
            s[3] ^= s[1];
            s[1] ^= s[2];
            s[0] ^= s[3];
            s[2] ^= t;
            s[3] = Rotl(s[3], 45);
            // The rejection step fires with probability n / 2^64 ≈ 5e-14 here, so it does not arise.
            result[i] = (long)((output * n) >> 64);
        }
        return result;
    }

    [Fact]
    public void A_restored_state_continues_exactly_where_the_saved_sampler_left_off()
    {
        using var data = Counting(5_000);
        var original = new WindowSampler(data, 32, 7);
        Draw(original, 4);
        Draw(original, 4);
        var state = original.State;
        var restored = WindowSampler.Restore(data, 32, state);

        for (var step = 0; step < 4; step++)
            Assert.Equal(Draw(original, 4), Draw(restored, 4));

        // The state is a copy: mutating it does not disturb the sampler it came from.
        var snapshot = original.State;
        snapshot[0] ^= 1;
        Assert.NotEqual(snapshot, original.State);
        Assert.Throws<ArgumentException>(() => WindowSampler.Restore(data, 32, [1, 2, 3]));
        Assert.Throws<ArgumentException>(() => WindowSampler.Restore(data, 32, [0, 0, 0, 0]));
    }

    [Fact]
    public void Windows_are_consecutive_ids_inside_the_dataset_and_reach_both_ends()
    {
        const int count = 300, seqLen = 9;
        using var data = Counting(count);
        var sampler = new WindowSampler(data, seqLen, 3);
        var seenStarts = new HashSet<int>();

        for (var step = 0; step < 400; step++)
        {
            var windows = Draw(sampler, 16);
            Assert.Equal(seqLen + 1, windows.GetLength(1));
            for (var b = 0; b < 16; b++)
            {
                var start = windows[b, 0];
                Assert.InRange(start, 0, count - seqLen - 1);
                for (var t = 0; t <= seqLen; t++)
                    Assert.Equal(start + t, windows[b, t]);
                seenStarts.Add(start);
            }
        }
        // 6,400 draws over 291 starts: every start, the last included, turns up (each is missed with p ≈ 3e-10).
        Assert.Equal(count - seqLen, seenStarts.Count);
    }

    [Fact]
    public void Too_short_a_dataset_and_wrong_shapes_are_rejected()
    {
        using var data = Counting(10);
        Assert.NotNull(new WindowSampler(data, 9, 1));
        var error = Assert.Throws<ArgumentException>(() => new WindowSampler(data, 10, 1));
        Assert.Contains("10 tokens, fewer than one window of seqLen + 1 = 11", error.Message);
        Assert.Throws<ArgumentException>(() => new EvaluationWindows(data, 10, 1));
        var shape = Assert.Throws<ArgumentException>(() => new WindowSampler(data, 4, 1).Next(new int[2, 4]));
        Assert.Equal("windows", shape.ParamName);
    }

    [Theory]
    [InlineData(101, 10, 3)]   // 100 targets: exactly 10 windows, nothing dropped
    [InlineData(107, 10, 4)]   // 6 trailing ids dropped
    [InlineData(11, 10, 5)]    // one window
    [InlineData(20, 10, 1)]    // 19 targets: one whole window, 9 dropped
    public void Evaluation_windows_step_by_t_and_drop_the_last_partial_window(int count, int seqLen, int batch)
    {
        using var data = Counting(count, $"eval-{count}.bin");
        var evaluation = new EvaluationWindows(data, seqLen, batch);

        // Hand count: window w covers [w·T, w·T + T], which must end at or before the last id, count − 1.
        var expectedWindows = 0;
        while (expectedWindows * seqLen + seqLen <= count - 1)
            expectedWindows++;
        Assert.Equal(expectedWindows, evaluation.WindowCount);
        Assert.Equal(expectedWindows * seqLen, evaluation.PredictedTokens);

        var batches = evaluation.Batches().ToList();
        Assert.Equal((expectedWindows + batch - 1) / batch, batches.Count);
        Assert.Equal(batches.Count, evaluation.BatchCount);
        Assert.All(batches.SkipLast(1), b => Assert.Equal(batch, b.GetLength(0)));
        Assert.Equal(expectedWindows - batch * (batches.Count - 1), batches[^1].GetLength(0));

        // Every target id 1 … windows·T is predicted exactly once, in order.
        var targets = new List<int>();
        var window = 0;
        foreach (var b in batches)
            for (var r = 0; r < b.GetLength(0); r++, window++)
            {
                Assert.Equal(window * seqLen, b[r, 0]);
                for (var t = 1; t <= seqLen; t++)
                    targets.Add(b[r, t]);
            }
        Assert.Equal(Enumerable.Range(1, expectedWindows * seqLen), targets);
    }
}
