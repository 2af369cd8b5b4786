using RetNet.Ilgpu.Devices;
using RetNet.Ilgpu.Kernels;

namespace RetNet.Ilgpu.Verification;

/// <summary>
/// <c>retnet verify</c>: every operator in every launch configuration the library has for it (tiles, group sizes,
/// barrier-free and host forms), and each model form on a small model, against the double-precision references, on
/// one device, at a few shapes each (size 1, sizes that are not multiples of a tile or group, several tiles). Then
/// the coverage rule: every registered kernel (<see cref="KernelRegistry"/>) must have been launched by some check,
/// or belong to a configuration the device cannot launch. See docs/VERIFY.md.
/// </summary>
public static class DeviceVerifier
{
    private static readonly (string Name, Action<VerificationContext> Run)[] groups =
    [
        ("gemm", GemmChecks.Run),
        ("elementwise", PointwiseChecks.Elementwise),
        ("conversion", PointwiseChecks.Conversion),
        ("normalization", RowChecks.Normalization),
        ("reduction", RowChecks.Reductions),
        ("cross-entropy", RowChecks.CrossEntropy),
        ("embedding", PointwiseChecks.Embedding),
        ("rotation", PointwiseChecks.Rotation),
        ("head groups", PointwiseChecks.HeadGroups),
        ("decay-normalization", PointwiseChecks.DecaySums),
        ("adamw", PointwiseChecks.AdamW),
        ("retention", RetentionVerification.Run),
        ("attention", AttentionVerification.Run),
        ("model", ModelVerification.RetNet),
        ("transformer", ModelVerification.Transformer),
    ];

    /// <summary>The check groups, in the order they run.</summary>
    public static IReadOnlyList<string> Groups { get; } = groups.Select(g => g.Name).ToArray();

    /// <summary>
    /// Runs the checks on <paramref name="device"/>, reporting each row to <paramref name="progress"/> as it
    /// completes, then one failed row per registered kernel that no check launched ("not exercised").
    /// </summary>
    /// <returns>Every row in order; the run passed when every row did.</returns>
    /// <exception cref="ArgumentException"><see cref="VerifyOptions.Groups"/> names an unknown group.</exception>
    public static IReadOnlyList<VerificationResult> Run(RetNetDevice device, VerifyOptions? options = null,
        Action<VerificationResult>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(device);
        options ??= new VerifyOptions();
        var selected = options.Groups ?? Groups;
        foreach (var name in selected)
            if (!Groups.Contains(name, StringComparer.Ordinal))
                throw new ArgumentException(
                    $"Argument 'options' names the check group '{name}'; expected one of {string.Join(", ", Groups)}.",
                    nameof(options));

        var context = new VerificationContext(device, options, progress);
        var previous = device.KernelRecorder;
        var launched = new HashSet<System.Reflection.MethodInfo>();
        device.KernelRecorder = launched;
        try
        {
            foreach (var (name, run) in groups)
                if (selected.Contains(name, StringComparer.Ordinal))
                    run(context);
        }
        finally
        {
            device.KernelRecorder = previous;
        }

        foreach (var kernel in KernelRegistry.All)
            if (!launched.Contains(kernel.Method) && !context.SkippedKernels.Contains(kernel.Name))
                context.Add(new VerificationResult(kernel.Name, context.DeviceName, "-", double.PositiveInfinity, 0,
                    false, Note: "not exercised by any check"));
        return context.Results;
    }
}
