using RetNet.Ilgpu.Devices;
using RetNet.Ilgpu.Generation;
using RetNet.Ilgpu.Kernels;
using RetNet.Ilgpu.Kernels.Gemm;
using RetNet.Ilgpu.Model;
using RetNet.Ilgpu.Tensors;
using RetNet.Ilgpu.Tests.Support;
using Xunit.Sdk;

namespace RetNet.Ilgpu.Tests.Model;

/// <summary>
/// The decoding step's promise: a sequence's logits are bit-identical whatever else shares its batch (alone, or among
/// neighbours at other positions), for both architectures, at both weight types. The negative controls show that the
/// comparison rejects a single ulp, and that the two summation orders the automatic GEMM picks between by row count
/// really differ, which is what the step avoids.
/// </summary>
[Collection(DeviceCollection.Name)]
public sealed class ModelBatchInvarianceTests(DeviceFixture fixture)
{
    private readonly RetNetDevice device = fixture.Device;

    private const int Steps = 5;

    public static TheoryData<string, string, TensorDType> Models()
    {
        var data = new TheoryData<string, string, TensorDType>();
        foreach (var arch in new[] { "retnet", "transformer" })
            foreach (var preset in new[] { "tiny", "small" })
                foreach (var dtype in new[] { TensorDType.Float32, TensorDType.BFloat16 })
                    data.Add(arch, preset, dtype);
        return data;
    }

    [Theory]
    [MemberData(nameof(Models))]
    public void A_sequence_steps_to_the_same_logit_bits_alone_and_in_any_batch(string arch, string preset,
        TensorDType dtype)
    {
        using var model = Open(arch, preset, dtype);
        var random = new Random(HashCode.Combine(arch, preset, dtype.ToString()).GetHashCode() & 0xffff);
        var vocab = model.VocabSize;
        var probe = Tokens(random, 9, vocab);
        var next = Tokens(random, Steps, vocab);
        var alone = Decode(model, [probe], 0, next, random);

        int[] batches = preset == "tiny" && dtype == TensorDType.Float32 ? [2, 5, 16, 63] : [2, 5, 16];
        foreach (var batch in batches)
        {
            var slot = random.Next(batch);
            var prompts = new List<IReadOnlyList<int>>();
            for (var b = 0; b < batch; b++)
                prompts.Add(b == slot ? probe : Tokens(random, 1 + random.Next(24), vocab));
            var shared = Decode(model, prompts, slot, next, random);
            for (var step = 0; step < Steps; step++)
                AssertSameBits(alone[step], shared[step], $"batch {batch}, slot {slot}, step {step}");
        }
    }

    [Theory]
    [InlineData("retnet")]
    [InlineData("transformer")]
    public void Greedy_decoding_among_neighbours_gives_the_ids_it_gives_alone(string arch)
    {
        using var model = Open(arch, "tiny", TensorDType.Float32);
        var random = new Random(arch.Length);
        var vocab = model.VocabSize;
        int[] prompt = [.. Tokens(random, 7, vocab)];
        var alone = Greedy(model, [prompt], 0, random, 24);

        var prompts = new List<IReadOnlyList<int>>();
        for (var b = 0; b < 11; b++)
            prompts.Add(b == 4 ? prompt : Tokens(random, 1 + random.Next(30), vocab));
        var among = Greedy(model, prompts, 4, random, 24);
        Assert.Equal(alone, among);
    }

    /// <summary>Negative control: the comparison these tests use rejects logits one ulp away in one element.</summary>
    [Fact]
    public void The_bit_comparison_rejects_a_single_ulp()
    {
        using var model = Open("retnet", "tiny", TensorDType.Float32);
        var random = new Random(3);
        var logits = Decode(model, [Tokens(random, 5, model.VocabSize)], 0, [1], random)[0];
        var perturbed = (float[])logits.Clone();
        var at = random.Next(perturbed.Length);
        perturbed[at] = MathF.BitIncrement(perturbed[at]);

        AssertSameBits(logits, (float[])logits.Clone(), "a copy");
        Assert.ThrowsAny<XunitException>(() => AssertSameBits(logits, perturbed, "one ulp"));
    }

