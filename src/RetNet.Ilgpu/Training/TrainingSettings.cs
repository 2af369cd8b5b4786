using System.Text.Json;
using System.Text.Json.Serialization;
using RetNet.Ilgpu.Model;
using RetNet.Ilgpu.Tensors;
using RetNet.Ilgpu.Tokenizers;

namespace RetNet.Ilgpu.Training;

/// <summary>What training does when a step's loss or gradient norm is not finite.</summary>
public enum NonFiniteStepPolicy
{
    /// <summary>Stop with an error naming the step (the weights of the last checkpoint are untouched).</summary>
    Stop,

    /// <summary>Leave the weights and the optimiser as they are, count the step as skipped
    /// (<see cref="TrainingStep.Skipped"/>) and go on with the next windows.</summary>
    Skip,
}

/// <summary>
/// Everything that decides a training run, typed, saved with its checkpoints (as JSON with the command line's names)
/// so that a resumed run continues exactly. Defaults follow the RetNet paper's optimiser (AdamW β = (0.9, 0.98), eps
/// 1e-8, weight decay 0.01); the command line parses its options into one of these once.
/// </summary>
public sealed record TrainingSettings
{
    /// <summary>The schedule's length in optimiser steps; training ends there.</summary>
    [JsonPropertyName("steps")] public int Steps { get; init; }

    /// <summary>Windows per micro-batch, B.</summary>
    [JsonPropertyName("batch")] public int Batch { get; init; } = 8;

    /// <summary>Tokens per window whose next token is predicted, T (a window holds T + 1 tokens).</summary>
    [JsonPropertyName("seq_len")] public int SeqLen { get; init; } = 128;

    /// <summary>Micro-batches whose gradients are averaged into one optimiser step.</summary>
    [JsonPropertyName("grad_accum")] public int GradAccum { get; init; } = 1;

    /// <summary>The peak learning rate.</summary>
    [JsonPropertyName("lr")] public double LearningRate { get; init; } = 3e-4;

    /// <summary>Linear warm-up steps.</summary>
    [JsonPropertyName("warmup")] public int Warmup { get; init; }

    /// <summary>The decay after the warm-up.</summary>
    [JsonPropertyName("schedule")]
    [JsonConverter(typeof(LowerCaseEnumConverter<ScheduleKind>))]
    public ScheduleKind Schedule { get; init; } = ScheduleKind.Cosine;

    /// <summary>The final learning rate as a fraction of the peak.</summary>
    [JsonPropertyName("min_lr_ratio")] public double MinLrRatio { get; init; } = 0.1;

    /// <summary>Decoupled weight decay (matrices only; norm weights and the embedding are not decayed).</summary>
    [JsonPropertyName("weight_decay")] public double WeightDecay { get; init; } = 0.01;

    /// <summary>AdamW's β1.</summary>
    [JsonPropertyName("beta1")] public double Beta1 { get; init; } = 0.9;

    /// <summary>AdamW's β2.</summary>
    [JsonPropertyName("beta2")] public double Beta2 { get; init; } = 0.98;

    /// <summary>AdamW's eps.</summary>
    [JsonPropertyName("eps")] public double Eps { get; init; } = 1e-8;

    /// <summary>The global gradient norm is clipped to this; 0 turns clipping off.</summary>
    [JsonPropertyName("clip")] public double Clip { get; init; } = 1.0;

    /// <summary>Retention's form in training: chunkwise or parallel (both have a backward pass; attention has one
    /// form and ignores it).</summary>
    [JsonPropertyName("form")]
    [JsonConverter(typeof(LowerCaseEnumConverter<RetentionForm>))]
    public RetentionForm Form { get; init; } = RetentionForm.Chunkwise;

    /// <summary>Chunk size of the chunkwise form.</summary>
    [JsonPropertyName("chunk_size")] public int ChunkSize { get; init; } = ForwardMode.DefaultChunkSize;

