using System.Globalization;
using System.Text;

namespace RetNet.Ilgpu.Cli.Commands;

/// <summary>Console formatting: aligned tables and human-readable sizes.</summary>
internal static class Format
{
    /// <summary>Bytes as B, KiB, MiB or GiB.</summary>
    public static string Bytes(long bytes)
    {
        string[] units = ["B", "KiB", "MiB", "GiB", "TiB"];
        double value = bytes;
        var unit = 0;
        while (value >= 1024 && unit < units.Length - 1)
        {
            value /= 1024;
            unit++;
        }
        return unit == 0 ? $"{bytes} B" : string.Create(CultureInfo.InvariantCulture, $"{value:0.#} {units[unit]}");
    }

    /// <summary>A number with invariant culture and the given format.</summary>
    public static string Number(double value, string format = "0.###") =>
        value.ToString(format, CultureInfo.InvariantCulture);

    /// <summary>Renders rows as a left-aligned text table with a header rule.</summary>
    public static string Table(IReadOnlyList<string> header, IEnumerable<IReadOnlyList<string>> rows)
    {
        var all = new List<IReadOnlyList<string>> { header };
        all.AddRange(rows);
        var widths = new int[header.Count];
        foreach (var row in all)
            for (var i = 0; i < row.Count; i++)
                widths[i] = Math.Max(widths[i], row[i].Length);
        var text = new StringBuilder();
        for (var r = 0; r < all.Count; r++)
        {
            text.AppendLine(string.Join("  ", all[r].Select((cell, i) => cell.PadRight(widths[i]))).TrimEnd());
            if (r == 0)
                text.AppendLine(string.Join("  ", widths.Select(w => new string('-', w))));
        }
        return text.ToString();
    }

    /// <summary>
    /// A printer of right-aligned rows for results that arrive one by one (long benchmarks); the header is printed with
    /// the first row, so an error raised before any result stands alone.
    /// </summary>
    public static Action<IReadOnlyList<string>> StreamingTable(IReadOnlyList<string> header, IReadOnlyList<int> widths)
    {
        string Row(IReadOnlyList<string> cells) =>
            string.Join("  ", cells.Select((c, i) => c.PadLeft(widths[i]))).TrimEnd();
        var printedHeader = false;
        return cells =>
        {
            if (!printedHeader)
                Console.WriteLine(Row(header));
            printedHeader = true;
            Console.WriteLine(Row(cells));
        };
    }
}
