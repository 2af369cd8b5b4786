using System.Diagnostics;
using System.Threading.Channels;
using RetNet.Ilgpu.Model;

namespace RetNet.Ilgpu.Generation;

/// <summary>Limits of a <see cref="BatchedGenerator"/>, validated when set (the property's name is the exception's
/// parameter name).</summary>
public sealed record BatchedGeneratorOptions
{
    private readonly int maxBatch = 8, maxQueue = 64, maxContext = 2048, chunkSize = ForwardMode.DefaultChunkSize;

    /// <summary>The most sequences decoded together in one step, ≥ 1 (default 8).</summary>
    public int MaxBatch
    {
        get => maxBatch;
        init => maxBatch = value >= 1 ? value
            : throw new ArgumentOutOfRangeException(nameof(MaxBatch), value, $"MaxBatch must be ≥ 1; got {value}.");
    }

    /// <summary>The most requests waiting for a slot (active ones not counted), ≥ 0 (default 64); past it
    /// <see cref="BatchedGenerator.Submit"/> throws <see cref="GenerationQueueFullException"/>.</summary>
    public int MaxQueue
    {
        get => maxQueue;
        init => maxQueue = value >= 0 ? value
            : throw new ArgumentOutOfRangeException(nameof(MaxQueue), value, $"MaxQueue must be ≥ 0; got {value}.");
    }

    /// <summary>The most positions one sequence may reach, prompt and generated tokens together, ≥ 2 (default
    /// 2,048): a longer prompt is refused, and generation stops there (<see cref="FinishReason.MaxTokens"/>). It bounds
    /// what one request can make a KV cache allocate.</summary>
    public int MaxContext
    {
        get => maxContext;
        init => maxContext = value >= 2 ? value
            : throw new ArgumentOutOfRangeException(nameof(MaxContext), value, $"MaxContext must be ≥ 2; got {value}.");
    }

    /// <summary>Retention's chunk size for prefill, ≥ 1.</summary>
    public int ChunkSize
    {
        get => chunkSize;
        init => chunkSize = value >= 1 ? value
            : throw new ArgumentOutOfRangeException(nameof(ChunkSize), value, $"ChunkSize must be ≥ 1; got {value}.");
    }
}

/// <summary>Every waiting slot of a <see cref="BatchedGenerator"/>'s queue is taken: try again later.</summary>
/// <param name="maxQueue">The queue's size.</param>
public sealed class GenerationQueueFullException(int maxQueue)
    : InvalidOperationException($"The generation queue is full ({maxQueue} requests waiting for a slot); try again later.")
{
    /// <summary>The queue's size.</summary>
    public int MaxQueue { get; } = maxQueue;
}

/// <summary>How a request of a <see cref="BatchedGenerator"/> ended.</summary>
/// <param name="Tokens">The generated token ids (a stop token excluded).</param>
/// <param name="Reason">Why it ended.</param>
/// <param name="PromptTokens">The prompt's length in tokens.</param>
public sealed record GenerationResult(IReadOnlyList<int> Tokens, FinishReason Reason, int PromptTokens)
{
    /// <summary>The generated tokens' count.</summary>
    public int CompletionTokens => Tokens.Count;
}

/// <summary>One decoding step of a <see cref="BatchedGenerator"/>: how many sequences it advanced and how long it
/// took (sampling included).</summary>
/// <param name="Batch">The sequences stepped together.</param>
/// <param name="Elapsed">Wall time of the step.</param>
public readonly record struct GenerationStep(int Batch, TimeSpan Elapsed);

/// <summary>A request submitted to a <see cref="BatchedGenerator"/>: its tokens as they come, and how it ended.</summary>
public sealed class GenerationHandle
{
    private readonly Channel<int> tokens = Channel.CreateUnbounded<int>(new UnboundedChannelOptions { SingleWriter = true });
    private readonly TaskCompletionSource<GenerationResult> completion =
        new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly List<int> generated = [];

    internal GenerationHandle(IReadOnlyList<int> prompt, SamplingOptions options, int maxTokens,
        CancellationToken cancellationToken)
    {
        Prompt = prompt;
        Sampling = new SequenceSampling(options, options.Seed, maxTokens);
        CancellationToken = cancellationToken;
    }

    /// <summary>The prompt's token ids.</summary>
    public IReadOnlyList<int> Prompt { get; }

    /// <summary>The final result: completes (never faults with cancellation) when the request ends, or faults with the
    /// model's exception (e.g. <see cref="NonFiniteValuesException"/>).</summary>
    public Task<GenerationResult> Completion => completion.Task;