    /// <summary>
    /// Negative control: the automatic GEMM computes a row alone and the same row among many others in different
    /// orders (on the host, dot products up to <see cref="HostGemm.DotRows"/> rows, then the packed micro-kernel), so a
    /// step through it would not be batch-invariant; the step's product gives the row's bits for any row count.
    /// </summary>
    [Fact]
    public void The_automatic_gemm_is_not_batch_invariant_and_the_step_gemm_is()
    {
        var random = new Random(8);
        const int k = 320, n = 96;
        const int most = HostGemm.DotRows + 9;
        var rows = Values(random, most * k);
        var weight = Values(random, n * k);
        using var b = Tensor.FromHost(device, weight, n, k);
        var invariantAlone = Product(rows, 1, b, n, k, invariant: true);
        var automaticAlone = Product(rows, 1, b, n, k, invariant: false);
        var differs = false;
        foreach (var m in new[] { 2, 5, 8, 9, 16, 17, 63, most })
        {
            AssertSameBits(invariantAlone, Product(rows, m, b, n, k, invariant: true)[..n], $"row 0 of {m}");
            differs |= !automaticAlone.AsSpan().SequenceEqual(Product(rows, m, b, n, k, invariant: false).AsSpan(0, n));
        }
        if (device.Policy.Backend == OperatorBackend.Host)
            Assert.True(differs, "The automatic GEMM gave row 0 the same bits at every row count: the control is void.");
    }

    /// <summary>Every row of the step's GEMM equals that row computed alone, at each host instruction-set path and
    /// thread count, for fp32 and bf16 weights: 21 rows (blocks of four or two rows and a row left over), 74 columns
    /// (groups of four and two left over), k = 203 (25 vectors of 8 or 12 of 16, and a tail).</summary>
    [Fact]
    public void Every_row_of_the_step_gemm_equals_the_row_alone_on_every_host_path()
    {
        if (device.Policy.Backend != OperatorBackend.Host)
            return;
        var random = new Random(9);
        const int k = 203, n = 74, m = 21;
        var rows = Values(random, m * k);
        var weight = Values(random, n * k);
        foreach (var dtype in new[] { TensorDType.Float32, TensorDType.BFloat16 })
        {
            using var b = Tensor.FromHost(device, weight, dtype, n, k);
            foreach (var path in new[] { HostGemmPath.Vector512, HostGemmPath.Vector256, HostGemmPath.Scalar })
            {
                if (path == HostGemmPath.Vector512 && HostGemm.Best != HostGemmPath.Vector512)
                    continue;
                foreach (var threads in new[] { 1, 2 })
                {
                    var launch = GemmLaunch.HostWith(new HostSimd(path, threads), HostGemm.SmallRows);
                    var all = Run(rows, m, b, n, k, launch);
                    for (var r = 0; r < m; r++)
                        AssertSameBits(Run(rows[(r * k)..((r + 1) * k)], 1, b, n, k, launch), all[(r * n)..((r + 1) * n)],
                            $"{dtype} {path} {threads} threads, row {r}");
                }
            }
        }
    }

    /// <summary>
    /// The GPU route of the step's GEMM (the small-row kernel over blocks of 8 rows as batch entries, then the
    /// remainder), run here on whatever device the lane has: every row equals that row computed alone.
    /// </summary>
    [Fact]
    public void Every_row_of_the_small_row_kernel_route_equals_the_row_alone()
    {
        var random = new Random(10);
        const int k = 45, n = 6;
        var rows = Values(random, 21 * k);
        var weight = Values(random, n * k);
        using var b = Tensor.FromHost(device, weight, n, k);
        foreach (var m in new[] { 8, 9, 21 })
        {
            var all = Run(rows, m, b, n, k, GemmLaunch.TiledSmallRows);
            for (var r = 0; r < m; r++)
                AssertSameBits(Run(rows[(r * k)..((r + 1) * k)], 1, b, n, k, GemmLaunch.TiledSmallRows),
                    all[(r * n)..((r + 1) * n)], $"row {r} of {m}");
        }
    }

