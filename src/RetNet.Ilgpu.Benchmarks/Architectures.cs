using RetNet.Ilgpu.Model;

namespace RetNet.Ilgpu.Benchmarks;

/// <summary>The models the decoding and training benchmarks measure, by name.</summary>
internal static class Architectures
{
    /// <summary>Throws unless <paramref name="architectures"/> names <see cref="DecodeBenchmarkOptions.Retnet"/> and/or
    /// <see cref="DecodeBenchmarkOptions.Transformer"/>, each once.</summary>
    /// <exception cref="ArgumentException">Another name, a repeat, or none (parameter name "options").</exception>
    public static void Validate(IReadOnlyList<string> architectures)
    {
        if (architectures.Count == 0 || architectures.Any(a =>
                a is not (DecodeBenchmarkOptions.Retnet or DecodeBenchmarkOptions.Transformer)) ||
            architectures.Distinct().Count() != architectures.Count)
            throw new ArgumentException(
                $"Argument 'options' has architectures [{string.Join(", ", architectures)}]; expected " +
                "retnet and/or transformer, each once.", "options");
    }

    /// <summary>The config <paramref name="architecture"/> is measured with: <paramref name="config"/> itself, or the
    /// Transformer with its parameter count (<see cref="TransformerConfig.Matching"/>).</summary>
    public static ModelConfig Config(string architecture, RetNetConfig config) =>
        architecture == DecodeBenchmarkOptions.Transformer ? TransformerConfig.Matching(config) : config;
}
