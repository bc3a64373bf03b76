using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using OnnxOutlierTools.Analysis;
using OnnxOutlierTools.Import;
using OnnxOutlierTools.Probes;
using OnnxOutlierTools.Reporting.Json;
using OnnxOutlierTools.Reporting.Plots;

namespace OnnxOutlierTools.Reporting.Html;

/// <summary>
/// <c>report.html</c>: one self-contained page (inline SVG plots from OxyPlot, inline CSS, no script, no external
/// request: a Content-Security-Policy of <c>default-src 'none'</c> makes the browser refuse any that slipped in). Reading
/// order: header (model, corpus, settings), the findings at a glance, the massive-activation plots per block, per-channel
/// max at the worst points, the attention-sink heat map, the findings table, notes and skipped probes, how to reproduce.
/// Every string from the model or the corpus goes through <see cref="HtmlText.Escape"/>.
/// </summary>
public static class HtmlReport
{
    /// <summary>Channel-outlier rows shown in the table (all of them are in report.json).</summary>
    public const int MaxChannelOutlierRows = 40;

    public static void Write(string path, CalibrationStatistics statistics, AnalysisResult? analysis, RunSettings? run = null, bool overwrite = false,
        string? leadingSection = null) =>
        AtomicTextFile.Write(path, Render(statistics, analysis, run, leadingSection), overwrite);

    /// <param name="leadingSection">Rendered HTML placed right after the header (the pipeline's before/after table,
    /// <see cref="PipelineSection"/>): the rest is the analysis of the original model.</param>
    public static string Render(CalibrationStatistics statistics, AnalysisResult? analysis, RunSettings? run = null, string? leadingSection = null)
    {
        ArgumentNullException.ThrowIfNull(statistics);
        var html = new StringBuilder(64 * 1024);
        string model = statistics.Manifest.Model;
        html.Append("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n")
            .Append("<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; img-src data:\">\n")
            .Append("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n")
            .Append("<title>Activation outliers: ").Append(HtmlText.Escape(Path.GetFileName(model.TrimEnd('/', '\\')) is { Length: > 0 } f ? f : model)).Append("</title>\n")
            .Append("<style>\n").Append(Css).Append("</style>\n</head>\n<body>\n<main>\n");
        Header(html, statistics, analysis, run);
        if (leadingSection is not null) html.Append(leadingSection);
        AtAGlance(html, statistics, analysis);
        MassivePlots(html, statistics, analysis);
        ChannelPlots(html, statistics);
        SinkPlot(html, statistics);
        FindingsTable(html, analysis);
        Notes(html, statistics, analysis);
        Reproduce(html, statistics, analysis, run);
        html.Append("</main>\n</body>\n</html>\n");
        return html.ToString();
    }

    private static void Header(StringBuilder html, CalibrationStatistics statistics, AnalysisResult? analysis, RunSettings? run)
    {
        var manifest = statistics.Manifest;
        html.Append("<header>\n<h1>Activation outliers <span class=\"model\">").Append(HtmlText.Escape(manifest.Model)).Append("</span></h1>\n");
        html.Append("<dl class=\"facts\">\n");
        Fact(html, "corpus", run?.Text ?? run?.Ids ?? "(fed by the caller)");
        Fact(html, "tokens", $"{HtmlText.Int(statistics.Tokens)} in {HtmlText.Int(statistics.Windows)} window(s)" +
            (run?.SequenceLength is { } s ? $" of up to {s}" : "") + (run?.MaxTokens is { } m ? $", budget {HtmlText.Int(m)}" : ""), raw: true);
        if (run?.Tokenizer is not null) Fact(html, "tokenizer", run.Tokenizer + (run.TokenizerKind is null ? "" : $" ({run.TokenizerKind})"));
        if (run?.Bos is not null) Fact(html, "BOS", run.Bos + (run.BosAdded is { } added ? (added ? " (added)" : " (not added)") : ""));
        if (run?.Device is not null) Fact(html, "device", run.Device + (run.DeviceUsed is null || run.DeviceUsed == run.Device ? "" : $" (ran on {run.DeviceUsed})"));
        Fact(html, "probes", $"{manifest.Points.Count} points ({string.Join(", ", manifest.Points.GroupBy(p => p.Kind).Select(g => $"{g.Count()} {Kind(g.Key)}"))})" +
            (manifest.Skipped.Count > 0 ? $", {manifest.Skipped.Count} skipped" : ""));
        Fact(html, "probe settings", $"top-k {manifest.Settings.TopK}, attention positions {manifest.Settings.AttentionPositions}, |x| threshold {manifest.Settings.AboveThreshold.ToString(CultureInfo.InvariantCulture)}");
        if (analysis is not null) Fact(html, "analysis settings", Flatten(JsonSerializer.SerializeToNode(analysis.Settings, ReportingJson.Options)));
        if (run?.Finished is { } when) Fact(html, "finished", when.ToUniversalTime().ToString("yyyy-MM-dd HH:mm:ss 'UTC'", CultureInfo.InvariantCulture));
        if (run?.ToolVersion is not null) Fact(html, "tool", "onnx-outliers " + run.ToolVersion);
        html.Append("</dl>\n</header>\n");
    }

