using System.Globalization;
using OnnxOutlierTools.Analysis;
using OnnxOutlierTools.Probes;
using OnnxOutlierTools.Text;
using Spectre.Console;
using Spectre.Console.Rendering;
using SpectreText = Spectre.Console.Text;

namespace OnnxOutlierTools.Reporting;

/// <summary>The short console summary of an analysis: one line on what was measured, a table of the main findings
/// (every massive activation and fp16 finding, the strongest sinks, channel outliers, norm gains and W_q channels), and
/// one line of counts. On a terminal it has a rounded border and bold headers; redirected (a file, a pipe, a CI log)
/// it is plain text: no ANSI escape codes, an ASCII border, 120 columns. Model and corpus strings are shown through
/// <see cref="Printable.Escape"/> and never parsed as Spectre markup.</summary>
public static class ConsoleSummary
{
    private const int MaxSinkRows = 4, MaxChannelRows = 5, MaxGainRows = 3, MaxTriggerRows = 3;

    /// <summary>Writes to <paramref name="writer"/>; <paramref name="terminal"/> null means "a terminal when the writer is
    /// the process's stdout and stdout is not redirected".</summary>
    public static void Write(TextWriter writer, CalibrationStatistics statistics, AnalysisResult? analysis, bool? terminal = null)
    {
        bool isTerminal = terminal ?? (ReferenceEquals(writer, System.Console.Out) && !System.Console.IsOutputRedirected);
        var console = AnsiConsole.Create(new AnsiConsoleSettings
        {
            Ansi = isTerminal ? AnsiSupport.Yes : AnsiSupport.No,
            ColorSystem = isTerminal ? ColorSystemSupport.Detect : ColorSystemSupport.NoColors,
            Interactive = InteractionSupport.No,
            Out = new AnsiConsoleOutput(writer),
        });
        if (!isTerminal) console.Profile.Width = 120;
        Write(console, statistics, analysis);
    }

    public static void Write(IAnsiConsole console, CalibrationStatistics statistics, AnalysisResult? analysis)
    {
        bool plain = !console.Profile.Capabilities.Ansi;
        console.WriteLine(Printable.Escape($"{statistics.Manifest.Model}: {statistics.Tokens.ToString("N0", CultureInfo.InvariantCulture)} tokens in " +
            $"{statistics.Windows} window(s), {statistics.Points.Count} probe points"));
        if (analysis is null)
        {
            console.WriteLine("no analysis run");
            return;
        }
        var rows = Rows(analysis);
        if (rows.Count == 0)
        {
            console.WriteLine("nothing found with these settings (no massive activation, channel outlier or attention sink)");
            return;
        }
        var table = new Table { Border = plain ? TableBorder.Ascii : TableBorder.Rounded, ShowRowSeparators = false };
        foreach (var (header, right) in new[] { ("finding", false), ("where", false), ("token", false), ("channel", true), ("value", true), ("x median", true) })
        {
            var column = new TableColumn(new SpectreText(header, plain ? Style.Plain : new Style(decoration: Decoration.Bold)));
            if (right) column.RightAligned();
            if (header is "finding" or "token") column.NoWrap(); // a finding or a token broken over two lines reads as two
            table.AddColumn(column);
        }
        foreach (var r in rows)
            table.AddRow(new IRenderable[]
            {
                Cell(r.Finding), Cell(r.Where),
                Cell(r.Token is null ? "" : $"\"{r.Token.Text ?? "#" + r.Token.TokenId}\" @{r.Token.Position}"),
                Cell(r.Channel?.ToString(CultureInfo.InvariantCulture) ?? ""),
                Cell(r.Value is { } v ? FindingRows.N(v) : ""),
                Cell(r.Ratio is { } x ? FindingRows.N(x) : ""),
            });
        console.Write(table);
        console.WriteLine(Counts(analysis));
    }

    /// <summary>The rows the console shows: every massive activation and fp16 finding, the first few of the others.</summary>
    internal static IReadOnlyList<FindingRow> Rows(AnalysisResult analysis)
    {
        var all = FindingRows.From(analysis);
        return all.Where(r => r.Rank <= 1)
            .Concat(all.Where(r => r.Rank == 2).OrderByDescending(r => r.Value).Take(MaxSinkRows))
            .Concat(all.Where(r => r.Rank == 3).OrderByDescending(r => r.Ratio).Take(MaxChannelRows))
            .Concat(all.Where(r => r.Rank == 4).OrderByDescending(r => r.Ratio).Take(MaxGainRows))
            .Concat(all.Where(r => r.Rank == 5).OrderByDescending(r => r.Ratio).Take(MaxTriggerRows))
            .ToList();
    }

    private static string Counts(AnalysisResult a) =>
        $"{a.MassiveActivations.Count} massive activation(s), {a.Fp16Range.Count} fp16-range point(s), {a.AttentionSinks.Count} sink head(s), " +
        $"{a.ChannelOutliers.Count} channel outlier(s), {a.NormGainOutliers.Count} norm gain(s), {a.OutlierTriggeringChannels.Count} W_q channel(s)\n" +
        "(all of them in report.json and report.html)";

    private static SpectreText Cell(string text) => new(Printable.Escape(text));
}
