using System.CommandLine;
using RetNet.Ilgpu.Cli.Commands;

var root = new RootCommand("retnet: Retentive Networks on any GPU from .NET (ILGPU: CUDA, OpenCL, CPU).")
{
    DevicesCommand.Create(),
    ModelCommands.Init(),
    ModelCommands.Forward(),
    ModelCommands.Gradients(),
    TrainCommands.Train(),
    TrainCommands.Eval(),
    TrainCommands.Corpus(),
    ModelCommands.Generate(),
    KernelsCommand.Create(),
    VerifyCommand.Create(),
    BenchCommand.Create(),
    DemoCommand.Create(),
};
return root.Parse(args).Invoke();
