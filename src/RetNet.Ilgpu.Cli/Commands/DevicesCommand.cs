using System.CommandLine;
using RetNet.Ilgpu.Devices;

namespace RetNet.Ilgpu.Cli.Commands;

/// <summary><c>retnet devices</c>: the accelerators present and the one Auto picks.</summary>
internal static class DevicesCommand
{
    public static Command Create()
    {
        var command = new Command("devices", "List the accelerators ILGPU can open and the one --device auto picks.");
        command.SetAction(_ => CommonOptions.Run(() =>
        {
            var devices = RetNetDevice.List();
            Console.Write(Format.Table(
                ["kind", "name", "memory", "warp", "max group", "gpu", "class"],
                devices.Select(d => (IReadOnlyList<string>)
                [
                    d.Kind.ToString(), d.Name, Format.Bytes(d.MemoryBytes), d.WarpSize.ToString(),
                    d.MaxGroupSize.ToString(), d.IsGpu ? "yes" : "no", d.Class.ToString(),
                ])));
            var auto = RetNetDevice.AutoChoice();
            Console.WriteLine($"auto picks: {auto}");
            var env = Environment.GetEnvironmentVariable(DeviceKinds.EnvironmentVariable);
            if (!string.IsNullOrWhiteSpace(env))
                Console.WriteLine($"{DeviceKinds.EnvironmentVariable}={env}: --device auto opens " +
                                  $"{DeviceKinds.ResolveFromEnvironment(DeviceKind.Auto)}");
            return 0;
        }));
        return command;
    }
}
