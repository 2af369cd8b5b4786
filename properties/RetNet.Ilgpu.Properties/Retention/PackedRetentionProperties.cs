using FsCheck;
using FsCheck.Fluent;
using FsCheck.Xunit;
using RetNet.Ilgpu.Retention;
using RetNet.Ilgpu.Tests.Retention;
using RetNet.Ilgpu.Tests.Support;

namespace RetNet.Ilgpu.Properties.Retention;

/// <summary>
/// One random retention problem (<see cref="RetentionProblem"/>) whose rows are cut into random documents: each row
/// independently, into 1 to 4 documents of any lengths ≥ 1 (one-token documents included).
/// </summary>
public sealed record PackedRetentionProblem(RetentionProblem Problem, int[][] Lengths)
{
    /// <summary>Inputs on the device and what packing must equal: each document run alone.</summary>
    public PackedRetentionCase Build(RetNetDevice device)
    {
        var p = Problem;
        return new PackedRetentionCase(device, p.Shape, p.Decay, Lengths, p.Seed, p.Scale, p.WithInitialState,
            p.WithOutputGradient, p.WithFinalStateGradient);
    }

    /// <inheritdoc/>
    public override string ToString() =>
        $"{Problem} documents=[{string.Join(" | ", Lengths.Select(row => string.Join(", ", row)))}]";

    /// <summary>Problems of <paramref name="problems"/> with every row cut at random.</summary>
    public static Arbitrary<PackedRetentionProblem> Arbitrary(Arbitrary<RetentionProblem> problems) =>
        (from problem in problems.Generator
         from lengths in Cuts(problem.Shape.SeqLen).ArrayOf(problem.Shape.Batch)
         select new PackedRetentionProblem(problem, lengths)).ToArbitrary();

    /// <summary>T split into 1 to 4 documents: up to three distinct cut points in [1, T − 1].</summary>
    private static Gen<int[]> Cuts(int seqLen) =>
        from count in Gen.Choose(0, Math.Min(3, seqLen - 1))
        from cuts in Gen.Choose(1, Math.Max(1, seqLen - 1)).ArrayOf(count)
        select DocumentLengths(seqLen, cuts);

    private static int[] DocumentLengths(int seqLen, int[] cuts)
    {
        int[] points = [0, .. cuts.Where(c => c > 0 && c < seqLen).Distinct().Order(), seqLen];
        return points.Zip(points.Skip(1), (a, b) => b - a).ToArray();
    }
}

/// <summary>
/// Packed documents are independent: on random problems cut into random documents, the parallel, chunkwise (any C)
/// and recurrent forms over the packed rows equal each document run alone through the double reference — outputs,
/// final states, and the parallel and chunkwise gradients — with the device's own kernels and with every tiled
/// configuration forced; so the three forms equal each other on packed input. The negative control runs the same
/// kernels with the boundaries ignored and asserts the same comparison rejects them wherever a document starts inside
/// a row and some head keeps γ ≥ 1/2 (<see cref="PackedRetentionCase.BoundariesMatter"/>).
/// </summary>
[Collection(PropertyDeviceCollection.Name)]
public sealed class PackedRetentionProperties(DeviceFixture fixture)
{
    private readonly RetNetDevice device = fixture.Device;

    [Property(MaxTest = 40)]
    public Property Packed_forms_equal_each_document_run_alone_forward_and_backward() =>
        Prop.ForAll(PackedRetentionProblem.Arbitrary(RetentionProblem.Arbitrary()), packed =>
            Check(packed, launch: null));

    [Property(MaxTest = 15)]
    public Property Packed_tiled_kernels_equal_each_document_run_alone_forward_and_backward() =>
        Prop.ForAll(PackedRetentionProblem.Arbitrary(RetentionProblem.Tiled()),
            Gen.Choose(0, TiledConfigurations - 1).ToArbitrary(), (packed, configuration) =>
                Check(packed, RetentionLaunch.TiledConfigurations(device.MaxGroupSize)[configuration]));

    private static readonly int TiledConfigurations =
        RetentionLaunch.TiledConfigurations(RetentionLaunch.DefaultGroupSize).Count;

    private void Check(PackedRetentionProblem packed, RetentionLaunch? launch)
    {
        using var test = packed.Build(device);
        var t = test.Test;
        var chunkSize = packed.Problem.ChunkSize;
        var what = $"{launch?.ToString() ?? "device default"}, {packed}";
        using var output = t.NewOutput();
        using var state = t.NewState();
        using var gradients = t.NewGradients();

        ParallelRetention.Forward(t.QueryTensor, t.KeyTensor, t.ValueTensor, t.Decay, output, t.InitialStateTensor,
            state, launch, bounds: test.Bounds);
        test.AssertForward($"packed parallel, {what}", output, state);
        ChunkwiseRetention.Forward(t.QueryTensor, t.KeyTensor, t.ValueTensor, t.Decay, chunkSize, output,
            t.InitialStateTensor, state, launch, bounds: test.Bounds);
        test.AssertForward($"packed chunkwise, {what}", output, state);
        if (t.InitialStateTensor is null)
            state.CopyFromHost(new float[test.Shape.StateLength]);
        else
            state.CopyFrom(t.InitialStateTensor);
        RecurrentRetention.Forward(t.QueryTensor, t.KeyTensor, t.ValueTensor, t.Decay, output, state, launch,
            bounds: test.Bounds);
        test.AssertForward($"packed recurrent, {what}", output, state);

        ParallelRetention.Backward(t.QueryTensor, t.KeyTensor, t.ValueTensor, t.Decay, t.InitialStateTensor,
            t.OutputGradientTensor, t.FinalStateGradientTensor, gradients.Dq, gradients.Dk, gradients.Dv,
            gradients.DInitialState, launch, bounds: test.Bounds);
        test.AssertBackward($"packed parallel backward, {what}", gradients);
        ChunkwiseRetention.Backward(t.QueryTensor, t.KeyTensor, t.ValueTensor, t.Decay, chunkSize,
            t.InitialStateTensor, t.OutputGradientTensor, t.FinalStateGradientTensor, gradients.Dq, gradients.Dk,
            gradients.Dv, gradients.DInitialState, launch, bounds: test.Bounds);
        test.AssertBackward($"packed chunkwise backward, {what}", gradients);

        if (!test.BoundariesMatter)
            return;
        // The negative control: the same kernels with the boundaries ignored.
        ChunkwiseRetention.Forward(t.QueryTensor, t.KeyTensor, t.ValueTensor, t.Decay, chunkSize, output,
            t.InitialStateTensor, state, launch);
        test.AssertOutputRejected($"chunkwise, {what}", output);
        if (t.OutputGradient is not null)
        {
            ChunkwiseRetention.Backward(t.QueryTensor, t.KeyTensor, t.ValueTensor, t.Decay, chunkSize,
                t.InitialStateTensor, t.OutputGradientTensor, t.FinalStateGradientTensor, gradients.Dq, gradients.Dk,
                gradients.Dv, gradients.DInitialState, launch);
            test.AssertGradientsRejected($"chunkwise backward, {what}", gradients);
        }
    }
}
