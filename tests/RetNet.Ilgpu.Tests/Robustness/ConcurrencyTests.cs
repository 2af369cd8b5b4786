using RetNet.Ilgpu.Model;
using RetNet.Ilgpu.Tests.Model;

namespace RetNet.Ilgpu.Tests.Robustness;

/// <summary>
/// A device, and everything on it, is driven by one thread at a time; two devices are independent. Two CPU
/// accelerators in one process, a model on each, forward passes at the same time in two threads: each equals what
/// its device computes alone, bit for bit.
/// </summary>
public sealed class ConcurrencyTests
{
    [Fact]
    public void Two_models_on_two_devices_run_concurrently_and_equal_their_single_threaded_results()
    {
        using var first = RetNetDevice.Open(DeviceKind.Cpu, CpuExecution.Host);
        using var second = RetNetDevice.Open(DeviceKind.Cpu, CpuExecution.Host);
        var config = ModelTestSupport.Micro();
        using var a = LanguageModel.Create(first, config, seed: 1);
        using var b = LanguageModel.Create(second, config, seed: 2);
        var tokens = ModelTestSupport.Tokens(seed: 4, batch: 2, seqLen: 24, config.VocabSize);
        float[] Run(LanguageModel model, ForwardMode mode)
        {
            using var logits = model.Forward(tokens, mode);
            return logits.ToHost();
        }
        var modes = new[] { ForwardMode.Parallel, ForwardMode.Chunkwise(5), ForwardMode.Recurrent };
        var alone = modes.Select(m => (A: Run(a, m), B: Run(b, m))).ToArray();

        const int repetitions = 4;
        var results = new (float[][] A, float[][] B)[repetitions];
        using var start = new Barrier(2);
        for (var r = 0; r < repetitions; r++)
        {
            float[][]? fromA = null, fromB = null;
            var threadA = new Thread(() =>
            {
                start.SignalAndWait();
                fromA = modes.Select(m => Run(a, m)).ToArray();
            });
            var threadB = new Thread(() =>
            {
                start.SignalAndWait();
                fromB = modes.Select(m => Run(b, m)).ToArray();
            });
            threadA.Start();
            threadB.Start();
            threadA.Join();
            threadB.Join();
            results[r] = (fromA!, fromB!);
        }

        foreach (var (fromA, fromB) in results)
            for (var m = 0; m < modes.Length; m++)
            {
                Assert.True(alone[m].A.AsSpan().SequenceEqual(fromA[m]), $"device 1, {modes[m]}");
                Assert.True(alone[m].B.AsSpan().SequenceEqual(fromB[m]), $"device 2, {modes[m]}");
            }
        // Negative control: the two models differ, so equality above is not a product of both giving the same.
        Assert.False(alone[0].A.AsSpan().SequenceEqual(alone[0].B));
    }
}
