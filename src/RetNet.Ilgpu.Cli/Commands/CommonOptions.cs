using System.CommandLine;
using System.CommandLine.Parsing;
using RetNet.Ilgpu.Devices;
using RetNet.Ilgpu.Generation;
using RetNet.Ilgpu.Model;
using RetNet.Ilgpu.Tensors;
using RetNet.Ilgpu.Tokenizers;

namespace RetNet.Ilgpu.Cli.Commands;

/// <summary>Options shared by several commands, and the one way commands report failures.</summary>
internal static class CommonOptions
{
    /// <summary>--device auto|cuda|opencl|cpu (auto honours RETNET_DEVICE).</summary>
    public static Option<DeviceKind> Device() => new("--device")
    {
        Description = "Accelerator: auto (RETNET_DEVICE, else CUDA, an OpenCL GPU, the CPU), cuda, opencl or cpu.",
        DefaultValueFactory = _ => DeviceKind.Auto,
        HelpName = "auto|cuda|opencl|cpu",
        CustomParser = ParseDevice,
    };

    /// <summary>The architecture name of RetNet.</summary>
    public const string RetNetArch = "retnet";

    /// <summary>The architecture name of the baseline Transformer.</summary>
    public const string TransformerArch = "transformer";

    /// <summary>--arch retnet|transformer.</summary>
    public static Option<string> Architecture()
    {
        var option = new Option<string>("--arch")
        {
            Description = "The model: retnet, or transformer (the baseline: causal softmax attention with a KV cache).",
            DefaultValueFactory = _ => RetNetArch,
        };
        option.AcceptOnlyFromAmong(RetNetArch, TransformerArch);
        return option;
    }

    /// <summary>--dtype fp32|bf16|fp16: how the weight matrices are stored on the device (default: as stored in the
    /// checkpoint).</summary>
    public static Option<TensorDType?> WeightType() => new("--dtype")
    {
        Description = "Store the weight matrices on the device as fp32, bf16 or fp16 (arithmetic and states stay fp32); " +
                      "default: the checkpoint's own type.",
        HelpName = "fp32|bf16|fp16",
        CustomParser = ParseWeightType,
    };

    /// <summary>Loads a model folder of either architecture, its matrices stored as <paramref name="weightType"/> (null:
    /// as the checkpoint stores them), printing on stderr what loading adapted (e.g. decays taken from the checkpoint's
    /// buffer, or the config saved with the weights used instead of config.json). For inference the weights file is
    /// memory-mapped (<paramref name="mapWeights"/>: on the CPU the operators read it in place); gradients copy.</summary>
    public static ILanguageModel LoadAnyModel(RetNetDevice device, DirectoryInfo folder, TensorDType? weightType = null,
        bool mapWeights = true)
    {
        var model = LanguageModel.Load(device, folder.FullName, weightType: weightType, mapWeights: mapWeights);
        foreach (var notice in model.Notices)
            Console.Error.WriteLine($"note: {notice}");
        return model;
    }

    /// <summary>The generator's view of the model in <paramref name="folder"/>, whichever architecture it holds;
    /// disposing it frees the model too.</summary>
    public static ModelTokenDecoder LoadDecoder(RetNetDevice device, DirectoryInfo folder, TensorDType? weightType = null) =>
        new(LoadAnyModel(device, folder, weightType), ownsModel: true);

    /// <summary>--tokenizer auto|byte|gpt2|sentencepiece, parsed once into a <see cref="TokenizerKind"/>.</summary>
    public static Option<TokenizerKind> Tokenizer(string description) =>
        Choice("--tokenizer", description, TokenizerKind.Auto, TextTokenizers.ParseKind, "auto|byte|gpt2|sentencepiece");

    /// <summary>--form chunkwise|parallel, the retention form of a training pass, parsed once.</summary>
    public static Option<RetentionForm> TrainingForm(string description) =>
        Choice("--form", description, RetentionForm.Chunkwise, text => ForwardMode.Parse(text) is
        {
            Form: RetentionForm.Chunkwise or RetentionForm.Parallel,
        } mode
            ? mode.Form
            : throw new ArgumentException($"'{text}' is not a training form.", nameof(description)),
            "chunkwise|parallel");

