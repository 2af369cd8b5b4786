using FsCheck;
using FsCheck.Fluent;
using FsCheck.Xunit;
using RetNet.Ilgpu.Model;
using RetNet.Ilgpu.Tests.Model;
using RetNet.Ilgpu.Tests.Support;

namespace RetNet.Ilgpu.Properties.Model;

[Collection(PropertyDeviceCollection.Name)]
public sealed class ModelProperties(DeviceFixture fixture)
{
    private readonly RetNetDevice device = fixture.Device;

    /// <summary>A random tiny model: 1–3 heads, 1–<paramref name="maxLayers"/> layers, either activation, tied or not,
    /// scaled or not.</summary>
    private static Gen<RetNetConfig> Configs(int maxLayers) =>
        from heads in Gen.Choose(1, 3)
        from layers in Gen.Choose(1, maxLayers)
        from gelu in Gen.Elements(false, true)
        from tied in Gen.Elements(false, true)
        from scale in Gen.Elements(false, true)
        select ModelTestSupport.Micro(gelu ? "gelu" : "swish", tied, scale, heads, layers);

    /// <summary>
    /// Mostly short sequences (B ≤ 2, T ≤ 9, C ≤ 10); one case in six is long enough to span several row tiles of the
    /// tiled retention kernels a GPU runs (the micro model's heads have 32 value columns, so the 32-row tile): T of
    /// 33 … 70 tokens in chunks of 1 … T + 5, so a chunk holds up to three row tiles or cuts one anywhere. On the CPU
    /// accelerator a model pass costs ~1 ms per token and layer whatever the form, so long cases have one sequence and
    /// one layer.
    /// </summary>
    private static Arbitrary<(RetNetConfig Config, int Seed, int Batch, int SeqLen, int ChunkSize)> Cases =>
        (from isLong in Gen.Frequency((5, Gen.Constant(false)), (1, Gen.Constant(true)))
         from config in Configs(maxLayers: isLong ? 1 : 2)
         from seed in Gen.Choose(0, 100_000)
         from batch in Gen.Choose(1, isLong ? 1 : 2)
         from seqLen in isLong ? Gen.Choose(33, 70) : Gen.Choose(1, 9)
         from chunk in Gen.Choose(1, isLong ? seqLen + 5 : 10)
         select (config, seed, batch, seqLen, chunk)).ToArbitrary();

    [Property(MaxTest = 30)]
    public Property Parallel_chunkwise_at_any_chunk_size_and_recurrent_logits_agree() =>
        Prop.ForAll(Cases, c =>
        {
            using var model = LanguageModel.FromWeights(device, c.Config, ModelTestSupport.Weights(c.Config, c.Seed));
            var tokens = ModelTestSupport.Tokens(c.Seed, c.Batch, c.SeqLen, c.Config.VocabSize);
            using var parallel = model.Forward(tokens, ForwardMode.Parallel);
            using var chunkwise = model.Forward(tokens, ForwardMode.Chunkwise(c.ChunkSize));
            using var recurrent = model.Forward(tokens, ForwardMode.Recurrent);
            var expected = parallel.ToHost();
            var recurrentLogits = recurrent.ToHost();
            Numerics.AssertClose("chunkwise", chunkwise.ToHost(), expected);
            Numerics.AssertClose("recurrent", recurrentLogits, expected);
            // Negative controls by the same comparison: zeros; logits one position late, wherever there are two
            // positions (the next token's logits see another context, in every one of the vocabulary's entries).
            Numerics.AssertRejected(Numerics.Check("zeros", new float[expected.Length], expected));
            if (c.SeqLen >= 2)
                Numerics.AssertRejected(Numerics.Check("recurrent logits one position late",
                    NegativeControls.OnePositionLate(recurrentLogits, c.Batch, c.SeqLen, c.Config.VocabSize),
                    expected));
        });

