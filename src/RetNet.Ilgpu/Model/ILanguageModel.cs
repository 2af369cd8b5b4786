using RetNet.Ilgpu.Devices;
using RetNet.Ilgpu.IO;
using RetNet.Ilgpu.Tensors;

namespace RetNet.Ilgpu.Model;

/// <summary>Logits of the last token of each prompt and the state that continues every sequence.</summary>
/// <param name="Logits">One row of V logits per sequence.</param>
/// <param name="State">The decoding state after the prompts; the caller disposes it.</param>
public sealed record PrefillResult(float[][] Logits, DecodingState State);

/// <summary>
/// A language model, whichever its token mixer: what training, evaluation, generation and the command line use, so
/// that none of them asks which architecture it holds. <see cref="LanguageModel"/> implements it for every
/// architecture the library has (<see cref="ModelConfig"/>).
/// </summary>
/// <remarks>
/// Token batches come in two shapes: rectangular <c>int[B, T]</c> (every sequence the same length, each from position
/// 0: <see cref="Forward"/>, <see cref="Loss"/>, <see cref="ForwardBackward"/>), and ragged lists of sequences
/// (<see cref="Prefill"/>, <see cref="Extend"/>), of which <c>int[][]</c> is one. Logits of the last tokens come back
/// as one array of V per sequence; <see cref="Forward"/> leaves all of them on the device.
/// </remarks>
public interface ILanguageModel : IDisposable
{
    /// <summary>"retnet" or "transformer".</summary>
    string Architecture { get; }

    /// <summary>The model's shape.</summary>
    ModelConfig Config { get; }

    /// <summary>The device the weights live on.</summary>
    RetNetDevice Device { get; }

    /// <summary>V: token ids are in [0, V).</summary>
    int VocabSize { get; }

    /// <summary>The number of weights (a tied output projection counted once).</summary>
    long ParameterCount { get; }

    /// <summary>Bytes of the weights on the device, in their storage types.</summary>
    long WeightBytes { get; }

    /// <summary>How the weight matrices are stored on the device (norm weights are always fp32).</summary>
    TensorDType WeightType { get; }

    /// <summary>The type the passes read the weight matrices in: <see cref="WeightType"/>, or that of mixed precision's
    /// compute copies (<see cref="UseComputeType"/>).</summary>
    TensorDType ComputeType { get; }

    /// <summary>What loading adapted, in sentences for the user (empty when nothing was).</summary>
    IReadOnlyList<string> Notices { get; }

    /// <summary>The weights on the device by name, in checkpoint order (what an optimiser updates in place).</summary>
    IReadOnlyDictionary<string, Tensor> Parameters { get; }

    /// <summary>The weights by name, copied to the host.</summary>
    IReadOnlyDictionary<string, HostTensor> ExportWeights();

    /// <summary>
    /// Writes the model folder: model.safetensors (each weight in its storage type, the config embedded in its
    /// metadata; for RetNet what torchscale's state_dict holds, so its strict load accepts it) and config.json, each
    /// atomically; a kill between the two still leaves a folder that loads as one version (<see cref="ModelFolder"/>).
    /// </summary>
    void Save(string folder);

    /// <summary>
    /// Logits [B, T, V] of every position of <paramref name="tokens"/> [B, T], each sequence starting at position 0.
    /// <paramref name="mode"/> is retention's form (default parallel; all three give the same logits up to fp32
    /// rounding); attention has one form and ignores it. The caller disposes the result.
    /// </summary>
    /// <exception cref="ArgumentException">B or T is 0, an id is outside [0, V), or the chunk size is &lt; 1.</exception>
    /// <exception cref="NonFiniteValuesException">A logit is not finite (the message names the first block where
    /// non-finite values appear).</exception>
    Tensor Forward(int[,] tokens, ForwardMode? mode = null);

