using RetNet.Ilgpu.Kernels.ScaledEmbedding;
using RetNet.Ilgpu.Model;
using RetNet.Ilgpu.Tests.Support;

namespace RetNet.Ilgpu.Tests.Model;

[Collection(DeviceCollection.Name)]
public sealed class ModelKernelTests(DeviceFixture fixture)
{
    private readonly RetNetDevice device = fixture.Device;

    [Fact]
    public void ScaledEmbedding_gathers_scaled_rows_and_rejects_bad_ids()
    {
        var table = Numerics.Uniform(3, 5 * 4);
        using var t = Tensor.FromHost(device, table, 5, 4);
        using var output = Tensor.Zeros(device, 3, 4);
        ScaledEmbedding.Forward(t, [4, 0, 4], 2f, output);
        var expected = new[] { 4, 0, 4 }.SelectMany(id => table.Skip(id * 4).Take(4).Select(v => 2.0 * v)).ToArray();
        Numerics.AssertClose("gather", output.ToHost(), expected, 0);
        Assert.Equal("ids", Assert.Throws<ArgumentException>(() => ScaledEmbedding.Forward(t, [0, 5, 1], 1f, output)).ParamName);
        Assert.Equal("output", Assert.Throws<ArgumentException>(() => ScaledEmbedding.Forward(t, [0, 1], 1f, output)).ParamName);
    }

    [Fact]
    public void The_host_gather_gives_the_kernels_bits_and_refuses_an_id_outside_the_table()
    {
        // The model's launch runs as host code in host execution; the public Forward launches the kernel.
        using var host = RetNetDevice.Open(DeviceKind.Cpu, CpuExecution.Host);
        var table = Numerics.Uniform(4, 7 * 5, 3f);
        using var t = Tensor.FromHost(host, table, 7, 5);
        int[] ids = [6, 0, 3, 3];
        using var viaKernel = Tensor.Zeros(host, ids.Length, 5);
        ScaledEmbedding.Forward(t, ids, 1.7f, viaKernel);
        using var uploaded = IndexTensor.FromHost(host, ids, ids.Length);
        using var viaHost = Tensor.Zeros(host, ids.Length, 5);
        ScaledEmbedding.Launch(t, uploaded, 1.7f, viaHost);
        Assert.Equal(viaKernel.ToHost(), viaHost.ToHost());
        Numerics.AssertClose("host gather", viaHost.ToHost(),
            ids.SelectMany(id => table.Skip(id * 5).Take(5).Select(v => (double)(1.7f * v))).ToArray(), 0);

        using var bad = IndexTensor.FromHost(host, [1, 7], 2);
        using var two = Tensor.Zeros(host, 2, 5);
        Assert.Throws<InvalidOperationException>(() => ScaledEmbedding.Launch(t, bad, 1f, two));
    }

    [Fact]
    public void Model_entry_points_reject_bad_tokens_and_foreign_states()
    {
        var config = ModelTestSupport.Micro();
        using var model = LanguageModel.Create(device, config, 1);
        using var other = LanguageModel.Create(device, config, 2);
        Assert.Equal("tokens", Assert.Throws<ArgumentException>(() => model.Forward(new int[1, 2] { { 0, 40 } }, ForwardMode.Parallel)).ParamName);
        Assert.Equal("tokens", Assert.Throws<ArgumentException>(() => model.Forward(new int[0, 2], ForwardMode.Parallel)).ParamName);
        Assert.Equal("mode", Assert.Throws<ArgumentException>(() => model.Forward(new int[1, 2], ForwardMode.Chunkwise(0))).ParamName);
        Assert.Equal("prompts", Assert.Throws<ArgumentException>(() => model.Prefill([[1], []])).ParamName);
        Assert.Throws<ArgumentException>(() => model.Prefill([[1, -1]]));
        var prefill = model.Prefill([[1, 2]]);
        using var state = prefill.State;
        Assert.Equal("tokens", Assert.Throws<ArgumentException>(() => model.Step([1, 2], state)).ParamName);
        Assert.Equal("state", Assert.Throws<ArgumentException>(() => other.Step([1], state)).ParamName);
        Assert.Equal("tokens", Assert.Throws<ArgumentException>(() => model.Extend(state, [[1], [2]])).ParamName);
    }

    [Fact]
    public void Extend_in_parts_equals_one_prefill()
    {
        var config = ModelTestSupport.Micro();
        using var model = LanguageModel.FromWeights(device, config, ModelTestSupport.Weights(config, 12));
        var whole = model.Prefill([[1, 2, 3, 4, 5, 6, 7]], chunkSize: 4);
        using var wholeState = whole.State;
        var part = model.Prefill([[1, 2, 3]], chunkSize: 2);
        using var partState = part.State;
        var rest = model.Extend(partState, [[4, 5, 6, 7]], chunkSize: 3);
        Numerics.AssertClose("extended logits", rest[0], whole.Logits[0]);
        Assert.Equal([7], partState.Positions);
        Numerics.AssertClose("next step", model.Step([9], partState)[0], model.Step([9], wholeState)[0]);
    }
}
