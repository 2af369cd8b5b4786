using RetNet.Ilgpu.Model;
using RetNet.Ilgpu.Tokenizers;
using RetNet.Ilgpu.Training.Data;

namespace RetNet.Ilgpu.Training;

/// <summary>The result of an evaluation over whole data.</summary>
/// <param name="Loss">Mean loss over every predicted token, nats.</param>
/// <param name="Tokens">Predicted tokens.</param>
/// <param name="BitsPerByte">Bits per UTF-8 byte of the predicted tokens, for text data; null for token files.</param>
public sealed record Evaluation(double Loss, long Tokens, double? BitsPerByte)
{
    /// <summary>e^loss.</summary>
    public double Perplexity => Math.Exp(Loss);
}

/// <summary>Held-out evaluation of any model.</summary>
public static class ModelEvaluation
{
    /// <summary>
    /// The mean next-token loss of <paramref name="model"/> over every window of T + 1 tokens of
    /// <paramref name="data"/> with stride T (the last partial window dropped), in nats per predicted token, and for
    /// text read with <paramref name="tokenizer"/> the bits per byte of the predicted tokens. <paramref name="mode"/>
    /// is retention's form (default parallel; attention has one). With <paramref name="documentSeparator"/> the windows
    /// are packed documents, each opened by that id (<see cref="DocumentPacking"/>).
    /// </summary>
    /// <exception cref="ArgumentException">The data holds no whole window.</exception>
    public static Evaluation Evaluate(this ILanguageModel model, TokenDataset data, int seqLen, int batch = 8,
        ForwardMode? mode = null, ITextTokenizer? tokenizer = null, int? documentSeparator = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(data);
        var windows = new EvaluationWindows(data, seqLen, batch);
        var countBytes = tokenizer is not null && data.IsText;
        double nats = 0, bytes = 0;
        long tokens = 0;
        foreach (var w in windows.Batches())
        {
            var n = w.GetLength(0) * seqLen;
            if (countBytes)
                for (var b = 0; b < w.GetLength(0); b++)
                for (var t = 1; t <= seqLen; t++)
                    bytes += tokenizer!.TokenBytes(w[b, t]).Length;
            var documents = documentSeparator is { } id ? DocumentPacking.Offsets(w, id) : null;
            nats += (double)model.Loss(w, mode, documents) * n;
            tokens += n;
        }
        if (tokens == 0)
            throw new ArgumentException(
                $"The data holds {data.Count} tokens: no whole window of {seqLen + 1}.", nameof(data));
        return new Evaluation(nats / tokens, tokens, countBytes && bytes > 0 ? nats / Math.Log(2) / bytes : null);
    }
}