    private static void AtAGlance(StringBuilder html, CalibrationStatistics statistics, AnalysisResult? analysis)
    {
        html.Append("<section id=\"glance\">\n<h2>At a glance</h2>\n<ul class=\"glance\">\n");
        if (analysis is null)
        {
            html.Append("<li class=\"none\">No analysis was run: the pictures below come from the statistics alone.</li>\n");
        }
        else
        {
            Glance(html, analysis.MassiveActivations.Count, "massive activation|massive activations", analysis.MassiveActivations.FirstOrDefault() is { } ma
                ? $"largest {HtmlText.Num(ma.Peak.Value ?? ma.Peak.Abs)} in channel {ma.Channel} at {HtmlText.Escape(ma.Peak.Point.Id)} on {HtmlText.Token(ma.Peak.Token.TokenId, ma.Peak.Token.Text)} (position {ma.Peak.Token.Position}), {HtmlText.Num(ma.Peak.Ratio)}x the median; {HtmlText.Escape(FindingRows.Birth(ma.Birth))}"
                : "none: no |x| passes the Sun et al. or the relative rule");
            if (analysis.MassiveActivationTokens.Count > 0)
                Glance(html, analysis.MassiveActivationTokens.Count, "token carrying them|tokens carrying them", string.Join(", ", analysis.MassiveActivationTokens.Take(6).Select(t =>
                    $"{HtmlText.Token(t.TokenId, t.Text)} ({Category(t.Category)}, position{(t.Positions.Count > 1 ? "s" : "")} {string.Join(", ", t.Positions.Take(4))}{(t.Positions.Count > 4 ? ", ..." : "")})")));
            Glance(html, analysis.Fp16Range.Count, "point near or above the fp16 max|points near or above the fp16 max", analysis.Fp16Range.Count == 0 ? "every |x| is more than 4x below 65504" :
                string.Join(", ", analysis.Fp16Range.Take(4).Select(f => $"{HtmlText.Escape(f.Point.Id)} ({HtmlText.Num(f.MaxAbs)})")));
            Glance(html, analysis.ChannelOutliers.Count, "channel-wise outlier|channel-wise outliers", analysis.ChannelOutliers.Count == 0 ? "none at the linear inputs" :
                $"in {analysis.ChannelOutliers.Select(c => c.Point.Id).Distinct().Count()} linear input(s); worst: channel {analysis.ChannelOutliers.MaxBy(c => c.Ratio)!.Channel} at {HtmlText.Escape(analysis.ChannelOutliers.MaxBy(c => c.Ratio)!.Point.Id)}, {HtmlText.Num(analysis.ChannelOutliers.Max(c => c.Ratio))}x the median channel");
            Glance(html, analysis.AttentionSinks.Count, "attention sink head|attention sink heads", analysis.AttentionSinks.Count == 0
                ? (statistics.Manifest.Points.Any(p => p.Kind == ProbeKind.AttentionProbabilities) ? "no head puts most of its mass on one position" : "attention was not probed")
                : $"on position{(analysis.AttentionSinks.Select(s => s.Position).Distinct().Count() > 1 ? "s" : "")} {string.Join(", ", analysis.AttentionSinks.Select(s => s.Position).Distinct().Order())}; strongest {HtmlText.Num(analysis.AttentionSinks.Max(s => s.Mass))}");
            if (analysis.NormGainOutliers.Count > 0) Glance(html, analysis.NormGainOutliers.Count, "norm gain outlier|norm gain outliers", "large |gamma| entries (see the table)");
            if (analysis.OutlierTriggeringChannels.Count > 0) Glance(html, analysis.OutlierTriggeringChannels.Count, "W_q trigger channel|W_q trigger channels", "input channels that dominate a query projection");
        }
        html.Append("</ul>\n</section>\n");
    }

