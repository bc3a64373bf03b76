using System.Globalization;

namespace OnnxOutlierTools.Cli.Run;

/// <summary>The before/after table on the console.</summary>
public static class RunSummary
{
    public static void Write(TextWriter output, RunReport report)
    {
        output.WriteLine($"recipe: {string.Join(", ", report.Recipe)} ({report.RecipeWhy})");
        bool encoder = report.Rows.Any(r => r.Cosine is not null) && report.Rows.All(r => r.Perplexity is null);
        output.WriteLine($"{"model",-30} {"max|x|",9} {"ch.ratio",9} {(encoder ? "cosine" : "ppl"),9} {"KL",9} {"top-1",7} {"MiB",7} {"prompt ms",9} {"tok/s",7}");
        foreach (var r in report.Rows)
            output.WriteLine($"{r.Variant,-30} {F(r.MaxAbs, 1),9} {F(r.WorstChannelRatio, 1),9} {F(encoder ? r.Cosine : r.Perplexity, 4),9} {F(r.MeanKl, 4),9} " +
                $"{F(r.Top1, 4),7} {r.SizeBytes / 1048576.0,7:F2} {F(r.PromptMs, 2),9} {F(r.DecodeTokensPerSecond, 0),7}" + (r.Note is null ? "" : $"  ({r.Note})"));
        foreach (string note in report.Notes) output.WriteLine($"note: {note}");
    }

    private static string F(double? value, int digits) => value is { } v ? v.ToString("F" + digits, CultureInfo.InvariantCulture) : "-";
}