    internal SequenceSampling Sampling { get; }

    internal CancellationToken CancellationToken { get; }

    internal int LastToken { get; set; }

    internal CancellationTokenRegistration Registration { get; set; }

    /// <summary>The generated token ids as they are sampled; ends when the request ends (then read
    /// <see cref="Completion"/>).</summary>
    public IAsyncEnumerable<int> ReadTokensAsync(CancellationToken cancellationToken = default) =>
        tokens.Reader.ReadAllAsync(cancellationToken);

    /// <summary>The generated token ids as they are sampled, for readers that take every token already there at once
    /// (<see cref="TextCompletion"/>).</summary>
    internal ChannelReader<int> TokenReader => tokens.Reader;

    internal void Emit(int token)
    {
        generated.Add(token);
        LastToken = token;
        tokens.Writer.TryWrite(token);
    }

    internal void Complete(FinishReason reason)
    {
        Registration.Dispose();
        Sampling.Finish(reason);
        tokens.Writer.TryComplete();
        completion.TrySetResult(new GenerationResult(generated.ToArray(), Sampling.Finished ?? reason, Prompt.Count));
    }

    internal void Fail(Exception error)
    {
        Registration.Dispose();
        tokens.Writer.TryComplete();
        completion.TrySetException(error);
    }
}

/// <summary>
/// One <see cref="ILanguageModel"/> shared by many requests through continuous batching: a background loop owns the
/// model and one running <see cref="DecodingState"/> whose sequence slots it keeps; each iteration admits waiting
/// requests up to <see cref="BatchedGeneratorOptions.MaxBatch"/> (each prompt prefilled alone, chunkwise, then copied
/// into a free slot with <see cref="DecodingState.Append"/>), runs one
/// <see cref="ILanguageModel.Step(IReadOnlyList{int}, DecodingState, Span{float})"/> for every active sequence (into
/// a logits buffer the loop keeps), samples each row with its own sampler (seeded per request, so what a request
/// samples does not depend on its neighbours), and drops finished or cancelled rows in place
/// (<see cref="DecodingState.Keep"/>) so their slots are free at the next step. Sampling, stop tokens and the token budget are <see cref="Generator"/>'s own code.
/// </summary>
/// <remarks>The model is used only from the loop's thread; do not call it elsewhere while the generator lives.</remarks>
public sealed class BatchedGenerator : IDisposable, IAsyncDisposable
{
    private readonly ILanguageModel model;
    private readonly bool ownsModel;
    private readonly Lock gate = new();
    private readonly Queue<GenerationHandle> waiting = new();
    private readonly SemaphoreSlim wake = new(0);
    private readonly Thread loop;
    private readonly List<GenerationHandle> rows = [];
    private readonly List<int> stepTokens = [];
    private float[] stepLogits = [];
    private DecodingState? state;
    private volatile bool accepting = true, stopping;
    private int active;
    private readonly TaskCompletionSource loopEnded = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private bool disposed;

    /// <summary>Starts the loop over <paramref name="model"/> (disposed with the generator when
    /// <paramref name="ownsModel"/>).</summary>
    public BatchedGenerator(ILanguageModel model, BatchedGeneratorOptions? options = null, bool ownsModel = false)
    {
        ArgumentNullException.ThrowIfNull(model);
        this.model = model;
        this.ownsModel = ownsModel;
        Options = options ?? new BatchedGeneratorOptions();
        loop = new Thread(Run) { IsBackground = true, Name = "RetNet generation loop" };
        loop.Start();
    }

    /// <summary>The limits it runs under.</summary>
    public BatchedGeneratorOptions Options { get; }

    /// <summary>The model generated with.</summary>
    public ILanguageModel Model => model;

    /// <summary>Requests not yet admitted to the batch (those waiting for a slot, and for a moment those the next
    /// iteration admits).</summary>
    public int QueuedRequests
    {
        get
        {
            lock (gate)
                return waiting.Count;
        }
    }

    /// <summary>Sequences in the running batch.</summary>
    public int ActiveSequences => Volatile.Read(ref active);

    /// <summary>Raised on the loop's thread after every decoding step (keep handlers short).</summary>
    public event Action<GenerationStep>? Stepped;

