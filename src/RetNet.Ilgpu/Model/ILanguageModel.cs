using RetNet.Ilgpu.Devices;
using RetNet.Ilgpu.IO;
using RetNet.Ilgpu.Tensors;

namespace RetNet.Ilgpu.Model;

/// <summary>
/// What training, evaluation and the command line need from a language model, whichever its architecture: RetNet
/// (<see cref="RetNetModel"/>) or the baseline Transformer (<see cref="Transformer.TransformerModel"/>).
/// </summary>
public interface ILanguageModel : IDisposable
{
    /// <summary>"retnet" or "transformer".</summary>
    string Architecture { get; }

    /// <summary>The device the weights live on.</summary>
    RetNetDevice Device { get; }

    /// <summary>V: token ids are in [0, V).</summary>
    int VocabSize { get; }

    /// <summary>The number of weights.</summary>
    long ParameterCount { get; }

    /// <summary>How the weight matrices are stored on the device (norm weights are always fp32).</summary>
    TensorDType WeightType { get; }

    /// <summary>What loading adapted (empty when nothing was).</summary>
    IReadOnlyList<string> Notices { get; }

    /// <summary>The weights on the device by name, in checkpoint order (what an optimiser updates in place).</summary>
    IReadOnlyDictionary<string, Tensor> Parameters { get; }

    /// <summary>The config as the JSON of the folder's config.json.</summary>
    string ConfigJson { get; }

    /// <summary>The weights by name, copied to the host.</summary>
    IReadOnlyDictionary<string, HostTensor> ExportWeights();

    /// <summary>Writes the model folder (config.json and model.safetensors), each file atomically.</summary>
    void Save(string folder);
}

/// <summary>Opens model folders of either architecture.</summary>
public static class LanguageModels
{
    /// <summary>True when <paramref name="configJson"/> is a Transformer's config (its model_type says so).</summary>
    public static bool IsTransformer(string configJson) => Transformer.TransformerConfig.IsTransformerJson(configJson);

    /// <summary>Loads the model in <paramref name="folder"/>: a Transformer when its config (as
    /// <see cref="ModelFolder.Read"/> decides it) says <c>"model_type": "transformer"</c>, else a RetNet.</summary>
    /// <exception cref="FileNotFoundException">config.json or model.safetensors is absent.</exception>
    /// <exception cref="ArgumentException">The config is invalid.</exception>
    /// <exception cref="CheckpointMismatchException">The tensors do not fit the config.</exception>
    /// <param name="device">The device to put the weights on.</param>
    /// <param name="folder">The model folder.</param>
    /// <param name="weightType">How the weight matrices are stored; null keeps the checkpoint's type (see
    /// <see cref="RetNetModel.FromWeights(RetNetDevice, RetNetConfig, IReadOnlyDictionary{string, HostTensor}, bool, TensorDType?)"/>).</param>
    public static ILanguageModel Load(RetNetDevice device, string folder, TensorDType? weightType = null)
    {
        var contents = ModelFolder.Read(folder);
        return IsTransformer(contents.ConfigJson)
            ? Transformer.TransformerModel.FromFolder(device, contents, allowNonFiniteWeights: false, weightType)
            : RetNetModel.FromFolder(device, contents, allowNonFiniteWeights: false, weightType);
    }

    /// <summary>A model from a config's JSON and host weights, of the architecture the JSON names.</summary>
    /// <exception cref="ArgumentException">The config is invalid.</exception>
    /// <exception cref="CheckpointMismatchException">The tensors do not fit the config.</exception>
    public static ILanguageModel FromWeights(RetNetDevice device, string configJson,
        IReadOnlyDictionary<string, HostTensor> weights, TensorDType? weightType = null) =>
        IsTransformer(configJson)
            ? Transformer.TransformerModel.FromWeights(device, Transformer.TransformerConfig.FromJson(configJson), weights,
                weightType: weightType)
            : RetNetModel.FromWeights(device, RetNetConfig.FromJson(configJson), weights, weightType: weightType);
}
