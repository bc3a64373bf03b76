using System.Globalization;
using OnnxOutlierTools.Mitigation.Pipeline;
using OnnxOutlierTools.Text;

namespace OnnxOutlierTools.Cli.Mitigate;

/// <summary>What mitigate prints: per step its counts per rule and per-site lines, the proof of each exact stage (every
/// output's max |diff| against its bound) or the measurement of a measured one, and the before/after table of the probe
/// points that changed most. Plain text (also fit for CI logs); names from the model are escaped.</summary>
public static class MitigationSummary
{
    public const int MaxSiteLines = 12, MaxChangeRows = 16;

    public static void Write(TextWriter o, MitigateOutcome outcome)
    {
        foreach (var stage in outcome.Pipeline.Stages)
        {
            foreach (var step in stage.Steps)
            {
                string counts = step.Pass is { } p ? (p.Changed ? p.Summary() : "no change") + (p.Skipped.Count > 0 ? $", {p.Skipped.Count} skipped" : "")
                    : step.Changed ? "changed" : "no change";
                o.WriteLine(Printable.Escape($"{step.Step}: {counts}"));
                foreach (string line in step.Lines.Take(MaxSiteLines)) o.WriteLine("  " + Printable.Escape(line));
                if (step.Lines.Count > MaxSiteLines) o.WriteLine($"  ... {step.Lines.Count - MaxSiteLines} more in {MitigateRun.ReportFile}");
            }
            if (stage.Proof is { } proof)
            {
                o.WriteLine(string.Create(CultureInfo.InvariantCulture, $"  proof ({proof.Runs} window(s), bound {proof.Tolerance.Absolute:G2} + {proof.Tolerance.Relative:G2} x max |x|): {(proof.Exact ? "exact" : "NOT exact")}"));
                foreach (var d in proof.Outputs) o.WriteLine("    " + Printable.Escape(d.ToString()));
            }
            else if (stage.Measurement is { } m) o.WriteLine("  measured: " + m);
        }
        if (outcome.Changes.Count == 0) return;
        var rows = outcome.Changes
            .OrderByDescending(c => Math.Abs(Math.Log(Ratio(c.MaxAbsAfter, c.MaxAbsBefore))) + Math.Abs(Math.Log(Ratio(c.ChannelRatioAfter, c.ChannelRatioBefore))))
            .Take(MaxChangeRows).OrderBy(c => c.Block ?? -1).ThenBy(c => c.Point, StringComparer.Ordinal).ToList();
        o.WriteLine($"outlier statistics before -> after (the {rows.Count} points that changed most of {outcome.Changes.Count}; all in {MitigateRun.ReportFile}):");
        o.WriteLine($"  {"point",-34} {"max |x|",22} {"worst channel / median",26}");
        foreach (var c in rows)
            o.WriteLine(Printable.Escape(string.Create(CultureInfo.InvariantCulture,
                $"  {c.Point,-34} {c.MaxAbsBefore,10:G4} -> {c.MaxAbsAfter,-8:G4} {c.ChannelRatioBefore,12:G4} -> {c.ChannelRatioAfter,-10:G4}")));
    }

    private static double Ratio(double after, double before) =>
        before > 0 && after > 0 && double.IsFinite(before) && double.IsFinite(after) ? after / before : 1;
}