    /// <summary>Keep only each block's input and recompute its activations in the backward pass (less memory, about
    /// one more forward pass of time; the same gradients).</summary>
    [JsonPropertyName("checkpoint_activations")] public bool CheckpointActivations { get; init; }

    /// <summary>Train and evaluate on packed documents: each end-of-text token in a window starts a document that
    /// nothing before it reaches (<see cref="Data.DocumentPacking"/>).</summary>
    [JsonPropertyName("pack_documents")] public bool PackDocuments { get; init; }

    /// <summary>Evaluate on the validation data every this many steps (0: only at the end, when there is any).</summary>
    [JsonPropertyName("eval_every")] public int EvalEvery { get; init; }

    /// <summary>Save a checkpoint every this many steps (0: only when stopping and at the end).</summary>
    [JsonPropertyName("save_every")] public int SaveEvery { get; init; }

    /// <summary>The seed of the window sampler.</summary>
    [JsonPropertyName("seed")] public ulong Seed { get; init; }

    /// <summary>Training data files (text or llm.c .bin), read in order; none when the data was handed over in
    /// memory.</summary>
    [JsonPropertyName("data")] public IReadOnlyList<string> Data { get; init; } = [];

    /// <summary>Validation data files, or none.</summary>
    [JsonPropertyName("val_data")] public IReadOnlyList<string> ValidationData { get; init; } = [];

    /// <summary>The tokenizer of text data: auto picks the built-in one with the model's vocabulary size.</summary>
    [JsonPropertyName("tokenizer")]
    [JsonConverter(typeof(LowerCaseEnumConverter<TokenizerKind>))]
    public TokenizerKind Tokenizer { get; init; } = TokenizerKind.Auto;

    /// <summary>The type the forward and backward passes read the weight matrices in: fp32, or bf16/fp16 copies of the
    /// fp32 master weights (mixed precision; the optimiser, gradients and activations stay fp32).</summary>
    [JsonPropertyName("dtype")]
    [JsonConverter(typeof(TensorDTypeJsonConverter))]
    public TensorDType ComputeType { get; init; } = TensorDType.Float32;

    /// <summary>What a step whose loss or gradient norm is not finite does.</summary>
    [JsonPropertyName("on_non_finite")]
    [JsonConverter(typeof(LowerCaseEnumConverter<NonFiniteStepPolicy>))]
    public NonFiniteStepPolicy OnNonFinite { get; init; } = NonFiniteStepPolicy.Stop;

    /// <summary>Retention's form and chunk size as a <see cref="ForwardMode"/>.</summary>
    [JsonIgnore]
    public ForwardMode Mode => ForwardMode.Of(Form, ChunkSize);

    /// <summary>What the forward pass keeps for the backward pass.</summary>
    [JsonIgnore]
    public ActivationPlan Keep => CheckpointActivations ? ActivationPlan.KeepBlockInputs : ActivationPlan.KeepEverything;

    /// <summary>The learning-rate schedule these settings describe.</summary>
    [JsonIgnore]
    public LearningRateSchedule LearningRates => new(LearningRate, Warmup, Steps, Schedule, MinLrRatio);

    /// <summary>AdamW's hyperparameters.</summary>
    [JsonIgnore]
    public AdamWOptions Optimizer => new(Beta1, Beta2, Eps, WeightDecay);

