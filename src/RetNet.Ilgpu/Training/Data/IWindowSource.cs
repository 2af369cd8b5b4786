namespace RetNet.Ilgpu.Training.Data;

/// <summary>
/// Where a <see cref="Trainer"/> takes each micro-batch's windows from: <see cref="WindowSampler"/> in every run of
/// the library; a recorded sequence of windows in the tests that replay another trainer's run step for step (the
/// torchscale trajectory fixtures).
/// </summary>
internal interface IWindowSource
{
    /// <summary>Fills each row of <paramref name="windows"/> [B, T + 1] with the next window.</summary>
    void Next(int[,] windows);
}
