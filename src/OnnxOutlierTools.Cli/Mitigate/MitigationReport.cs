using System.Text.Json;
using OnnxOutlierTools.Import;
using OnnxOutlierTools.Mitigation.Pipeline;
using OnnxOutlierTools.Reporting;
using OnnxOutlierTools.Reporting.Json;

namespace OnnxOutlierTools.Cli.Mitigate;

/// <summary><c>mitigation.json</c> beside the rewritten model, schema version 1: what was asked (<c>request</c>, the command
/// line, the calibration run the statistics came from), every stage in order (its steps with their pass counts per rule,
/// skipped sites and per-site lines; for exact stages the proof: every output's max |diff|, the original's max |x| and the
/// bound; for measured stages the measurement) and the before/after figures per probe point (max |x|, worst channel
/// ratio). Enough to reproduce the model and to judge it.</summary>
public static class MitigationReport
{
    public const int SchemaVersion = 1;
    public const string FormatName = "onnx-outliers-mitigation";

    public static void Write(string path, MitigateRequest request, MitigationOutcome outcome, IReadOnlyList<PointChange> changes, RunSettings? calibration, string? commandLine)
    {
        var document = new
        {
            schemaVersion = SchemaVersion,
            format = FormatName,
            commandLine,
            request,
            calibration,
            stages = outcome.Stages.Select(s => new
            {
                exactness = s.Exactness,
                steps = s.Steps.Select(r => new
                {
                    step = r.Step,
                    counts = r.Pass?.Counts,
                    skipped = r.Pass?.Skipped.Select(k => new { rule = k.Rule, reason = k.Reason, at = k.At }),
                    lines = r.Lines,
                }),
                proof = s.Proof is null ? null : new
                {
                    exact = s.Proof.Exact,
                    runs = s.Proof.Runs,
                    tolerance = new { absolute = s.Proof.Tolerance.Absolute, relative = s.Proof.Tolerance.Relative },
                    outputs = s.Proof.Outputs.Select(o => new { output = o.Output, maxAbsDiff = o.MaxAbsDiff, referenceMaxAbs = o.ReferenceMaxAbs, bound = o.Bound, relativeToRange = o.RelativeToRange, within = o.Within }),
                },
                measurement = s.Measurement,
            }),
            beforeAfter = changes,
        };
        AtomicTextFile.Write(path, JsonSerializer.Serialize(document, ReportingJson.Options), overwrite: false);
    }
}