    /// <summary>
    /// Runs each prompt (lengths may differ; each ≥ 1 token) into a fresh decoding state and returns the logits of
    /// its last token with the state. Sequences are processed one after another, each writing its own part of the
    /// batch state: a batch of prompts gives exactly what each prompt gives alone.
    /// </summary>
    /// <exception cref="ArgumentException">No prompt, an empty prompt, an id outside [0, V), or a chunk size &lt; 1.</exception>
    /// <exception cref="NonFiniteValuesException">A logit is not finite.</exception>
    PrefillResult Prefill(IReadOnlyList<IReadOnlyList<int>> prompts, int chunkSize = ForwardMode.DefaultChunkSize);

    /// <summary>
    /// Frees the workspace that <see cref="Prefill"/> and <c>Extend</c> keep between calls for prompts of up to
    /// 1,024 tokens (so that a server's prefills allocate no device memory): for a program done prefilling, or one
    /// measuring what decoding alone holds. The next prefill allocates it again.
    /// </summary>
    void ReleasePromptWorkspace();

    /// <summary>
    /// Continues every sequence of <paramref name="state"/> with its own further tokens (lengths may differ; each
    /// ≥ 1) at its absolute positions; returns each sequence's last-token logits. A prefill split into parts gives the
    /// same state as one prefill of the whole. Retention runs chunkwise from the state; a KV cache continues token by
    /// token.
    /// </summary>
    /// <exception cref="ArgumentException">The count differs from the state's batch, a sequence is empty, an id is out
    /// of range, the state belongs to another model, or the chunk size is &lt; 1.</exception>
    /// <exception cref="NonFiniteValuesException">A logit is not finite.</exception>
    float[][] Extend(DecodingState state, IReadOnlyList<IReadOnlyList<int>> tokens,
        int chunkSize = ForwardMode.DefaultChunkSize);

    /// <summary>
    /// One decoding step: feeds <paramref name="tokens"/>[b] to sequence b at its position, advances the state in
    /// place and returns the next-token logits [B][V]. For retention O(1) in the position; a KV cache attends over
    /// every position it holds (and grows when full).
    /// </summary>
    /// <exception cref="ArgumentException">The token count differs from the state's batch, an id is out of range, or
    /// the state belongs to another model.</exception>
    /// <exception cref="NonFiniteValuesException">A logit is not finite.</exception>
    float[][] Step(IReadOnlyList<int> tokens, DecodingState state);

    /// <summary>
    /// <see cref="Step(IReadOnlyList{int}, DecodingState)"/> into a buffer the caller keeps: the next-token logits of
    /// sequence b go to <paramref name="logits"/>[b·V, (b + 1)·V). The same bits, without allocating per step (a
    /// serving loop steps thousands of times a second).
    /// </summary>
    /// <exception cref="ArgumentException">As the other overload, or <paramref name="logits"/> does not hold exactly
    /// B·V elements.</exception>
    /// <exception cref="NonFiniteValuesException">A logit is not finite.</exception>
    void Step(IReadOnlyList<int> tokens, DecodingState state, Span<float> logits);

    /// <summary>An empty decoding state for <paramref name="batch"/> sequences (all at position 0), with room for
    /// <paramref name="capacity"/> positions where the state grows (a KV cache; 0: a small default).</summary>
    /// <exception cref="ArgumentOutOfRangeException">The batch is below 1 or the capacity negative.</exception>
    DecodingState CreateState(int batch, int capacity = 0);

    /// <summary>Zero gradients, one per parameter, for <see cref="ForwardBackward"/>. The caller disposes them.</summary>
    ModelGradients CreateGradients();

