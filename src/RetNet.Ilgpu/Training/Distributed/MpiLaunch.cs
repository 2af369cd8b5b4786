using System.Collections;
using System.Globalization;

namespace RetNet.Ilgpu.Training.Distributed;

/// <summary>
/// Where this process stands in a job started by an MPI launcher, read from the variables the launcher sets: OpenMPI's
/// mpirun sets <c>OMPI_COMM_WORLD_RANK</c>, <c>OMPI_COMM_WORLD_SIZE</c> and <c>OMPI_COMM_WORLD_LOCAL_RANK</c>;
/// PMI launchers (Hydra, Slurm's srun) set <c>PMI_RANK</c>, <c>PMI_SIZE</c> and, with PMIx, <c>PMIX_RANK</c>.
/// A process started without a launcher has none of them, and then nothing distributed happens: no MPI library is
/// loaded.
/// </summary>
/// <param name="Rank">This process's index in the job, 0 … Size − 1.</param>
/// <param name="Size">The number of processes in the job (the world size).</param>
/// <param name="LocalRank">This process's index among the job's processes on this machine: it picks the GPU.</param>
public sealed record MpiLaunch(int Rank, int Size, int LocalRank)
{
    /// <summary>The variables whose presence says a launcher started this process; any one of them suffices.</summary>
    public static IReadOnlyList<string> MarkerVariables { get; } =
        ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK"];

    /// <summary>The launch this process's environment describes, or null when no launcher started it.</summary>
    /// <exception cref="ArgumentException">A launcher variable is present but not a number in range.</exception>
    public static MpiLaunch? FromEnvironment() => FromVariables(Environment.GetEnvironmentVariables());

    /// <summary>The launch the variables describe, or null when none of <see cref="MarkerVariables"/> is set.</summary>
    /// <exception cref="ArgumentException">A launcher variable is present but not a number in range (the message names
    /// it and its value).</exception>
    public static MpiLaunch? FromVariables(IDictionary variables)
    {
        ArgumentNullException.ThrowIfNull(variables);
        string? Read(string name) => variables.Contains(name) ? variables[name] as string : null;
        if (MarkerVariables.All(name => string.IsNullOrEmpty(Read(name))))
            return null;
        int Number(string[] names, int? fallback, int minimum)
        {
            foreach (var name in names)
            {
                if (Read(name) is not { Length: > 0 } text)
                    continue;
                if (!int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var value) || value < minimum)
                    throw new ArgumentException(
                        $"The launcher variable {name} is '{text}'; expected an integer ≥ {minimum}.", nameof(variables));
                return value;
            }
            return fallback ?? throw new ArgumentException(
                $"A launcher variable is set but none of {string.Join(", ", names)} is: cannot tell this process's " +
                "place in the job.", nameof(variables));
        }
        var size = Number(["OMPI_COMM_WORLD_SIZE", "PMI_SIZE"], fallback: null, minimum: 1);
        var rank = Number(["OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMIX_RANK"], fallback: null, minimum: 0);
        var local = Number(["OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "PMI_LOCAL_RANK"], fallback: 0, minimum: 0);
        if (rank >= size)
            throw new ArgumentException(
                $"The launcher gives rank {rank} in a job of {size} processes; expected a rank below the size.",
                nameof(variables));
        return new MpiLaunch(rank, size, local);
    }
}