    /// <summary>Any block layout: pre- or post-norm, with or without deepnorm and layernorm_embedding.</summary>
    private static Gen<RetNetConfig> Layouts(Gen<RetNetConfig> configs) =>
        from config in configs
        from postNorm in Gen.Elements(false, true)
        from deepnorm in Gen.Elements(false, true)
        from embeddingNorm in Gen.Elements(false, true)
        select config with { NormalizeBefore = !postNorm, Deepnorm = deepnorm, LayerNormEmbedding = embeddingNorm };

    [Property(MaxTest = 15)]
    public Property Training_gradients_of_chunkwise_at_any_chunk_size_equal_parallel() =>
        Prop.ForAll((from c in Cases.Generator
                     from config in Layouts(Gen.Constant(c.Config))
                     select c with { Config = config, SeqLen = Math.Min(c.SeqLen, 40) + 1 }).ToArbitrary(), c =>
        {
            using var model = LanguageModel.FromWeights(device, c.Config, ModelTestSupport.Weights(c.Config, c.Seed));
            var windows = ModelTestSupport.Tokens(c.Seed, c.Batch, c.SeqLen, c.Config.VocabSize);
            using var parallel = ModelGradients.Zeros(model);
            using var chunkwise = ModelGradients.Zeros(model);
            var parallelLoss = model.ForwardBackward(windows, parallel, ForwardMode.Parallel);
            var chunkwiseLoss = model.ForwardBackward(windows, chunkwise, ForwardMode.Chunkwise(c.ChunkSize));
            Numerics.AssertClose("loss", [chunkwiseLoss], [parallelLoss]);
            var expected = parallel.ToHost();
            foreach (var (name, gradient) in chunkwise.ToHost())
            {
                Numerics.AssertClose($"d{name}", gradient.Data, expected[name].Data, 1e-3);
                // Negative controls by the same comparison, wherever the tensor's gradient is not all zero: zeros,
                // and every entry read one place on (an index off by one).
                if (expected[name].Data.Any(v => v != 0))
                {
                    Numerics.AssertRejected(Numerics.Check($"d{name} zeroed", new float[gradient.Data.Length],
                        expected[name].Data, 1e-3));
                    Numerics.AssertRejected(Numerics.Check($"d{name} one entry off",
                        NegativeControls.OneEntryOff(gradient.Data), expected[name].Data, 1e-3));
                }
            }
        });

    [Property(MaxTest = 20)]
    public Property Prefill_then_steps_equal_the_full_forward() =>
        Prop.ForAll(Cases, c =>
        {
            var seqLen = c.SeqLen + 1;
            using var model = LanguageModel.FromWeights(device, c.Config, ModelTestSupport.Weights(c.Config, c.Seed));
            var tokens = ModelTestSupport.Tokens(c.Seed, c.Batch, seqLen, c.Config.VocabSize);
            using var full = model.Forward(tokens, ForwardMode.Parallel);
            var expected = full.ToHost();
            var vocab = c.Config.VocabSize;
            // The prompt is most of a long sequence (one chunkwise prefill over many tiles), then at most 9 steps: a
            // step costs a whole pass of kernel launches, and the steps of a long sequence test nothing new.
            var split = seqLen - 1 - c.Seed % Math.Min(seqLen - 1, 9);
            var prompts = Enumerable.Range(0, c.Batch).Select(b => ModelTestSupport.Row(tokens, b, split)).ToList();
            var prefill = model.Prefill(prompts, c.ChunkSize);
            using var state = prefill.State;
            var logits = prefill.Logits;
            for (var t = split - 1; t < seqLen; t++)
            {
                for (var b = 0; b < c.Batch; b++)
                {
                    Numerics.AssertClose($"b{b} t{t}", logits[b],
                        expected.AsSpan((b * seqLen + t) * vocab, vocab).ToArray());
                    // The negative control: the same logits against the previous position's, which the check must
                    // tell apart (another context, in every entry of the vocabulary).
                    if (t > 0)
                        Numerics.AssertRejected(Numerics.Check($"b{b} t{t} against t{t - 1}", logits[b],
                            expected.AsSpan((b * seqLen + t - 1) * vocab, vocab).ToArray()));
                }
                if (t + 1 < seqLen)
                    logits = model.Step(Enumerable.Range(0, c.Batch).Select(b => tokens[b, t + 1]).ToArray(), state);
            }
        });

