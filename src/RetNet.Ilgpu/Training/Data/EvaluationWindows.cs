namespace RetNet.Ilgpu.Training.Data;

/// <summary>
/// Every window of T + 1 ids at stride T over a dataset, in order: window w holds ids [wT, wT + T], so each id after
/// the first is predicted exactly once and the windows share only their boundary id. The ids after the last whole
/// window are left out.
/// </summary>
public sealed class EvaluationWindows
{
    private readonly TokenDataset data;

    /// <summary>The windows of <paramref name="seqLen"/> + 1 ids over <paramref name="data"/>, in batches of up to <paramref name="batchSize"/>.</summary>
    /// <exception cref="ArgumentOutOfRangeException">seqLen or batchSize is below 1.</exception>
    /// <exception cref="ArgumentException">The dataset holds fewer than seqLen + 1 ids.</exception>
    public EvaluationWindows(TokenDataset data, int seqLen, int batchSize)
    {
        ArgumentNullException.ThrowIfNull(data);
        ArgumentOutOfRangeException.ThrowIfLessThan(seqLen, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(batchSize, 1);
        if (data.Count < seqLen + 1L)
            throw new ArgumentException(
                $"The dataset holds {data.Count} tokens, fewer than one window of seqLen + 1 = {seqLen + 1L}.",
                nameof(data));
        this.data = data;
        SeqLen = seqLen;
        BatchSize = batchSize;
        WindowCount = (data.Count - 1) / seqLen;
    }

    /// <summary>T: each window holds T + 1 ids.</summary>
    public int SeqLen { get; }

    /// <summary>The most windows in one batch.</summary>
    public int BatchSize { get; }

    /// <summary>The number of whole windows: ⌊(Count − 1) / T⌋.</summary>
    public long WindowCount { get; }

    /// <summary>The number of batches: ⌈<see cref="WindowCount"/> / B⌉.</summary>
    public long BatchCount => (WindowCount + BatchSize - 1) / BatchSize;

    /// <summary>The ids the windows predict (targets): <see cref="WindowCount"/> · T.</summary>
    public long PredictedTokens => WindowCount * SeqLen;

    /// <summary>The first id of window <paramref name="window"/>: window · T.</summary>
    public long StartOf(long window) => window * SeqLen;

    /// <summary>
    /// The batches in order, each a fresh [b, T + 1] array with b = B except possibly in the last batch; the windows
    /// are read when each batch is produced.
    /// </summary>
    public IEnumerable<int[,]> Batches()
    {
        for (long first = 0; first < WindowCount; first += BatchSize)
        {
            var rows = (int)Math.Min(BatchSize, WindowCount - first);
            var batch = new int[rows, SeqLen + 1];
            var row = new int[SeqLen + 1];
            for (var r = 0; r < rows; r++)
            {
                data.CopyTo(StartOf(first + r), row);
                for (var t = 0; t <= SeqLen; t++)
                    batch[r, t] = row[t];
            }
            yield return batch;
        }
    }
}
