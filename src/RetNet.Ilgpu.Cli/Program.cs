using RetNet.Ilgpu.Cli;

return RetNetCommandLine.Create().Parse(args).Invoke();
