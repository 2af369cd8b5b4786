using System.Collections;
using RetNet.Ilgpu.Training;
using RetNet.Ilgpu.Training.Distributed;

namespace RetNet.Ilgpu.Tests.Training;

/// <summary>The pieces of data-parallel training that need no MPI: the rank-order sum, the launcher's variables, the
/// agreement of the ranks, the watchdog of collective calls.</summary>
public sealed class GradientReductionTests
{
    [Fact]
    public void Rank_order_sum_adds_the_workers_values_rank_by_rank()
    {
        // Three workers' values chosen so that the order of addition shows: (1e8 + 1) − 1e8 is 0 in fp32, while
        // 1 + (1e8 − 1e8) is 1.
        float[] gathered = [1e8f, 2f, 1f, 3f, -1e8f, 4f];
        var sum = new float[2];

        RankOrderSum.Sum(gathered, workers: 3, sum);

        Assert.Equal([(1e8f + 1f) + -1e8f, (2f + 3f) + 4f], sum);
        Assert.Equal(0f, sum[0]);
        // Negative control: another order gives other bits, so the assertion above can fail.
        Assert.NotEqual(1f + (1e8f + -1e8f), sum[0]);
    }

    [Fact]
    public void Two_workers_sum_to_the_bits_of_one_accumulator_adding_both_halves()
    {
        var random = new Random(7);
        var first = Enumerable.Range(0, 1000).Select(_ => (float)random.NextDouble() - 0.5f).ToArray();
        var second = Enumerable.Range(0, 1000).Select(_ => (float)random.NextDouble() - 0.5f).ToArray();
        // One process: a zeroed accumulator, += each micro-batch's half in turn.
        var accumulated = new float[1000];
        for (var i = 0; i < accumulated.Length; i++)
        {
            accumulated[i] += 0.5f * first[i];
            accumulated[i] += 0.5f * second[i];
        }
        var sum = new float[1000];

        RankOrderSum.Sum([.. first.Select(v => 0.5f * v), .. second.Select(v => 0.5f * v)], 2, sum);

        Assert.Equal(accumulated, sum);
        // Negative control: a reduction that drops worker 1 is told apart.
        RankOrderSum.Sum([.. first.Select(v => 0.5f * v)], 1, sum);
        Assert.NotEqual(accumulated, sum);
    }

    [Fact]
    public void Rank_order_sum_refuses_a_gather_of_the_wrong_length()
    {
        var error = Assert.Throws<ArgumentException>(() => RankOrderSum.Sum(new float[5], 2, new float[3]));
        Assert.Contains("has 5 elements; expected workers × n = 2 × 3", error.Message);
    }

    [Fact]
    public void Rank_order_sum_of_losses_is_their_sum_in_rank_order()
    {
        Assert.Equal((1e17 + 1.0) + -1e17, RankOrderSum.Sum([1e17, 1.0, -1e17]));
        Assert.Throws<ArgumentException>(() => RankOrderSum.Sum(ReadOnlySpan<double>.Empty));
    }

    [Fact]
    public void A_process_without_launcher_variables_is_no_mpi_launch()
    {
        Assert.Null(MpiLaunch.FromVariables(new Hashtable { ["PATH"] = "/usr/bin" }));
    }

    [Fact]
    public void OpenMpi_and_pmi_variables_give_rank_size_and_local_rank()
    {
        Assert.Equal(new MpiLaunch(3, 4, 1), MpiLaunch.FromVariables(new Hashtable
        {
            ["OMPI_COMM_WORLD_SIZE"] = "4", ["OMPI_COMM_WORLD_RANK"] = "3", ["OMPI_COMM_WORLD_LOCAL_RANK"] = "1",
        }));
        Assert.Equal(new MpiLaunch(2, 3, 0), MpiLaunch.FromVariables(new Hashtable
        {
            ["PMI_SIZE"] = "3", ["PMI_RANK"] = "2",
        }));
    }

    [Theory]
    [InlineData("4", "x", "OMPI_COMM_WORLD_RANK is 'x'; expected an integer ≥ 0")]
    [InlineData("0", "0", "OMPI_COMM_WORLD_SIZE is '0'; expected an integer ≥ 1")]
    [InlineData("2", "2", "rank 2 in a job of 2 processes")]
    public void Malformed_launcher_variables_are_refused_by_name(string size, string rank, string expected)
    {
        var error = Assert.Throws<ArgumentException>(() => MpiLaunch.FromVariables(new Hashtable
        {
            ["OMPI_COMM_WORLD_SIZE"] = size, ["OMPI_COMM_WORLD_RANK"] = rank,
        }));
        Assert.Contains(expected, error.Message);
    }

    [Fact]
    public void Agreement_names_each_fact_that_differs_with_every_ranks_value()
    {
        KeyValuePair<string, string>[] mine = [new("--steps", "3"), new("--batch", "2"), new("model config", "{}")];
        KeyValuePair<string, string>[] other = [new("--steps", "4"), new("--batch", "2"), new("model config", "{}")];
        byte[] Gathered(params KeyValuePair<string, string>[][] ranks) =>
            [.. ranks.SelectMany(facts => MpiGradientReducer.Encode(facts))];

        var differences = MpiGradientReducer.Differences(mine, Gathered(mine, other, mine), 3);

        Assert.Equal(["--steps (rank 0 has '3', rank 1 has '4', rank 2 has '3')"], differences);
        // Negative control: ranks that agree report nothing.
        Assert.Empty(MpiGradientReducer.Differences(mine, Gathered(mine, mine, mine), 3));
    }

    [Fact]
    public void Agreement_tells_long_values_apart_by_their_hash_beyond_the_shown_start()
    {
        var prefix = new string('a', 200);
        KeyValuePair<string, string>[] mine = [new("model config", prefix + "1")];
        KeyValuePair<string, string>[] other = [new("model config", prefix + "2")];

        var differences = MpiGradientReducer.Differences(mine,
            [.. MpiGradientReducer.Encode(mine), .. MpiGradientReducer.Encode(other)], 2);

        Assert.Single(differences);
        Assert.StartsWith("model config (rank 0 has 'aaaa", differences[0]);
    }

    [Fact]
    public void The_watchdog_reports_a_call_that_outlasts_its_timeout_once_and_not_one_that_returns()
    {
        var expired = new List<string>();
        using var watchdog = new CollectiveWatchdog(TimeSpan.FromMilliseconds(100), name =>
        {
            lock (expired)
                expired.Add(name);
        }, period: TimeSpan.FromMilliseconds(10));

        using (watchdog.Enter("MPI_Barrier"))
            Thread.Sleep(20);
        Thread.Sleep(200);
        lock (expired)
            Assert.Empty(expired);

        using (watchdog.Enter("MPI_Allgather"))
        {
            var waited = System.Diagnostics.Stopwatch.StartNew();
            while (waited.Elapsed < TimeSpan.FromSeconds(10))
            {
                lock (expired)
                {
                    if (expired.Count > 0)
                        break;
                }
                Thread.Sleep(10);
            }
            Assert.True(waited.Elapsed >= TimeSpan.FromMilliseconds(90), $"reported after {waited.Elapsed}");
            Thread.Sleep(100);
        }
        lock (expired)
            Assert.Equal(["MPI_Allgather"], expired);
    }
}