    private static void MassivePlots(StringBuilder html, CalibrationStatistics statistics, AnalysisResult? analysis)
    {
        html.Append("<section id=\"massive\">\n<h2>Massive activations per block</h2>\n")
            .Append("<p class=\"lead\">Top-1, top-2 and top-3 |x| and the median |x| at each block (log scale). A massive activation shows as top lines ")
            .Append("jumping orders of magnitude above a flat median where it is born and staying there, carried by the residual stream.</p>\n");
        double threshold = analysis?.Settings.MassiveAbsolute ?? 100;
        int drawn = 0;
        foreach (var kind in new[] { ProbeKind.Residual, ProbeKind.ResidualSum })
            if (MassiveActivationPlot.Build(statistics, kind, threshold) is { } plot)
            {
                Figure(html, SvgPlot.Render(plot, MassiveActivationPlot.Width, MassiveActivationPlot.Height, $"massive-{Kind(kind)}"), $"massive-{Kind(kind)}");
                drawn++;
            }
        if (drawn == 0) html.Append("<p class=\"none\">No residual-stream point was probed (add <code>--probe residual</code>).</p>\n");
        html.Append("</section>\n");
    }

    private static void ChannelPlots(StringBuilder html, CalibrationStatistics statistics)
    {
        html.Append("<section id=\"channels\">\n<h2>Per-channel max at the worst points</h2>\n")
            .Append("<p class=\"lead\">max |x| of every channel over all tokens (log scale); channels at 10x or more of the median channel are labelled.</p>\n");
        var picks = PointSelection.WorstPoints(statistics);
        for (int i = 0; i < picks.Count; i++)
        {
            var (point, why) = picks[i];
            Figure(html, SvgPlot.Render(ChannelMaxPlot.Build(point, statistics[point.Id]!, why), ChannelMaxPlot.Width, ChannelMaxPlot.Height, $"channels{i}"), $"channels-{point.Id}");
        }
        if (picks.Count == 0) html.Append("<p class=\"none\">No activation point has statistics.</p>\n");
        html.Append("</section>\n");
    }

    private static void SinkPlot(StringBuilder html, CalibrationStatistics statistics)
    {
        html.Append("<section id=\"sinks\">\n<h2>Attention sinks</h2>\n");
        var plot = AttentionSinkPlot.Build(statistics, statistics.Manifest.Settings.AttentionPositions);
        if (plot is null)
        {
            var skipped = statistics.Manifest.Skipped.Where(s => s.Kind == ProbeKind.AttentionProbabilities).ToList();
            html.Append("<p class=\"none\">No attention mass was measured")
                .Append(skipped.Count > 0 ? $": {skipped.Count} attention point(s) skipped, e.g. {HtmlText.Escape(skipped[0].Id)}: {HtmlText.Escape(skipped[0].Reason)}" : "")
                .Append(".</p>\n");
        }
        else
        {
            int height = AttentionSinkPlot.Height(AttentionSinkPlot.Cells(statistics));
            Figure(html, SvgPlot.Render(plot, AttentionSinkPlot.Width, height, "sinks"), "sinks-heat-map");
        }
        html.Append("</section>\n");
    }

