using RetNet.Ilgpu.Model;
using RetNet.Ilgpu.Tests.Support;

namespace RetNet.Ilgpu.Tests.Model;

/// <summary>
/// Every kernel indexes in 32 bits, so no tensor may hold more than 2³¹ − 1 elements. The logits of a GPT-2
/// vocabulary pass that at B·T ≈ 42.7k tokens: the models refuse such work before allocating or launching anything,
/// naming the argument and the tensor.
/// </summary>
[Collection(DeviceCollection.Name)]
public sealed class SizeLimitTests(DeviceFixture fixture)
{
    private const int Gpt2Vocabulary = 50_257;

    private readonly RetNetDevice device = fixture.Device;

    [Fact]
    public void The_limit_is_exactly_int_max_value_elements()
    {
        ShapeCheck.FitsOneTensor(int.MaxValue, 1, "x", "a");
        ShapeCheck.FitsOneTensor(46_340, 46_341, "x", "a"); // 2,147,441,940
        Assert.Throws<ArgumentException>(() => ShapeCheck.FitsOneTensor(int.MaxValue + 1L, 1, "x", "a"));
        Assert.Throws<ArgumentException>(() => ShapeCheck.FitsOneTensor(46_341, 46_341, "x", "a")); // 2,147,488,281
        Assert.Throws<ArgumentException>(() => ShapeCheck.FitsOneTensor(long.MaxValue / 2, 3, "x", "a"));
        Assert.Throws<ArgumentException>(() => Tensor.Uninitialized(device, 46_341, 46_341));
    }

    [Fact]
    public void Logits_past_two_to_the_31_are_refused_before_anything_is_allocated()
    {
        // B·T·V: 42,730 × 50,257 = 2,147,481,610 ≤ 2³¹ − 1 < 42,731 × 50,257.
        var config = ModelTestSupport.Micro() with { VocabSize = Gpt2Vocabulary };
        using var model = LanguageModel.Create(device, config, seed: 1);
        using var transformer = LanguageModel.Create(device, TransformerConfig.Matching(config));
        var before = device.Memory.CurrentBytes;

        var error = Assert.Throws<ArgumentException>(() => model.Forward(new int[1, 42_731], ForwardMode.Chunkwise()));
        Assert.Equal("tokens", error.ParamName);
        Assert.Contains("logits [B·T, V] of 42731 × 50257", error.Message);
        error = Assert.Throws<ArgumentException>(() => model.Forward(new int[7, 6_105], ForwardMode.Parallel));
        Assert.Contains("logits", error.Message);
        using (var gradients = ModelGradients.Zeros(model))
        {
            var afterGradients = device.Memory.CurrentBytes;
            error = Assert.Throws<ArgumentException>(() =>
                model.ForwardBackward(new int[1, 42_732], gradients, ForwardMode.Chunkwise()));
            Assert.Equal("windows", error.ParamName);
            Assert.Equal(afterGradients, device.Memory.CurrentBytes);
        }
        error = Assert.Throws<ArgumentException>(() => transformer.Forward(new int[1, 42_731]));
        Assert.Contains("logits", error.Message);
        Assert.Equal(before, device.Memory.CurrentBytes);
    }
}
