using System.Globalization;
using OnnxOutlierTools.Text;

namespace OnnxOutlierTools.Cli.Quantize;

/// <summary>What quantize prints: the scheme with its linear counts per role and per rule, one line per site (its linears and
/// how its activation is quantized), what was left in float and why, the sizes, the comparison with the original, and with
/// --attribute the costliest sites. Names from the model are escaped.</summary>
public static class QuantizationSummary
{
    public const int MaxSkippedLines = 8;

    public static void Write(TextWriter o, QuantizeOutcome outcome, int attributeTop)
    {
        var result = outcome.Result;
        string roles = string.Join(", ", outcome.Selection.CountsByRole().Select(r => $"{r.Key} {r.Value}"));
        o.WriteLine(Printable.Escape($"{result.Scheme}: {result.LinearCount} linear(s) in {result.Sites.Count} site(s) quantized ({roles})"));
        o.WriteLine("  nodes per rule: " + string.Join(", ", result.Counts.Where(c => c.Value > 0).Select(c => $"{c.Key}={c.Value}")));
        o.WriteLine($"  {"site",-22} {"linears",-22} activation");
        foreach (var site in result.Sites)
        {
            string linears = string.Join(", ", site.Linears.Select(l => l.Split(' ')[0]));
            o.WriteLine(Printable.Escape($"  {site.Id,-22} {(linears.Length == 0 ? site.Kind : linears),-22} {site.Activation ?? "weight-only"}"));
        }
        foreach (var skipped in result.Skipped.Take(MaxSkippedLines)) o.WriteLine(Printable.Escape($"  left in float: {skipped}"));
        if (result.Skipped.Count > MaxSkippedLines) o.WriteLine($"  ... {result.Skipped.Count - MaxSkippedLines} more in {QuantizeRun.ReportFile}");
        o.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"  size: {Megabytes(outcome.OriginalBytes)} -> {Megabytes(outcome.QuantizedBytes)} ({(double)outcome.QuantizedBytes / Math.Max(1, outcome.OriginalBytes):P0})"));
        if (outcome.Divergence is { } d) o.WriteLine($"  vs the original on {d.Windows} window(s): {d}");
        if (outcome.Attribution is { } a)
        {
            o.WriteLine($"error attribution ({a.Scheme}, each site quantized alone, {a.Windows} window(s), {a.Positions} positions; all {a.Sites.Count} in {QuantizeRun.ReportFile}):");
            o.WriteLine($"  {"rank",4} {"site",-24} {"mean KL",10} {"max KL",10} {"top-1",8}");
            foreach (var s in a.Sites.Take(attributeTop))
                o.WriteLine(Printable.Escape(string.Create(CultureInfo.InvariantCulture, $"  {s.Rank,4} {s.Site,-24} {s.MeanKl,10:G4} {s.MaxKl,10:G4} {s.Top1Agreement,8:P1}")));
        }
    }

    private static string Megabytes(long bytes) => string.Create(CultureInfo.InvariantCulture, $"{bytes / 1e6:F2} MB");
}
