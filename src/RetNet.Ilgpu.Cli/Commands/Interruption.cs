namespace RetNet.Ilgpu.Cli.Commands;

/// <summary>
/// Ctrl+C (SIGINT) as a cancellation token for the commands that can stop cleanly (train, generate, bench): the first
/// press asks the command to stop at its next step or case boundary, where it still saves or prints what it has and
/// exits with <see cref="ExitCode"/>; a second press ends the process at once (every file is written to a temporary
/// name and renamed, so nothing half-written is left). Other commands keep the default: Ctrl+C ends them at once.
/// </summary>
internal static class Interruption
{
    /// <summary>The exit code of a run stopped by Ctrl+C (128 + SIGINT, as shells report it).</summary>
    public const int ExitCode = 130;

    private static readonly Lock Gate = new();
    private static CancellationTokenSource? source;

    /// <summary>Starts listening for Ctrl+C (once per process) and returns the token it cancels.</summary>
    public static CancellationToken Listen()
    {
        lock (Gate)
        {
            if (source is null)
            {
                source = new CancellationTokenSource();
                Console.CancelKeyPress += OnCancelKeyPress;
            }
            return source.Token;
        }
    }

    /// <summary><see cref="ExitCode"/> when <paramref name="token"/> was cancelled, else 0.</summary>
    public static int ExitCodeOf(CancellationToken token) => token.IsCancellationRequested ? ExitCode : 0;

    private static void OnCancelKeyPress(object? sender, ConsoleCancelEventArgs e)
    {
        if (source is not { IsCancellationRequested: false } pending)
            return;
        e.Cancel = true;
        Console.Error.WriteLine();
        Console.Error.WriteLine("interrupt: stopping at the next boundary (Ctrl+C again to quit at once)");
        pending.Cancel();
    }
}