    /// <summary>Checks every field; the message lists all problems, each by its property and command-line names.</summary>
    /// <exception cref="ArgumentException">A field is out of range.</exception>
    public void Validate()
    {
        var problems = new List<string>();
        void Positive(string name, int value)
        {
            if (value < 1)
                problems.Add($"{name} is {value}; expected ≥ 1");
        }
        Positive("Steps (--steps)", Steps);
        Positive("Batch (--batch)", Batch);
        Positive("SeqLen (--seq-len)", SeqLen);
        Positive("GradAccum (--grad-accum)", GradAccum);
        Positive("ChunkSize (--chunk-size)", ChunkSize);
        if (!(LearningRate > 0) || !double.IsFinite(LearningRate))
            problems.Add($"LearningRate (--lr) is {LearningRate}; expected a finite value > 0");
        if (Warmup < 0 || Warmup > Steps)
            problems.Add($"Warmup (--warmup) is {Warmup}; expected 0 … Steps ({Steps})");
        if (!Enum.IsDefined(Schedule))
            problems.Add($"Schedule (--schedule) is {Schedule}; expected cosine, linear, polynomial or constant");
        if (!(MinLrRatio >= 0 && MinLrRatio <= 1))
            problems.Add($"MinLrRatio (--min-lr-ratio) is {MinLrRatio}; expected 0 … 1");
        if (!(WeightDecay >= 0) || !double.IsFinite(WeightDecay))
            problems.Add($"WeightDecay (--weight-decay) is {WeightDecay}; expected finite and ≥ 0");
        if (!(Beta1 >= 0 && Beta1 < 1) || !(Beta2 >= 0 && Beta2 < 1))
            problems.Add($"Beta1, Beta2 (--betas) are {Beta1},{Beta2}; expected each in [0, 1)");
        if (!(Eps > 0) || !double.IsFinite(Eps))
            problems.Add($"Eps (--eps) is {Eps}; expected a finite value > 0");
        if (!(Clip >= 0) || !double.IsFinite(Clip))
            problems.Add($"Clip (--clip) is {Clip}; expected finite and ≥ 0 (0: no clipping)");
        if (Form is not (RetentionForm.Chunkwise or RetentionForm.Parallel))
            problems.Add($"Form (--form) is {Form.ToString().ToLowerInvariant()}; expected chunkwise or parallel");
        if (EvalEvery < 0 || SaveEvery < 0)
            problems.Add($"EvalEvery (--eval-every) {EvalEvery} and SaveEvery (--save-every) {SaveEvery}; expected ≥ 0");
        if (!Enum.IsDefined(ComputeType))
            problems.Add($"ComputeType (--dtype) is {ComputeType}; expected {string.Join(", ", TensorDTypes.Names)}");
        if (!Enum.IsDefined(Tokenizer))
            problems.Add($"Tokenizer (--tokenizer) is {Tokenizer}; expected auto, byte or gpt2");
        if (!Enum.IsDefined(OnNonFinite))
            problems.Add($"OnNonFinite (--on-non-finite) is {OnNonFinite}; expected stop or skip");
        if (problems.Count > 0)
            throw new ArgumentException($"Invalid training settings: {string.Join("; ", problems)}.", "settings");
    }

    /// <summary>The settings as the JSON a checkpoint stores.</summary>
    public string ToJson() => JsonSerializer.Serialize(this);

    /// <summary>Settings from a checkpoint's JSON.</summary>
    /// <exception cref="InvalidDataException">The JSON is malformed or a field has an unknown value.</exception>
    public static TrainingSettings FromJson(string json)
    {
        ArgumentNullException.ThrowIfNull(json);
        try
        {
            return JsonSerializer.Deserialize<TrainingSettings>(json)
                   ?? throw new InvalidDataException("The training settings are null.");
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"The training settings are malformed: {e.Message}", e);
        }
    }
}

/// <summary>An enum as lower-case JSON text ("cosine", "chunkwise"), read case-insensitively; numbers are refused.</summary>
internal sealed class LowerCaseEnumConverter<T>() : JsonStringEnumConverter<T>(JsonNamingPolicy.CamelCase, false)
    where T : struct, Enum;

/// <summary>A <see cref="TensorDType"/> as its short name in JSON ("fp32", "bf16", "fp16").</summary>
internal sealed class TensorDTypeJsonConverter : JsonConverter<TensorDType>
{
    public override TensorDType Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options)
    {
        try
        {
            return TensorDTypes.Parse(reader.GetString() ?? "");
        }
        catch (Exception e) when (e is ArgumentException or InvalidOperationException)
        {
            throw new JsonException(e.Message, e);
        }
    }

    public override void Write(Utf8JsonWriter writer, TensorDType value, JsonSerializerOptions options) =>
        writer.WriteStringValue(TensorDTypes.Name(value));
}