    private static void FindingsTable(StringBuilder html, AnalysisResult? analysis)
    {
        html.Append("<section id=\"findings\">\n<h2>Findings</h2>\n");
        if (analysis is null)
        {
            html.Append("<p class=\"none\">No analysis was run.</p>\n</section>\n");
            return;
        }
        var rows = FindingRows.From(analysis);
        if (rows.Count == 0)
        {
            html.Append("<p class=\"none\">Nothing found with these settings.</p>\n</section>\n");
            return;
        }
        var channelRows = rows.Where(r => r.Rank == 3).ToList();
        var shown = rows.Where(r => r.Rank != 3).Concat(channelRows.OrderByDescending(r => r.Ratio).Take(MaxChannelOutlierRows)).OrderBy(r => r.Rank).ToList();
        html.Append("<table class=\"findings\">\n<thead><tr><th>finding</th><th>where</th><th>token</th><th>channel</th><th class=\"num\">value</th><th class=\"num\">x median</th><th>detail</th></tr></thead>\n<tbody>\n");
        foreach (var r in shown)
        {
            html.Append("<tr class=\"rank").Append(r.Rank).Append("\"><td>").Append(HtmlText.Escape(r.Finding)).Append("</td><td>").Append(HtmlText.Escape(r.Where)).Append("</td><td class=\"tok\">")
                .Append(r.Token is null ? "" : HtmlText.Token(r.Token.TokenId, r.Token.Text) + $" <span class=\"pos\">@{r.Token.Position}</span>")
                .Append("</td><td class=\"num\">").Append(r.Channel?.ToString(CultureInfo.InvariantCulture) ?? "")
                .Append("</td><td class=\"num\">").Append(HtmlText.Num(r.Value))
                .Append("</td><td class=\"num\">").Append(HtmlText.Num(r.Ratio))
                .Append("</td><td>").Append(HtmlText.Escape(r.Detail)).Append("</td></tr>\n");
        }
        html.Append("</tbody>\n</table>\n");
        if (channelRows.Count > MaxChannelOutlierRows)
            html.Append("<p class=\"more\">").Append(channelRows.Count - MaxChannelOutlierRows).Append(" more channel outliers (smaller ratios) are listed in report.json.</p>\n");
        html.Append("</section>\n");
    }

    private static void Notes(StringBuilder html, CalibrationStatistics statistics, AnalysisResult? analysis)
    {
        var notes = analysis?.Notes ?? [];
        var skipped = statistics.Manifest.Skipped;
        if (notes.Count == 0 && skipped.Count == 0) return;
        html.Append("<section id=\"notes\">\n<h2>Notes and skipped probes</h2>\n<ul class=\"notes\">\n");
        foreach (var s in skipped)
            html.Append("<li><b>skipped</b> <code>").Append(HtmlText.Escape(s.Id)).Append("</code>: ").Append(HtmlText.Escape(s.Reason)).Append("</li>\n");
        foreach (var n in notes)
            html.Append("<li><b>").Append(HtmlText.Escape(JsonNamingPolicy.CamelCase.ConvertName(n.Kind.ToString()))).Append("</b> <code>")
                .Append(HtmlText.Escape(n.Subject)).Append("</code>: ").Append(HtmlText.Escape(n.Message)).Append("</li>\n");
        html.Append("</ul>\n</section>\n");
    }

    private static void Reproduce(StringBuilder html, CalibrationStatistics statistics, AnalysisResult? analysis, RunSettings? run)
    {
        html.Append("<footer id=\"reproduce\">\n<h2>Reproduce</h2>\n");
        if (run?.CommandLine is not null) html.Append("<pre>").Append(HtmlText.Escape(run.CommandLine)).Append("</pre>\n");
        html.Append("<p>stats.json (schema ").Append(Stats.StatsFile.CurrentSchemaVersion).Append(") holds every statistic these pictures are drawn from; ")
            .Append("report.json").Append(analysis is null ? "" : $" (schema {ReportJson.CurrentSchemaVersion})").Append(" holds the findings and every setting that produced them.")
            .Append(run?.TextSha256 is null ? "" : $" Corpus SHA-256 <code>{HtmlText.Escape(run.TextSha256)}</code>.").Append("</p>\n</footer>\n");
    }

    private static void Figure(StringBuilder html, string svg, string id) =>
        html.Append("<figure id=\"").Append(HtmlText.Escape(id)).Append("\">\n").Append(svg).Append("\n</figure>\n");

    private static void Fact(StringBuilder html, string name, string value, bool raw = false) =>
        html.Append("<dt>").Append(HtmlText.Escape(name)).Append("</dt><dd>").Append(raw ? value : HtmlText.Escape(value)).Append("</dd>\n");

