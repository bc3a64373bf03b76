using System.Text.Json;
using OnnxOutlierTools.Analysis;
using OnnxOutlierTools.Import;
using OnnxOutlierTools.Probes;
using OnnxOutlierTools.Reporting.Json;

namespace OnnxOutlierTools.Reporting;

/// <summary>
/// <c>report.json</c>: the findings and every setting that produced them. Schema version 1:
/// <code>
/// {
///   "schemaVersion": 1, "format": "onnx-outliers-report", "nonFiniteNumbers": "...",
///   "model": "...",                       // as the probe manifest names it
///   "run": { text, textSha256, ids, tokenizer, ..., commandLine } or null,   // how the corpus was fed (RunSettings)
///   "probes": { "settings": { kinds, tensors, topK, attentionPositions, aboveThreshold },
///               "points": 36, "skipped": [ { id, kind, block, reason } ] },
///   "statsFile": "stats.json" or null,    // the statistics the findings were computed from, next to this file
///   "analysis": { schemaVersion, settings: { every threshold }, corpus, massiveActivations, massiveActivationTokens,
///                 fp16Range, channelOutliers, normGainOutliers, outlierTriggeringChannels, attentionSinks,
///                 streamProfile, notes }   // Analysis.AnalysisResult as it stands
/// }
/// </code>
/// Re-running: the same model, <c>run</c> and <c>probes.settings</c> give the same stats.json; the analysis alone can be
/// re-run from stats.json with <c>analysis.settings</c>. Non-finite numbers as in stats.json ("NaN", "Infinity", "-Infinity").
/// </summary>
public static class ReportJson
{
    public const int CurrentSchemaVersion = 1;
    public const string FormatName = "onnx-outliers-report";

    public static void Write(string path, CalibrationStatistics statistics, AnalysisResult analysis, RunSettings? run = null,
        string? statsFile = "stats.json", bool overwrite = false) =>
        AtomicTextFile.Write(path, ToJson(statistics, analysis, run, statsFile), overwrite);

    public static string ToJson(CalibrationStatistics statistics, AnalysisResult analysis, RunSettings? run = null, string? statsFile = "stats.json")
    {
        ArgumentNullException.ThrowIfNull(statistics);
        ArgumentNullException.ThrowIfNull(analysis);
        var document = new ReportDocument
        {
            Model = statistics.Manifest.Model,
            Run = run,
            Probes = new ProbeSummary(statistics.Manifest.Settings, statistics.Manifest.Points.Count, statistics.Manifest.Skipped),
            StatsFile = statsFile,
            Analysis = analysis,
        };
        return JsonSerializer.Serialize(document, ReportingJson.Options);
    }

    /// <summary>The settings a report was made with, read back (to re-run the analysis from its stats.json with the same
    /// thresholds). A <see cref="FormatException"/> (one line) says what is wrong.</summary>
    public static (AnalysisSettings Analysis, ProbeSettings Probes, RunSettings? Run) ReadSettings(string json)
    {
        try
        {
            using var doc = JsonDocument.Parse(json);
            var root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object || !root.TryGetProperty("format", out var format) || format.GetString() != FormatName)
                throw new FormatException($"not a report file (no \"format\": \"{FormatName}\")");
            int version = root.GetProperty("schemaVersion").GetInt32();
            if (version != CurrentSchemaVersion) throw new FormatException($"schema version {version}; this tool reads version {CurrentSchemaVersion}");
            var analysis = root.GetProperty("analysis").GetProperty("settings").Deserialize<AnalysisSettings>(ReportingJson.Options)!;
            var probes = root.GetProperty("probes").GetProperty("settings").Deserialize<ProbeSettings>(ReportingJson.Options)!;
            var run = root.GetProperty("run").Deserialize<RunSettings?>(ReportingJson.Options);
            return (analysis, probes, run);
        }
        catch (Exception ex) when (ex is JsonException or KeyNotFoundException or InvalidOperationException)
        {
            throw new FormatException($"invalid report JSON: {Text.Printable.FirstLine(ex.Message)}", ex);
        }
    }

    private sealed record ReportDocument
    {
        public int SchemaVersion { get; init; } = CurrentSchemaVersion;
        public string Format { get; init; } = FormatName;
        public string NonFiniteNumbers { get; init; } = Stats.StatsFile.NonFiniteNote;
        public required string Model { get; init; }
        public required RunSettings? Run { get; init; }
        public required ProbeSummary Probes { get; init; }
        public required string? StatsFile { get; init; }
        public required AnalysisResult Analysis { get; init; }
    }

    private sealed record ProbeSummary(ProbeSettings Settings, int Points, IReadOnlyList<SkippedProbe> Skipped);
}
