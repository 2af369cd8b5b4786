using RetNet.Ilgpu.Model;

namespace RetNet.Ilgpu.Tests.Robustness;

/// <summary>
/// The test assembly's entry point (the test runner does not use it): <c>dotnet RetNet.Ilgpu.Tests.dll states FOLDER
/// COUNT</c> saves a RetNet decoding state and a Transformer KV cache over and over (of varying batch and length),
/// COUNT times or, with 0, until killed: the writer <see cref="CrashTests"/> kills at random points. Without
/// arguments it does nothing, like the entry point the test SDK would generate.
/// </summary>
public static class CrashChild
{
    /// <summary>The decoding state's file in the folder.</summary>
    public const string StateFile = "state.safetensors";

    /// <summary>The KV cache's file in the folder.</summary>
    public const string CacheFile = "cache.safetensors";

    /// <summary>The RetNet whose states are saved (the test rebuilds it to load them).</summary>
    public static RetNetConfig RetNet => Model.ModelTestSupport.Micro();

    /// <summary>The Transformer whose caches are saved.</summary>
    public static TransformerConfig Transformer => TransformerConfig.Matching(RetNet);

    /// <summary>Runs the writer named by <paramref name="args"/>.</summary>
    public static int Main(string[] args)
    {
        if (args is not ["states", var folder, var countText])
            return args.Length == 0 ? 0 : 2;
        var count = int.Parse(countText, System.Globalization.CultureInfo.InvariantCulture);
        using var device = RetNetDevice.Open(DeviceKind.Cpu);
        using var retnet = LanguageModel.Create(device, RetNet, seed: 1);
        using var transformer = LanguageModel.Create(device, Transformer, seed: 1);
        var random = new Random(5);
        for (var i = 0; count == 0 || i < count; i++)
        {
            var prompts = Enumerable.Range(0, 1 + i % 3)
                .Select(_ => Enumerable.Range(0, 2 + random.Next(6)).Select(_ => random.Next(RetNet.VocabSize)).ToArray())
                .ToList();
            var prefill = retnet.Prefill(prompts);
            using (prefill.State)
                prefill.State.Save(Path.Combine(folder, StateFile));
            var (_, cache) = transformer.Prefill(prompts);
            using (cache)
                cache.Save(Path.Combine(folder, CacheFile));
        }
        return 0;
    }
}