    /// <summary>
    /// Queues a request: <paramref name="prompt"/> continued under <paramref name="options"/> (its seed seeds this
    /// request alone; its <see cref="SamplingOptions.MaxTokens"/> is cut to what <see cref="BatchedGeneratorOptions.MaxContext"/>
    /// leaves after the prompt). Cancelling <paramref name="cancellationToken"/> ends the request at the next step
    /// (<see cref="FinishReason.Cancelled"/>) and frees its slot.
    /// </summary>
    /// <exception cref="ArgumentException">The prompt is empty, holds an id outside [0, V), or is not shorter than
    /// <see cref="BatchedGeneratorOptions.MaxContext"/>; or a stop token is ≥ V.</exception>
    /// <exception cref="GenerationQueueFullException"><see cref="BatchedGeneratorOptions.MaxQueue"/> requests are
    /// waiting already.</exception>
    /// <exception cref="ObjectDisposedException">The generator is shutting down.</exception>
    public GenerationHandle Submit(IReadOnlyList<int> prompt, SamplingOptions options,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(prompt);
        ArgumentNullException.ThrowIfNull(options);
        var vocabulary = model.VocabSize;
        if (prompt.Count == 0)
            throw new ArgumentException("Argument 'prompt' is empty; expected at least one token.", nameof(prompt));
        if (prompt.Count >= Options.MaxContext)
            throw new ArgumentException(
                $"Argument 'prompt' has {prompt.Count} tokens; at most {Options.MaxContext - 1} are allowed (the " +
                $"context is {Options.MaxContext} positions, and one must be left to generate).", nameof(prompt));
        for (var t = 0; t < prompt.Count; t++)
            if ((uint)prompt[t] >= (uint)vocabulary)
                throw new ArgumentException(
                    $"Argument 'prompt' has token id {prompt[t]} at position {t}; expected an id in [0, {vocabulary}).",
                    nameof(prompt));
        foreach (var stop in options.StopTokens)
            if (stop >= vocabulary)
                throw new ArgumentException($"Stop token {stop} is outside the vocabulary [0, {vocabulary}).",
                    nameof(options));
        var handle = new GenerationHandle(prompt.ToArray(), options,
            Math.Min(options.MaxTokens, Options.MaxContext - prompt.Count), cancellationToken);
        handle.Registration = cancellationToken.Register(Wake);
        lock (gate)
        {
            // Requests the next iteration admits into free slots are not waiting for one: only the rest count.
            var free = Math.Max(0, Options.MaxBatch - ActiveSequences);
            if (!accepting || waiting.Count >= Options.MaxQueue + free)
            {
                handle.Registration.Dispose();
                ObjectDisposedException.ThrowIf(!accepting, this);
                throw new GenerationQueueFullException(Options.MaxQueue);
            }
            waiting.Enqueue(handle);
        }
        Wake();
        return handle;
    }

    /// <summary>Stops accepting requests, lets the active and queued ones finish until
    /// <paramref name="cancellationToken"/> is cancelled, then cancels what is left, and waits for the loop to end.</summary>
    public async Task StopAsync(CancellationToken cancellationToken = default)
    {
        accepting = false;
        Wake();
        using (cancellationToken.Register(() =>
               {
                   stopping = true;
                   Wake();
               }))
            await loopEnded.Task.ConfigureAwait(false);
    }

    private void Wake()
    {
        try
        {
            wake.Release();
        }
        catch (ObjectDisposedException)
        {
            // A cancellation after the generator was disposed has nothing left to wake.
        }
    }

    private void Run()
    {
        while (!stopping)
        {
            try
            {
                DropFinished();
                Admit();
                DropFinished();
                if (rows.Count == 0)
                {
                    if (!accepting && QueuedRequests == 0)
                        break;
                    wake.Wait(100);
                    continue;
                }
                StepAll();
            }
            catch (Exception e)
            {
                // The model failed for the whole batch (non-finite logits, a device error): every active request
                // fails with it and the loop goes on with an empty batch.
                foreach (var row in rows)
                    row.Fail(e);
                rows.Clear();
                Volatile.Write(ref active, 0);
                state?.Dispose();
                state = null;
            }
        }
        foreach (var row in rows)
            row.Complete(FinishReason.Cancelled);
        rows.Clear();
        Volatile.Write(ref active, 0);
        lock (gate)
            while (waiting.TryDequeue(out var queued))
                queued.Complete(FinishReason.Cancelled);
        state?.Dispose();
        state = null;
        loopEnded.TrySetResult();
    }

