using RetNet.Ilgpu.Kernels.Gemm;
using RetNet.Ilgpu.Model;
using RetNet.Ilgpu.Tensors;
using RetNet.Ilgpu.Tests.Model;

namespace RetNet.Ilgpu.Tests.Robustness;

/// <summary>
/// A device, and everything on it, is driven by one thread at a time; two devices are independent. Two CPU
/// accelerators in one process, a model on each, forward passes at the same time in two threads: each equals what
/// its device computes alone, bit for bit. One device driven by two threads at once throws rather than interleaving.
/// </summary>
public sealed class ConcurrencyTests
{
    [Fact]
    public void A_device_in_use_by_one_thread_refuses_another_and_serves_it_once_released()
    {
        using var device = RetNetDevice.Open(DeviceKind.Cpu, CpuExecution.Host);
        var config = ModelTestSupport.Micro();
        using var model = LanguageModel.Create(device, config, seed: 1);
        var tokens = ModelTestSupport.Tokens(seed: 4, batch: 1, seqLen: 6, config.VocabSize);
        using var a = Tensor.FromHost(device, new float[6], 2, 3);
        using var b = Tensor.FromHost(device, new float[6], 3, 2);
        using var c = Tensor.Uninitialized(device, 2, 2);
        Exception? OnAnotherThread(Action action)
        {
            Exception? caught = null;
            var thread = new Thread(() =>
            {
                try
                {
                    action();
                }
                catch (Exception e)
                {
                    caught = e;
                }
            });
            thread.Start();
            thread.Join();
            return caught;
        }
        using (device.Enter())
        {
            // What a model call holds while it runs: another thread's model call, operator and allocation all throw.
            var forward = Assert.IsType<InvalidOperationException>(OnAnotherThread(() => model.Forward(tokens).Dispose()));
            Assert.Contains("in use by thread", forward.Message);
            Assert.IsType<InvalidOperationException>(OnAnotherThread(() => Gemm.Run(a, b, c)));
            Assert.IsType<InvalidOperationException>(OnAnotherThread(() => Tensor.Zeros(device, 4).Dispose()));
            // The holding thread itself nests freely.
            using (var logits = model.Forward(tokens))
                Assert.Equal(6 * config.VocabSize, logits.Length);
        }
        // Negative control: released, the other thread is served.
        Assert.Null(OnAnotherThread(() => model.Forward(tokens).Dispose()));
        Assert.Null(OnAnotherThread(() => Gemm.Run(a, b, c)));
    }

    [Fact]
    public void Buffers_never_freed_are_listed_with_what_they_held_and_where_they_were_made()
    {
        var device = RetNetDevice.Open(DeviceKind.Cpu, CpuExecution.Host);
        device.TrackAllocations = true;
        var kept = Tensor.Zeros(device, 3, 4);
        using (var model = LanguageModel.Create(device, ModelTestSupport.Micro(), seed: 1))
        using (model.CreateGradients())
        {
        }
        var leaked = Assert.Single(device.UndisposedBuffers);
        Assert.StartsWith("Tensor[3, 4] Float32, 48 bytes, allocated at", leaked);
        Assert.Contains(nameof(Buffers_never_freed_are_listed_with_what_they_held_and_where_they_were_made), leaked);
        var error = new StringWriter();
        var previous = Console.Error;
        Console.SetError(error);
        try
        {
            device.Dispose();
        }
        finally
        {
            Console.SetError(previous);
        }
        Assert.Contains("1 device buffers (48 bytes)", error.ToString());
        Assert.Contains("Tensor[3, 4] Float32", error.ToString());
        // Negative control: a device whose tensors were all disposed reports nothing.
        using var clean = RetNetDevice.Open(DeviceKind.Cpu, CpuExecution.Host);
        Tensor.Zeros(clean, 3, 4).Dispose();
        Assert.Empty(clean.UndisposedBuffers);
        GC.KeepAlive(kept);
    }

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
