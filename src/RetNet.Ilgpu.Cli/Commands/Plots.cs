using RetNet.Ilgpu.Benchmarks;
using ScottPlot;

namespace RetNet.Ilgpu.Cli.Commands;

/// <summary>The pictures of <c>bench decode --plot</c>, <c>bench train --plot</c> and <c>bench serve --plot</c>: one
/// PNG, panels side by side, one line per model (and batch), written to a temporary name and renamed.</summary>
internal static class Plots
{
    private const int PanelWidth = 640, Height = 420;

    /// <summary>ms/token against position, and state (RetNet) or KV cache (Transformer) bytes against position.</summary>
    public static void Decode(string path, IReadOnlyList<DecodeBenchmarkResult> results, string title)
    {
        var groups = results.GroupBy(r => (r.Model, r.Batch)).ToList();
        Save(path, title,
            ("decoding cost by position", "position", "ms per token (one step of the batch)", groups.Select(g =>
                (Label(g.Key.Model, g.Key.Batch), g.Select(r => (double)r.Position).ToArray(), g.Select(r => r.MsPerToken).ToArray()))),
            ("decoding memory by position", "position", "state / KV cache MiB", groups.Select(g =>
                (Label(g.Key.Model, g.Key.Batch), g.Select(r => (double)r.Position).ToArray(),
                    g.Select(r => r.StateBytes / 1048576.0).ToArray()))));
    }

    /// <summary>Training tokens/s against sequence length, and peak device bytes against sequence length.</summary>
    public static void Train(string path, IReadOnlyList<TrainBenchmarkResult> results, string title)
    {
        var groups = results.GroupBy(r => r.Model).ToList();
        Save(path, title,
            ("training throughput by length", "sequence length T", "tokens per second", groups.Select(g =>
                (g.Key, g.Select(r => (double)r.SeqLen).ToArray(), g.Select(r => r.TokensPerSecond).ToArray()))),
            ("training memory by length", "sequence length T", "peak device MiB", groups.Select(g =>
                (g.Key, g.Select(r => (double)r.SeqLen).ToArray(), g.Select(r => r.PeakBytes / 1048576.0).ToArray()))));
    }

    /// <summary>Aggregate tokens/s, inter-token latency p50 and time to first token p50 against concurrency.</summary>
    public static void Serve(string path, IReadOnlyList<ServeBenchmarkResult> results, string title)
    {
        var groups = results.GroupBy(r => r.Model).ToList();
        (string, double[], double[]) Line(IGrouping<string, ServeBenchmarkResult> g, Func<ServeBenchmarkResult, double> y) =>
            (g.Key, g.Select(r => (double)r.Concurrency).ToArray(), g.Select(y).ToArray());
        Save(path, title,
            ("throughput", "concurrent requests", "generated tokens per second", groups.Select(g => Line(g, r => r.TokensPerSecond))),
            ("inter-token latency", "concurrent requests", "ITL p50 ms", groups.Select(g => Line(g, r => r.ItlP50Ms))),
            ("time to first token", "concurrent requests", "TTFT p50 ms", groups.Select(g => Line(g, r => r.TtftP50Ms))));
    }

    private static string Label(string model, int batch) => $"{model}, batch {batch}";

    private static void Save(string path, string title,
        params (string Title, string X, string Y, IEnumerable<(string Label, double[] Xs, double[] Ys)> Lines)[] panels)
    {
        var full = Path.GetFullPath(path);
        Directory.CreateDirectory(Path.GetDirectoryName(full)!);
        var multiplot = new Multiplot();
        multiplot.AddPlots(panels.Length);
        multiplot.Layout = new ScottPlot.MultiplotLayouts.Columns();
        for (var i = 0; i < panels.Length; i++)
        {
            var plot = multiplot.GetPlot(i);
            var (panelTitle, x, y, lines) = panels[i];
            foreach (var (label, xs, ys) in lines)
                plot.Add.Scatter(xs, ys).LegendText = label;
            plot.Title($"{title}: {panelTitle}", size: 13);
            plot.Axes.Bottom.Label.Text = x;
            plot.Axes.Left.Label.Text = y;
            plot.ShowLegend(Alignment.UpperLeft);
        }
        // ScottPlot picks the format from the extension: write a temporary .png beside the target, then rename.
        var temporary = Path.Combine(Path.GetDirectoryName(full)!, $".{Path.GetFileNameWithoutExtension(full)}.{Guid.NewGuid():N}.png");
        try
        {
            multiplot.SavePng(temporary, PanelWidth * panels.Length, Height);
            File.Move(temporary, full, overwrite: true);
        }
        finally
        {
            if (File.Exists(temporary))
                File.Delete(temporary);
        }
        Console.WriteLine($"wrote {full}");
    }
}
