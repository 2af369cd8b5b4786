using System.CommandLine;
using RetNet.Ilgpu.Cli.Commands;

namespace RetNet.Ilgpu.Cli;

/// <summary>The retnet command tree, built in one place so that tests can parse and invoke it in-process.</summary>
internal static class RetNetCommandLine
{
    /// <summary>The root command with every subcommand.</summary>
    public static RootCommand Create() =>
        new("retnet: Retentive Networks on any GPU from .NET (ILGPU: CUDA, OpenCL, CPU).")
        {
            DevicesCommand.Create(),
            ModelCommands.Init(),
            InfoCommand.Create(),
            ModelCommands.Forward(),
            ModelCommands.Gradients(),
            TrainCommands.Train(),
            TrainCommands.Eval(),
            TrainCommands.Corpus(),
            ModelCommands.Generate(),
            ServeCommand.Create(),
            KernelsCommand.Create(),
            VerifyCommand.Create(),
            BenchCommand.Create(),
            DemoCommand.Create(),
        };
}