    [Property(MaxTest = 15)]
    public Property A_batch_of_different_prompt_lengths_equals_each_sequence_alone() =>
        Prop.ForAll(Cases, c =>
        {
            using var model = LanguageModel.FromWeights(device, c.Config, ModelTestSupport.Weights(c.Config, c.Seed));
            var random = new Random(c.Seed);
            var prompts = Enumerable.Range(0, 3)
                .Select(_ => Enumerable.Range(0, random.Next(1, 8)).Select(_ => random.Next(c.Config.VocabSize)).ToArray())
                .ToList();
            var next = prompts.Select(_ => random.Next(c.Config.VocabSize)).ToArray();
            var batch = model.Prefill(prompts, c.ChunkSize);
            using var batchState = batch.State;
            var batchStep = model.Step(next, batchState);
            for (var b = 0; b < prompts.Count; b++)
            {
                var alone = model.Prefill([prompts[b]], c.ChunkSize);
                using var aloneState = alone.State;
                Numerics.AssertClose($"prefill {b}", batch.Logits[b], alone.Logits[0]);
                Numerics.AssertClose($"step {b}", batchStep[b], model.Step([next[b]], aloneState)[0]);
                // The negative control: another sequence of the batch (another prompt, another state) is rejected,
                // so rows mixed up within the batch would fail.
                if (!prompts[b].SequenceEqual(prompts[(b + 1) % prompts.Count]))
                    Numerics.AssertRejected(Numerics.Check($"prefill {b} against sequence {(b + 1) % prompts.Count}",
                        batch.Logits[(b + 1) % prompts.Count], alone.Logits[0]));
            }
        });

    [Property(MaxTest = 6)]
    public Property A_saved_state_reloads_and_continues_identically() =>
        Prop.ForAll(Cases, c =>
        {
            using var model = LanguageModel.FromWeights(device, c.Config, ModelTestSupport.Weights(c.Config, c.Seed));
            var tokens = ModelTestSupport.Tokens(c.Seed, c.Batch, c.SeqLen, c.Config.VocabSize);
            var prefill = model.Prefill(Enumerable.Range(0, c.Batch).Select(b => ModelTestSupport.Row(tokens, b)).ToList());
            using var state = prefill.State;
            var path = Path.Combine(Path.GetTempPath(), $"retnet-state-{Guid.NewGuid():N}.safetensors");
            try
            {
                state.Save(path);
                using var loaded = DecodingState.Load(path, model);
                var next = Enumerable.Range(0, c.Batch).Select(b => tokens[b, 0]).ToArray();
                var a = model.Step(next, state);
                var b = model.Step(next, loaded);
                for (var i = 0; i < c.Batch; i++)
                    Assert.Equal(a[i], b[i]);
                Assert.Equal(state.Positions, loaded.Positions);
            }
            finally
            {
                File.Delete(path);
            }
        });

    [Property(MaxTest = 6)]
    public Property Checkpoint_save_then_load_round_trips_every_tensor_bit_for_bit() =>
        Prop.ForAll(Cases, c =>
        {
            var folder = Path.Combine(Path.GetTempPath(), $"retnet-model-{Guid.NewGuid():N}");
            try
            {
                using var model = LanguageModel.Create(device, c.Config, c.Seed);
                model.Save(folder);
                using var loaded = LanguageModel.Load(device, folder);
                var expected = model.ExportWeights();
                var actual = loaded.ExportWeights();
                Assert.Equal(expected.Keys, actual.Keys);
                foreach (var (name, tensor) in actual)
                    Assert.True(tensor.Data.AsSpan().SequenceEqual(expected[name].Data), name);
            }
            finally
            {
                if (Directory.Exists(folder))
                    Directory.Delete(folder, recursive: true);
            }
        });
}
