using FsCheck;
using FsCheck.Fluent;

namespace RetNet.Ilgpu.Properties.Robustness;

/// <summary>
/// The law every robustness property states, and how many cases each runs. A reader handed bad input either returns a
/// result whose invariants hold or throws one of the typed exceptions a caller is told to expect
/// (<see cref="IsTyped"/>) with a message; anything else (a NullReference, IndexOutOfRange, Overflow, OutOfMemory,
/// InvalidCast, KeyNotFound, a leaked JsonException, a hang) fails the property with the case that caused it.
/// </summary>
internal static class Fuzz
{
    /// <summary>The environment variable that raises every property's case count for a long run.</summary>
    public const string CasesVariable = "RETNET_FUZZ_CASES";

    /// <summary>One case taking longer than this counts as a hang.</summary>
    public static readonly TimeSpan HangLimit = TimeSpan.FromSeconds(30);

    /// <summary>The case count of a property: <paramref name="ciCases"/>, or <see cref="CasesVariable"/> when larger.</summary>
    public static int Cases(int ciCases) =>
        int.TryParse(Environment.GetEnvironmentVariable(CasesVariable), out var requested) && requested > ciCases
            ? requested
            : ciCases;

    /// <summary>Runs <paramref name="property"/> for <see cref="Cases"/> cases, throwing with the first failing case
    /// (and FsCheck's replay seed) on failure.</summary>
    public static void Check(Property property, int ciCases) =>
        FsCheck.Check.One(Config.QuickThrowOnFailure.WithMaxTest(Cases(ciCases)).WithQuietOnSuccess(true), property);

    /// <summary>The exceptions a reader may throw for bad input: what the library documents for it.</summary>
    public static bool IsTyped(Exception e) =>
        e is ArgumentException or InvalidDataException or IOException or NotSupportedException;

    /// <summary>
    /// The law: <paramref name="read"/> returns, and <paramref name="invariants"/> hold for what it returned; or it
    /// throws a typed exception with a non-empty message. Any other exception propagates (failing the property), and a
    /// read that outlasts <see cref="HangLimit"/> is reported as a hang.
    /// </summary>
    /// <param name="read">Reads the input.</param>
    /// <param name="invariants">Checks what <paramref name="read"/> returned.</param>
    /// <param name="expected">A narrower set of exceptions than <see cref="IsTyped"/>, for readers that document one.</param>
    /// <returns>True when the input was accepted, false when it was refused.</returns>
    public static bool ReturnsValidOrThrowsTyped<T>(Func<T> read, Action<T> invariants, Func<Exception, bool>? expected = null)
    {
        var task = Task.Run(read);
        try
        {
            task.Wait(HangLimit);
        }
        catch (AggregateException)
        {
            // Inspected below, unwrapped.
        }
        if (!task.IsCompleted)
            throw new TimeoutException($"The reader did not return within {HangLimit.TotalSeconds} s.");
        T result;
        try
        {
            result = task.GetAwaiter().GetResult();
        }
        catch (Exception e) when ((expected ?? IsTyped)(e))
        {
            if (string.IsNullOrWhiteSpace(e.Message))
                throw new InvalidOperationException($"{e.GetType().Name} without a message.", e);
            return false;
        }
        invariants(result);
        return true;
    }

    /// <summary>A fresh empty folder for one property's files.</summary>
    public static string TemporaryFolder(string name) => Directory.CreateTempSubdirectory($"retnet-fuzz-{name}-").FullName;

    /// <summary>An arbitrary of case seeds; a case builds itself from its seed with <see cref="Random"/>, so a failure
    /// prints a seed that rebuilds it exactly.</summary>
    public static Arbitrary<int> Seeds => Gen.Choose(0, int.MaxValue - 1).ToArbitrary();
}