    /// <summary>--mode parallel|chunkwise|recurrent, the retention form of an inference pass, parsed once.</summary>
    public static Option<RetentionForm> InferenceForm(string description) =>
        Choice("--mode", description, RetentionForm.Parallel, text => ForwardMode.Parse(text).Form,
            "parallel|chunkwise|recurrent");

    /// <summary>An option whose text is parsed once, where the command line is read, by <paramref name="parse"/>;
    /// a text it refuses is a parse error naming the option and its choices (<paramref name="helpName"/>).</summary>
    public static Option<T> Choice<T>(string name, string description, T defaultValue, Func<string, T> parse,
        string helpName) => new(name)
    {
        Description = description,
        HelpName = helpName,
        DefaultValueFactory = _ => defaultValue,
        CustomParser = result =>
        {
            if (result.Tokens.Count == 0)
                return defaultValue;
            try
            {
                return parse(result.Tokens[0].Value);
            }
            catch (ArgumentException)
            {
                result.AddError($"{name}: '{result.Tokens[0].Value}' is not one of {helpName}.");
                return defaultValue;
            }
        },
    };

    /// <summary>--json FILE: also write the results as JSON.</summary>
    public static Option<FileInfo?> Json() => new("--json")
    {
        Description = "Also write the results to this JSON file (written to a temporary name, then renamed).",
    };

    private static TensorDType? ParseWeightType(ArgumentResult result)
    {
        if (result.Tokens.Count == 0)
            return null;
        try
        {
            return TensorDTypes.Parse(result.Tokens[0].Value);
        }
        catch (ArgumentException)
        {
            result.AddError($"--dtype: '{result.Tokens[0].Value}' is not one of {string.Join(", ", TensorDTypes.Names)}.");
            return null;
        }
    }

    private static DeviceKind ParseDevice(ArgumentResult result)
    {
        var text = result.Tokens.Count == 0 ? "auto" : result.Tokens[0].Value;
        try
        {
            return DeviceKinds.Parse(text, "--device");
        }
        catch (ArgumentException e)
        {
            result.AddError(e.Message.Split(" (Parameter")[0]);
            return DeviceKind.Auto;
        }
    }

    /// <summary>
    /// Runs a command body, turning library exceptions into one clear line on stderr and exit code 1 (argument
    /// errors are the user's to fix, so no stack trace; non-finite values the model produced are refused the same
    /// way, with the block where they first appeared).
    /// </summary>
    public static int Run(Func<int> body)
    {
        try
        {
            return body();
        }
        catch (Exception e) when (IsUserError(e))
        {
            Console.Error.WriteLine($"error: {UserMessage(e)}");
            return 1;
        }
    }

    /// <summary>A failure the user can act on (bad arguments, files, devices, numbers), reported as one line rather
    /// than a stack trace.</summary>
    // InvalidDataException (a malformed data or state file) is no IOException: it derives from SystemException.
    public static bool IsUserError(Exception e) => e is ArgumentException or InvalidOperationException or IOException
        or InvalidDataException or UnauthorizedAccessException or NotSupportedException or ArithmeticException;

    /// <summary>The message of a user error, without the " (Parameter 'x')" ArgumentException appends: the message
    /// already names the argument.</summary>
    public static string UserMessage(Exception e) => e is ArgumentException { ParamName: not null } argument
        ? argument.Message.Split('\n')[0].Replace($" (Parameter '{argument.ParamName}')", "", StringComparison.Ordinal)
        : e.Message;

    /// <summary>Opens the requested device and says which one was opened.</summary>
    public static RetNetDevice OpenDevice(DeviceKind kind, int localRank = 0)
    {
        var device = RetNetDevice.Open(kind, localRank: localRank);
        var execution = device.IsCpuSimulator ? $", {device.CpuExecution.ToString().ToLowerInvariant()} execution" : "";
        Console.WriteLine($"device: {device.Description.Name} ({device.Kind}, {Format.Bytes(device.Description.MemoryBytes)}, " +
                          $"max group {device.MaxGroupSize}{execution})");
        return device;
    }
}