    private void Admit()
    {
        while (rows.Count < Options.MaxBatch)
        {
            GenerationHandle request;
            lock (gate)
                if (!waiting.TryDequeue(out request!))
                    break;
            if (request.CancellationToken.IsCancellationRequested)
            {
                request.Complete(FinishReason.Cancelled);
                continue;
            }
            PrefillResult prefill;
            try
            {
                prefill = model.Prefill([request.Prompt], Options.ChunkSize);
            }
            catch (Exception e)
            {
                request.Fail(e);
                continue;
            }
            var token = request.Sampling.Next(prefill.Logits[0]);
            if (request.Sampling.Finished is not null)
            {
                Deliver(request, token);
                prefill.State.Dispose();
                continue;
            }
            try
            {
                Join(prefill.State);
            }
            catch
            {
                request.Complete(FinishReason.Cancelled);
                throw;
            }
            // The first token goes out once the request counts as active, so a reader that has it also sees the
            // request among ActiveSequences; and right after its own prefill, not after those of the requests that
            // arrived with it.
            rows.Add(request);
            Volatile.Write(ref active, rows.Count);
            Deliver(request, token);
        }
    }

    /// <summary>
    /// Copies a prefilled sequence into a free slot of the running state, which keeps its slots (its storage grows,
    /// doubling, only until it has held MaxBatch sequences at once), and disposes it; the first one becomes the
    /// running state.
    /// </summary>
    private void Join(DecodingState part)
    {
        if (state is null)
        {
            state = part;
            return;
        }
        try
        {
            var needed = state.Batch + 1;
            if (needed > state.SequenceCapacity)
                state.ReserveSequences(Math.Min(Options.MaxBatch, Math.Max(needed, 2 * state.SequenceCapacity)));
            state.Append(part);
        }
        finally
        {
            part.Dispose();
        }
    }

    /// <summary>Samples the request's next token from its logits and emits it; false when the request has finished.</summary>
    private static bool Sample(GenerationHandle request, ReadOnlySpan<float> logits) =>
        Deliver(request, request.Sampling.Next(logits));

    /// <summary>Emits the request's sampled token (none after a stop token) and completes it when it has finished;
    /// false when it has.</summary>
    private static bool Deliver(GenerationHandle request, int? token)
    {
        if (token is { } next)
            request.Emit(next);
        if (request.Sampling.Finished is { } reason)
        {
            request.Complete(reason);
            return false;
        }
        return true;
    }

    private void StepAll()
    {
        var started = Stopwatch.GetTimestamp();
        // The step's inputs and logits live in buffers the loop keeps: nothing is allocated per step.
        stepTokens.Clear();
        foreach (var row in rows)
            stepTokens.Add(row.LastToken);
        var vocab = model.VocabSize;
        if (stepLogits.Length < rows.Count * vocab)
            stepLogits = new float[Options.MaxBatch * vocab];
        model.Step(stepTokens, state!, stepLogits.AsSpan(0, rows.Count * vocab));
        for (var r = 0; r < rows.Count; r++)
            Sample(rows[r], stepLogits.AsSpan(r * vocab, vocab));
        Stepped?.Invoke(new GenerationStep(rows.Count, Stopwatch.GetElapsedTime(started)));
    }

    /// <summary>Cancels the rows whose callers cancelled, and removes every finished row from the batch.</summary>
    private void DropFinished()
    {
        lock (gate)
            if (waiting.Any(w => w.CancellationToken.IsCancellationRequested))
            {
                var queued = waiting.ToList();
                waiting.Clear();
                foreach (var request in queued)
                    if (request.CancellationToken.IsCancellationRequested)
                        request.Complete(FinishReason.Cancelled);
                    else
                        waiting.Enqueue(request);
            }
        foreach (var row in rows)
            if (row.Sampling.Finished is null && row.CancellationToken.IsCancellationRequested)
                row.Complete(FinishReason.Cancelled);
        var keep = Enumerable.Range(0, rows.Count).Where(r => rows[r].Sampling.Finished is null).ToArray();
        if (keep.Length == rows.Count)
            return;
        // In place: the finished rows' slots stay allocated for the next requests.
        state!.Keep(keep);
        var remaining = keep.Select(r => rows[r]).ToList();
        rows.Clear();
        rows.AddRange(remaining);
        Volatile.Write(ref active, rows.Count);
    }

    /// <summary>Cancels everything in flight, ends the loop and frees the state (and the model when owned).</summary>
    public void Dispose()
    {
        if (disposed)
            return;
        disposed = true;
        accepting = false;
        stopping = true;
        Wake();
        loop.Join();
        wake.Dispose();
        if (ownsModel)
            model.Dispose();
    }

    /// <inheritdoc cref="Dispose"/>
    public ValueTask DisposeAsync()
    {
        Dispose();
        return ValueTask.CompletedTask;
    }
}
