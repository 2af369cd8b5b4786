using RetNet.Ilgpu.Model;
using RetNet.Ilgpu.Tests.Support;

namespace RetNet.Ilgpu.Tests.Model;

/// <summary>
/// Prefill reuses one workspace the model keeps for prompts of up to <see cref="LanguageModel.KeptPromptRows"/> tokens
/// (a server prefills a prompt per request): what a previous, longer or shorter, prompt left in it never reaches the
/// next one, whose logits and decoding state are those of a fresh model's; a prompt past the kept size runs in a
/// workspace of its own and leaves the kept one usable; <see cref="LanguageModel.ReleasePromptWorkspace"/> gives the
/// kept workspace's bytes back.
/// </summary>
[Collection(DeviceCollection.Name)]
public sealed class PromptWorkspaceTests(DeviceFixture fixture)
{
    public static TheoryData<string> Architectures => ModelTestSupport.Architectures;

    private static ModelConfig Config(string architecture) => ModelTestSupport.MicroOf(architecture);

    [Theory, MemberData(nameof(Architectures))]
    public void A_prompt_after_others_gets_the_logits_and_steps_of_a_fresh_model(string architecture)
    {
        var config = Config(architecture);
        var random = new Random(3);
        int[] Prompt(int length) => Enumerable.Range(0, length).Select(_ => random.Next(config.VocabSize)).ToArray();
        var target = Prompt(9);
        int[][] before = [Prompt(23), Prompt(4), Prompt(LanguageModel.KeptPromptRows + 5)];

        using var fresh = LanguageModel.Create(fixture.Device, config, seed: 8);
        var (expected, expectedSteps) = PrefillAndStep(fresh, target);

        using var used = LanguageModel.Create(fixture.Device, config, seed: 8);
        foreach (var prompt in before)
        {
            using var state = used.Prefill([prompt]).State;
            var (logits, steps) = PrefillAndStep(used, target);
            Assert.Equal(expected, logits);
            Assert.Equal(expectedSteps, steps);
        }
        // Negative control: another prompt's logits are other bits, so equal bits above are the target's own.
        var (other, _) = PrefillAndStep(used, before[0][..9]);
        Assert.NotEqual(expected, other);
    }

    [Theory, MemberData(nameof(Architectures))]
    public void Releasing_the_kept_workspace_gives_its_bytes_back_and_the_next_prefill_the_same_bits(
        string architecture)
    {
        var memory = fixture.Device.Memory;
        using var model = LanguageModel.Create(fixture.Device, Config(architecture), seed: 8);
        int[] prompt = [1, 2, 3, 4, 5, 6, 7];
        // A first pass makes what the model keeps for good (tables it builds on first use).
        var (expected, expectedSteps) = PrefillAndStep(model, prompt);
        model.ReleasePromptWorkspace();
        var before = memory.CurrentBytes;
        var (again, againSteps) = PrefillAndStep(model, prompt);
        Assert.Equal(expected, again);
        Assert.Equal(expectedSteps, againSteps);
        // Negative control of the release: after a prefill the model still holds the workspace.
        Assert.True(memory.CurrentBytes > before, $"{memory.CurrentBytes} bytes after a prefill, {before} before");
        model.ReleasePromptWorkspace();
        Assert.Equal(before, memory.CurrentBytes);
        var (logits, steps) = PrefillAndStep(model, prompt);
        Assert.Equal(expected, logits);
        Assert.Equal(expectedSteps, steps);
        model.ReleasePromptWorkspace();
        model.ReleasePromptWorkspace();
        Assert.Equal(before, memory.CurrentBytes);
    }

    private static (float[] Logits, float[][] Steps) PrefillAndStep(LanguageModel model, int[] prompt)
    {
        var prefill = model.Prefill([prompt]);
        using var state = prefill.State;
        var steps = new float[3][];
        for (var t = 0; t < steps.Length; t++)
            steps[t] = model.Step([t + 1], state)[0];
        return (prefill.Logits[0], steps);
    }
}
