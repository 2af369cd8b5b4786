using RetNet.Ilgpu.Model;
using RetNet.Ilgpu.Retention;
using RetNet.Ilgpu.Tests.Support;

namespace RetNet.Ilgpu.Tests.Model;

/// <summary>
/// A RetNet model over packed documents: a batch whose first row holds two documents (5 and 7 tokens) and whose second
/// holds one (12 tokens) gives the token-weighted loss of the three documents run alone, and every parameter's gradient
/// of that loss, in the parallel and chunkwise forms (the chunk of 4 straddles the boundary at 5). Positions restart
/// with each document, for the rotation and the decay normalisation. The negative control runs the same windows
/// without the boundaries and asserts the same comparisons reject the loss and some gradient.
/// </summary>
[Collection(DeviceCollection.Name)]
public sealed class PackedDocumentModelTests(DeviceFixture fixture)
{
    /// <summary>fp32 against fp32 summed in another order, through every layer: the model tests' parity bound.</summary>
    private const double Tolerance = ModelTestSupport.ParityTolerance;

    private readonly RetNetDevice device = fixture.Device;

    public static TheoryData<string> Forms => ["parallel", "chunkwise(4)"];

    private static ForwardMode Mode(string form) =>
        form == "parallel" ? ForwardMode.Parallel : ForwardMode.Chunkwise(4);

    // Row 0: document A = tokens 0 … 4, document B = tokens 5 … 11 (each followed by its next token as the last
    // target); row 1: document C, the whole row.
    private static readonly int[] CuSeqlens = PackedSequences.Offsets(5, 7, 12);

    private static int[,] Window(int[,] tokens, int row, int start, int length)
    {
        var window = new int[1, length + 1];
        for (var t = 0; t <= length; t++)
            window[0, t] = tokens[row, start + t];
        return window;
    }

    [Theory, MemberData(nameof(Forms))]
    public void Packed_windows_give_the_loss_and_gradients_of_each_document_alone(string form)
    {
        var mode = Mode(form);
        using var model = LanguageModel.Create(device, ModelTestSupport.Micro(), seed: 11);
        var tokens = ModelTestSupport.Tokens(seed: 12, batch: 2, seqLen: 13, model.VocabSize);
        using var packed = ModelGradients.Zeros(model);
        using var alone = ModelGradients.Zeros(model);
        using var ignored = ModelGradients.Zeros(model);

        var packedLoss = model.ForwardBackward(tokens, packed, mode, cuSeqlens: CuSeqlens);
        double aloneLoss = 0;
        foreach (var (row, start, length) in new[] { (0, 0, 5), (0, 5, 7), (1, 0, 12) })
        {
            // The mean over 24 predicted tokens is the token-weighted mean of the documents' own means.
            var weight = length / 24f;
            aloneLoss += weight * model.ForwardBackward(Window(tokens, row, start, length), alone, mode, weight);
        }
        Numerics.AssertClose($"{form}: packed loss", [packedLoss], [aloneLoss], Tolerance);
        var expected = alone.ToHost();
        var actual = packed.ToHost();
        foreach (var (name, reference) in expected)
            Numerics.AssertClose($"{form}: d{name}", actual[name].Data, reference.Data, Tolerance);

        // The negative control: the same windows with the boundaries ignored.
        var ignoredLoss = model.ForwardBackward(tokens, ignored, mode);
        Numerics.AssertRejected(Numerics.Check($"{form}: loss, boundaries ignored", [ignoredLoss], [aloneLoss],
            Tolerance));
        var ignoredGradients = ignored.ToHost();
        NegativeControls.AssertAnyRejected(expected.Select(p => Numerics.Check(
            $"{form}: d{p.Key}, boundaries ignored", ignoredGradients[p.Key].Data, p.Value.Data, Tolerance)).ToList());
        Assert.Equal(packedLoss, model.Loss(tokens, mode, CuSeqlens), 5);
    }

    [Fact]
    public void Offsets_are_checked_and_a_mixer_that_cannot_pack_refuses_them()
    {
        using var model = LanguageModel.Create(device, ModelTestSupport.Micro(), seed: 11);
        var tokens = ModelTestSupport.Tokens(seed: 12, batch: 2, seqLen: 13, model.VocabSize);
        var error = Assert.ThrowsAny<ArgumentException>(() => model.Loss(tokens, cuSeqlens: [0, 5, 13, 24]));
        Assert.Equal("cuSeqlens", error.ParamName);
        Assert.Contains("no offset at 12", error.Message);

        using var transformer = LanguageModel.Create(device,
            new TransformerConfig { EmbedDim = 32, Heads = 2, FfnEmbedDim = 40, Layers = 1, VocabSize = 40 }, seed: 1);
        error = Assert.ThrowsAny<ArgumentException>(() => transformer.Loss(tokens, cuSeqlens: CuSeqlens));
        Assert.Equal("cuSeqlens", error.ParamName);
        Assert.Contains("cannot keep packed documents apart", error.Message);
    }
}
