using System.Globalization;
using System.Text;

namespace OnnxOutlierTools.Reporting.Html;

/// <summary>One model of a pipeline run (<c>onnx-outliers run</c>): the FP32 original, the mitigated model, or one of them
/// quantized by a scheme; measured against the FP32 original on the same windows.</summary>
/// <param name="Variant">Row label: <c>original</c>, <c>mitigated</c>, <c>original + w8a8-static</c>, ...</param>
/// <param name="Path">The model folder, relative to the run's folder.</param>
/// <param name="MaxAbs">max |x| over every probe point of the FP model (quantized rows: null, their FP model's figure applies).</param>
/// <param name="WorstChannelRatio">The largest channel max |x| over the median channel's, over the linear inputs.</param>
public sealed record PipelineRow(string Variant, string Path, string? Scheme, bool Mitigated, double? MaxAbs, double? WorstChannelRatio,
    string? WorstChannelPoint, double? Perplexity, double? Cosine, double? MeanKl, double? Top1, long SizeBytes, double? PromptMs,
    double? DecodeTokensPerSecond, string? Note);

/// <summary>The before/after table of a pipeline run and what is needed to reproduce it.</summary>
public sealed record PipelineTable(string Reference, string Recipe, IReadOnlyList<PipelineRow> Rows, IReadOnlyList<KeyValuePair<string, string>> Settings,
    IReadOnlyList<string> Notes);

/// <summary>The pipeline section that leads the analyze report in <c>run</c>'s report.html.</summary>
public static class PipelineSection
{
    public static string Render(PipelineTable table)
    {
        ArgumentNullException.ThrowIfNull(table);
        var html = new StringBuilder();
        bool encoder = table.Rows.Any(r => r.Cosine is not null) && table.Rows.All(r => r.Perplexity is null);
        html.Append("<section id=\"pipeline\">\n<h2>Before and after: mitigation and quantization</h2>\n");
        html.Append("<p>Every model measured against the FP32 original (").Append(HtmlText.Escape(table.Reference)).Append(") on the same windows. Recipe: ")
            .Append(HtmlText.Escape(table.Recipe)).Append(".</p>\n");
        html.Append("<table class=\"pipeline\">\n<thead><tr><th>model</th><th class=\"num\">max |x|</th><th class=\"num\">worst channel ratio</th>")
            .Append(encoder ? "<th class=\"num\">cosine</th>" : "<th class=\"num\">perplexity</th>")
            .Append("<th class=\"num\">KL vs FP32</th><th class=\"num\">top-1</th><th class=\"num\">size</th><th class=\"num\">prompt ms</th><th class=\"num\">decode tok/s</th><th>note</th></tr></thead>\n<tbody>\n");
        foreach (var row in table.Rows)
        {
            html.Append("<tr><td>").Append(HtmlText.Escape(row.Variant)).Append("</td>")
                .Append(Num(row.MaxAbs)).Append(Num(row.WorstChannelRatio, row.WorstChannelPoint))
                .Append(Num(encoder ? row.Cosine : row.Perplexity, digits: 4))
                .Append(Num(row.MeanKl, digits: 4)).Append(Num(row.Top1, digits: 4))
                .Append("<td class=\"num\">").Append(HtmlText.Escape(Size(row.SizeBytes))).Append("</td>")
                .Append(Num(row.PromptMs, digits: 2)).Append(Num(row.DecodeTokensPerSecond, digits: 1))
                .Append("<td>").Append(HtmlText.Escape(row.Note)).Append("</td></tr>\n");
        }
        html.Append("</tbody>\n</table>\n");
        if (table.Notes.Count > 0)
        {
            html.Append("<ul class=\"notes\">\n");
            foreach (string note in table.Notes) html.Append("<li>").Append(HtmlText.Escape(note)).Append("</li>\n");
            html.Append("</ul>\n");
        }
        html.Append("<dl class=\"facts\">\n");
        foreach (var (key, value) in table.Settings)
            html.Append("<dt>").Append(HtmlText.Escape(key)).Append("</dt><dd>").Append(HtmlText.Escape(value)).Append("</dd>\n");
        html.Append("</dl>\n</section>\n");
        return html.ToString();
    }

    private static string Num(double? value, string? title = null, int digits = 3)
    {
        if (value is not { } v) return "<td class=\"num\">-</td>";
        string text = double.IsFinite(v) ? (Math.Abs(v) >= 1e5 || (v != 0 && Math.Abs(v) < 1e-3) ? v.ToString("0.###e+0", CultureInfo.InvariantCulture)
            : v.ToString("F" + digits, CultureInfo.InvariantCulture)) : v.ToString(CultureInfo.InvariantCulture);
        return title is null ? $"<td class=\"num\">{HtmlText.Escape(text)}</td>" : $"<td class=\"num\" title=\"{HtmlText.Escape(title)}\">{HtmlText.Escape(text)}</td>";
    }

    private static string Size(long bytes) => bytes >= 1 << 30 ? $"{bytes / (double)(1 << 30):F2} GiB"
        : bytes >= 1 << 20 ? $"{bytes / (double)(1 << 20):F2} MiB" : $"{bytes / 1024.0:F1} KiB";
}
