namespace RetNet.Ilgpu.Verification;

/// <summary>
/// One row of <see cref="DeviceVerifier.Run"/>: an operation in one launch configuration at one shape, against its
/// double-precision reference.
/// </summary>
/// <param name="Kernel">The operation and the launch configuration forced (for example <c>Gemm tiled 16x16x16</c>),
/// or a registered kernel's name in a coverage row.</param>
/// <param name="Device">The device it ran on.</param>
/// <param name="Shape">The sizes, such as <c>M=17 N=33 K=9</c>.</param>
/// <param name="MaxError">max |actual − reference| / max(max |reference|, floor) over every output of the check: the
/// error relative to the reference's scale (+∞ for a NaN, a wrong length or an exception; 0 when skipped).</param>
/// <param name="Tolerance">The relative tolerance the error is held to.</param>
/// <param name="Passed">True when the error is within the tolerance, and for skipped rows.</param>
/// <param name="Skipped">The device cannot launch this configuration; not a failure.</param>
/// <param name="Note">Why it was skipped, which output failed, the exception, or "not exercised"; null otherwise.</param>
public sealed record VerificationResult(string Kernel, string Device, string Shape, double MaxError, double Tolerance,
    bool Passed, bool Skipped = false, string? Note = null);

/// <summary>What <see cref="DeviceVerifier.Run"/> checks.</summary>
public sealed record VerifyOptions
{
    /// <summary>
    /// Only these check groups (names from <see cref="DeviceVerifier.Groups"/>), or null for all. The coverage rule
    /// still applies: kernels only the left-out groups launch are reported as not exercised.
    /// </summary>
    public IReadOnlyList<string>? Groups { get; init; }

    /// <summary>
    /// A negative control for the tests: checks whose row name starts with this prefix get one output element moved
    /// well outside the tolerance before the comparison, as a wrong kernel would.
    /// </summary>
    internal string? PerturbPrefix { get; init; }
}