    /// <param name="what">singular|plural, or one form for both.</param>
    private static void Glance(StringBuilder html, int count, string what, string detailHtml)
    {
        var forms = what.Split('|');
        string noun = count == 1 || forms.Length == 1 ? forms[0] : forms[1];
        html.Append("<li class=\"").Append(count > 0 ? "found" : "clear").Append("\"><span class=\"count\">").Append(count)
            .Append("</span> ").Append(HtmlText.Escape(noun)).Append(": ").Append(detailHtml).Append("</li>\n");
    }

    private static string Flatten(JsonNode? node) =>
        node is JsonObject obj
            ? string.Join(", ", obj.Select(p => $"{p.Key} {(p.Value is JsonArray a ? string.Join("/", a.Select(v => v?.ToString())) : p.Value?.ToString())}"))
            : node?.ToJsonString() ?? "";

    internal static string Kind(ProbeKind kind) => kind switch
    {
        ProbeKind.Embedding => "embedding",
        ProbeKind.Residual => "residual",
        ProbeKind.ResidualSum => "residual-sum",
        ProbeKind.AttentionInput => "attention-input",
        ProbeKind.OutputProjectionInput => "o-input",
        ProbeKind.FfnInput => "ffn-input",
        ProbeKind.DownInput => "down-input",
        ProbeKind.AttentionProbabilities => "attention",
        _ => "tensor",
    };

    private static string Category(TokenCategory c) => c switch
    {
        TokenCategory.FirstPosition => "first position",
        TokenCategory.Delimiter => "delimiter",
        _ => "other",
    };

    private const string Css = """
        :root { --ink: #222; --grey: #666; --line: #ddd; --accent: #d55e00; --ok: #009e73; }
        * { box-sizing: border-box; }
        body { margin: 0; background: #f6f6f4; color: var(--ink); font: 15px/1.45 Arial, "Liberation Sans", Helvetica, sans-serif; }
        main { max-width: 1180px; margin: 0 auto; padding: 20px 28px 40px; background: #fff; }
        h1 { font-size: 26px; margin: 4px 0 10px; }
        h1 .model { font-weight: normal; color: var(--grey); font-size: 20px; word-break: break-all; }
        h2 { font-size: 20px; margin: 28px 0 8px; padding-bottom: 4px; border-bottom: 2px solid var(--line); }
        dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 3px 16px; margin: 0; font-size: 14px; }
        dl.facts dt { color: var(--grey); }
        dl.facts dd { margin: 0; word-break: break-word; }
        ul.glance { list-style: none; padding: 0; margin: 0; font-size: 16px; }
        ul.glance li { padding: 6px 10px; margin: 4px 0; border-left: 5px solid var(--ok); background: #f3faf7; }
        ul.glance li.found { border-left-color: var(--accent); background: #fdf3ec; }
        ul.glance .count { display: inline-block; min-width: 2.2em; font-weight: bold; font-size: 18px; }
        p.lead { color: var(--grey); margin: 4px 0 10px; }
        p.none { color: var(--grey); font-style: italic; }
        figure { margin: 10px 0 18px; }
        figure svg { display: block; max-width: 100%; height: auto; }
        code, pre { font-family: "DejaVu Sans Mono", Consolas, monospace; font-size: 13px; }
        code.tok { background: #eef; padding: 0 3px; border-radius: 3px; white-space: pre; }
        pre { background: #f4f4f4; padding: 8px 10px; overflow-x: auto; white-space: pre-wrap; }
        table.findings, table.pipeline { border-collapse: collapse; width: 100%; font-size: 13.5px; }
        table.findings th, table.findings td, table.pipeline th, table.pipeline td { border-bottom: 1px solid var(--line); padding: 5px 7px; text-align: left; vertical-align: top; }
        table.findings th, table.pipeline th { background: #f0f0f0; position: sticky; top: 0; }
        table.findings td.num, table.findings th.num, table.pipeline td.num, table.pipeline th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
        table.findings tr.rank0 td:first-child, table.findings tr.rank1 td:first-child { color: var(--accent); font-weight: bold; }
        .pos { color: var(--grey); font-size: 12px; }
        td.tok { white-space: nowrap; }
        ul.notes { font-size: 14px; color: #444; }
        p.more { color: var(--grey); font-size: 13px; }
        footer { margin-top: 24px; font-size: 14px; color: #444; }
        """;
}