    /// <summary>
    /// One training pass: the mean next-token cross-entropy of <paramref name="windows"/> [B, T + 1] (tokens 1 … T
    /// predicted from tokens 0 … T − 1, every sequence from position 0), and its gradient times
    /// <paramref name="gradientScale"/> ADDED to <paramref name="gradients"/> (zero them first; accumulate
    /// micro-batches by calling again). <paramref name="mode"/> is retention's form (default chunkwise; parallel also
    /// has a backward); <paramref name="keep"/> what the forward pass keeps for the backward pass: everything, or only
    /// each block's input (recomputing the rest; less memory, about one more forward pass of time, bit-identical
    /// gradients).
    /// With <paramref name="cuSeqlens"/> the windows hold packed documents (<see cref="Retention.PackedSequences"/>:
    /// offsets into the B·T input tokens): nothing attends or decays across a document start, and positions restart
    /// at 0 with each document, so each document's tokens get the loss and gradients they would get alone.
    /// </summary>
    /// <returns>The mean loss in nats per predicted token (unscaled).</returns>
    /// <exception cref="ArgumentException">Fewer than 2 tokens per window, an id outside [0, V), a recurrent mode,
    /// <see cref="ActivationPlan.KeepNothing"/>, gradients of another model, a chunk size &lt; 1, or offsets that are
    /// not valid for [B, T] (or given to a model whose mixer cannot pack documents).</exception>
    float ForwardBackward(int[,] windows, ModelGradients gradients, ForwardMode? mode = null, float gradientScale = 1f,
        ActivationPlan keep = ActivationPlan.KeepEverything, IReadOnlyList<int>? cuSeqlens = null);

    /// <summary>The mean next-token cross-entropy of <paramref name="windows"/> [B, T + 1] in nats per predicted token,
    /// without a backward pass or gradients (evaluation of your own batch); packed documents as in
    /// <see cref="ForwardBackward"/> when <paramref name="cuSeqlens"/> is given.</summary>
    /// <exception cref="ArgumentException">Fewer than 2 tokens per window, an id outside [0, V), or offsets that are
    /// not valid for [B, T] (or given to a model whose mixer cannot pack documents).</exception>
    /// <exception cref="NonFiniteValuesException">The loss is not finite.</exception>
    float Loss(int[,] windows, ForwardMode? mode = null, IReadOnlyList<int>? cuSeqlens = null);

    /// <summary>Where a forward pass over <paramref name="tokens"/> first produces a non-finite value ("the token
    /// embedding", "block 3 (layers.3: retention and FFN)", "the output projection (logits)"), or null when every
    /// value is finite. A diagnostic: one pass with a check after every block.</summary>
    string? LocateNonFinite(int[,] tokens, ForwardMode? mode = null);

    /// <summary>
    /// Mixed precision: from now on the passes read bf16 or fp16 copies of the fp32 weight matrices
    /// (<paramref name="type"/>), or the matrices themselves again for <see cref="TensorDType.Float32"/>. Gradients,
    /// activations and the optimiser stay fp32; call <see cref="RefreshComputeWeights"/> after every update of the
    /// parameters.
    /// </summary>
    /// <exception cref="ArgumentException">The model's own weights are not fp32.</exception>
    void UseComputeType(TensorDType type);

    /// <summary>Rounds the updated fp32 parameters into the compute copies (nothing without them).</summary>
    void RefreshComputeWeights();
}

/// <summary>Non-finite values (NaN, ±∞) where a model's arithmetic must produce finite ones: refused rather than
/// passed on.</summary>
/// <param name="message">What was not finite, and where it first appeared when that is known.</param>
/// <param name="stage">The first stage of the model that produced a non-finite value (see
/// <see cref="ILanguageModel.LocateNonFinite"/>), or null when not known.</param>
/// <param name="sequence">The sequence of the batch whose values were not finite, when one is known.</param>
public sealed class NonFiniteValuesException(string message, string? stage, int? sequence) : ArithmeticException(message)
{
    /// <summary>The first stage of the model that produced a non-finite value, when known.</summary>
    public string? Stage { get; } = stage;

    /// <summary>The sequence whose values were not finite, when known.</summary>
    public int? Sequence { get; } = sequence;
}