    private float[] Run(float[] rows, int m, Tensor b, int n, int k, GemmLaunch launch)
    {
        using var a = Tensor.FromHost(device, rows.AsSpan(0, m * k), m, k);
        using var c = Tensor.Zeros(device, m, n);
        Gemm.RunBatchInvariantWith(a, b, c, transposeA: false, transposeB: true, launch);
        return c.ToHost();
    }

    private float[] Product(float[] rows, int m, Tensor b, int n, int k, bool invariant)
    {
        using var a = Tensor.FromHost(device, rows.AsSpan(0, m * k), m, k);
        using var c = Tensor.Zeros(device, m, n);
        if (invariant)
            Gemm.RunBatchInvariant(a, b, c, transposeB: true);
        else
            Gemm.Run(a, b, c, transposeB: true);
        return c.ToHost();
    }

    private LanguageModel Open(string arch, string preset, TensorDType dtype) => arch == "retnet"
        ? LanguageModel.Create(device, RetNetConfig.Preset(preset), seed: 17, weightType: dtype)
        : LanguageModel.Create(device, TransformerConfig.Preset(preset), seed: 17, weightType: dtype);

    /// <summary>
    /// Prefills <paramref name="prompts"/> and steps them <paramref name="next"/>.Length times, the sequence at
    /// <paramref name="slot"/> taking <paramref name="next"/> and the others random tokens; that sequence's logits
    /// at each step.
    /// </summary>
    private static List<float[]> Decode(LanguageModel model, IReadOnlyList<IReadOnlyList<int>> prompts, int slot,
        IReadOnlyList<int> next, Random random)
    {
        var prefill = model.Prefill(prompts);
        using var state = prefill.State;
        var result = new List<float[]>();
        foreach (var token in next)
        {
            var tokens = new int[prompts.Count];
            for (var b = 0; b < tokens.Length; b++)
                tokens[b] = b == slot ? token : random.Next(model.VocabSize);
            result.Add(model.Step(tokens, state)[slot]);
        }
        return result;
    }

    /// <summary>Greedy ids of the sequence at <paramref name="slot"/>; the neighbours take random tokens.</summary>
    private static List<int> Greedy(LanguageModel model, IReadOnlyList<IReadOnlyList<int>> prompts, int slot,
        Random random, int count)
    {
        var prefill = model.Prefill(prompts);
        using var state = prefill.State;
        var logits = prefill.Logits[slot];
        var ids = new List<int>();
        for (var i = 0; i < count; i++)
        {
            ids.Add(Sampler.ArgMax(logits));
            var tokens = new int[prompts.Count];
            for (var b = 0; b < tokens.Length; b++)
                tokens[b] = b == slot ? ids[^1] : random.Next(model.VocabSize);
            logits = model.Step(tokens, state)[slot];
        }
        return ids;
    }

    private static void AssertSameBits(float[] expected, float[] actual, string what)
    {
        Assert.Equal(expected.Length, actual.Length);
        Assert.True(expected.Select(BitConverter.SingleToInt32Bits).SequenceEqual(
            actual.Select(BitConverter.SingleToInt32Bits)), $"The logits differ in their bits ({what}).");
    }

    private static int[] Tokens(Random random, int count, int vocab) =>
        [.. Enumerable.Range(0, count).Select(_ => random.Next(vocab))];

    private static float[] Values(Random random, int count) =>
        [.. Enumerable.Range(0, count).Select(_ => (float)(random.NextDouble() * 2 - 1))];
}
