using RetNet.Ilgpu.Model;
using RetNet.Ilgpu.Tests.Model;
using RetNet.Ilgpu.Tests.Robustness;
using RetNet.Ilgpu.Tests.Support;
using RetNet.Ilgpu.Tokenizers;
using RetNet.Ilgpu.Training;
using RetNet.Ilgpu.Training.Data;

namespace RetNet.Ilgpu.Tests.Training;

/// <summary>
/// <c>retnet train --pack-documents</c> on text whose documents are separated by GPT-2's &lt;|endoftext|&gt;: a short
/// run of the tiny preset trains and evaluates, and <c>retnet eval --pack-documents</c> reads its checkpoint; on the
/// trained model a window holding two documents gives, packed, the token-weighted loss of the two documents computed
/// alone (and, unpacked, another: the negative control). Data without a separator is refused with a message that says
/// why.
/// </summary>
[Collection(DeviceCollection.Name)]
public sealed class PackedTrainingTests(DeviceFixture fixture) : IDisposable
{
    /// <summary>A mean loss of fp32 passes summed in another order: 1e-5 relative, as the model tests hold losses.
    /// A barely trained model's loss sits near ln V whatever the context, so only a bound this tight sees the other
    /// document's influence in the negative control (~2e-4 relative here).</summary>
    private const double LossTolerance = 1e-5;

    private readonly RetNetDevice device = fixture.Device;
    private readonly string root = Directory.CreateTempSubdirectory("retnet-pack-").FullName;

    public void Dispose() => Directory.Delete(root, recursive: true);

    private const string Text =
        "The cat sat on the mat and looked at the door.<|endoftext|>A small boat drifted down the quiet river." +
        "<|endoftext|>Rain fell all night over the hills, and the roads were wet.<|endoftext|>" +
        "She wrote a letter to her brother about the garden.<|endoftext|>";

    [Fact]
    public void Retnet_train_pack_documents_runs_and_a_window_of_two_documents_gives_their_losses_alone()
    {
        var model = Path.Combine(root, "model");
        using (var created = LanguageModel.Create(device, RetNetConfig.Preset("tiny") with { VocabSize = 50257 },
                   seed: 5))
            created.Save(model);
        var data = Path.Combine(root, "docs.txt");
        File.WriteAllText(data, string.Concat(Enumerable.Repeat(Text, 4)));
        var checkpoint = Path.Combine(root, "checkpoint");

        var (exitCode, _, output) = ChildProcess.Run(ChildProcess.RetnetDll,
        [
            "train", "--model", model, "--data", data, "--val-data", data, "--output", checkpoint, "--tokenizer",
            "gpt2", "--pack-documents", "--steps", "3", "--batch", "2", "--seq-len", "16", "--chunk-size", "4",
            "--device", "cpu",
        ], TimeSpan.FromSeconds(120));
        Assert.True(exitCode == 0, string.Join('\n', output));
        (exitCode, _, output) = ChildProcess.Run(ChildProcess.RetnetDll,
        [
            "eval", "--model", checkpoint, "--data", data, "--tokenizer", "gpt2", "--pack-documents", "--seq-len", "16",
            "--device", "cpu",
        ], TimeSpan.FromSeconds(120));
        Assert.True(exitCode == 0, string.Join('\n', output));

        using var trained = LanguageModel.Load(device, checkpoint);
        var tokenizer = Gpt2Tokenizer.Instance;
        var endOfText = tokenizer.EndOfText!.Value;
        var ids = tokenizer.Encode(Text).ToList();
        // The window [EOT-opened document 2 … into document 3]: its inputs start inside document 1's end of text.
        var second = ids.IndexOf(endOfText);
        var third = ids.IndexOf(endOfText, second + 1);
        var length = third - second + 6;
        var window = Window(ids, second, length);
        var offsets = DocumentPacking.Offsets(window, endOfText);
        Assert.Equal([0, third - second, length], offsets);

        var mode = ForwardMode.Chunkwise(4);
        var packed = trained.Loss(window, mode, offsets);
        var first = third - second;
        var alone = (first * trained.Loss(Window(ids, second, first), mode) +
                     6 * trained.Loss(Window(ids, third, 6), mode)) / length;
        Numerics.AssertClose("packed window against its two documents alone", [packed], [alone], LossTolerance);
        Numerics.AssertRejected(Numerics.Check("the window unpacked", [trained.Loss(window, mode)], [alone],
            LossTolerance));
    }

    [Fact]
    public void Packing_data_without_an_end_of_text_is_refused_with_the_reason()
    {
        using var model = LanguageModel.Create(device, ModelTestSupport.Micro() with { VocabSize = 256 }, seed: 1);
        var settings = new TrainingSettings { Steps = 1, Batch = 1, SeqLen = 8, PackDocuments = true };
        using var text = TokenDataset.FromText(Text, ByteTokenizer.Instance, 256);
        var error = Assert.ThrowsAny<ArgumentException>(() =>
            Trainer.Start(model, new TrainingData(text, null, ByteTokenizer.Instance), settings, root));
        Assert.Contains("tokenizer 'byte' has none", error.Message);

        using var large = LanguageModel.Create(device, ModelTestSupport.Micro() with { VocabSize = 50257 }, seed: 1);
        using var tokens = TokenDataset.FromIds(Enumerable.Range(0, 64).ToArray(), 50257);
        error = Assert.ThrowsAny<ArgumentException>(() =>
            Trainer.Start(large, new TrainingData(tokens), settings, root));
        Assert.Contains("holds no end-of-text token (id 50256)", error.Message);
    }

    private static int[,] Window(IReadOnlyList<int> ids, int start, int length)
    {
        var window = new int[1, length + 1];
        for (var t = 0; t <= length; t++)
            window[0, t] = ids[start + t];
        return window;
    }
}
