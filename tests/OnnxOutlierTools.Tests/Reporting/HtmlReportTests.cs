using AngleSharp.Dom;
using AngleSharp.Html.Parser;
using OnnxOutlierTools.Analysis;
using OnnxOutlierTools.Probes;
using OnnxOutlierTools.Reporting;
using OnnxOutlierTools.Reporting.Html;

namespace OnnxOutlierTools.Tests.Reporting;

public class HtmlReportTests
{
    private static readonly Lazy<(CalibrationStatistics Statistics, AnalysisResult Analysis, string Html)> Decoder = new(() =>
    {
        var statistics = DecoderLikeStatistics.Build();
        var analysis = OutlierAnalyzer.Analyze(statistics, structure: null);
        return (statistics, analysis, HtmlReport.Render(statistics, analysis, ReportSamples.Run));
    });

    [Fact]
    public void Render_IsWellFormedHtml5()
    {
        var (document, errors) = Parse(Decoder.Value.Html);
        Assert.Empty(errors);
        Assert.Equal("html", document.Doctype?.Name);
        Assert.Equal("utf-8", document.CharacterSet.ToLowerInvariant());
        Assert.StartsWith("Activation outliers", document.Title);
    }

    [Fact]
    public void Render_IsSelfContained()
    {
        var (document, _) = Parse(Decoder.Value.Html);
        Assert.Empty(document.QuerySelectorAll("script, link, iframe, object, embed, img, video, audio, source, base"));
        foreach (var element in document.All)
            foreach (var attribute in element.Attributes)
            {
                if (attribute.Name is "xmlns" or "xmlns:xlink") continue; // namespace names, never fetched
                Assert.DoesNotContain("http:", attribute.Value, StringComparison.OrdinalIgnoreCase);
                Assert.DoesNotContain("https:", attribute.Value, StringComparison.OrdinalIgnoreCase);
                Assert.False(attribute.Name.StartsWith("on", StringComparison.Ordinal), $"event handler {attribute.Name} on <{element.LocalName}>");
                if (attribute.Name is "href" or "xlink:href" or "src") Assert.StartsWith("#", attribute.Value);
            }
        foreach (var style in document.QuerySelectorAll("style"))
            Assert.DoesNotContain("url(", style.TextContent);
        var csp = document.QuerySelector("meta[http-equiv='Content-Security-Policy']");
        Assert.NotNull(csp);
        Assert.StartsWith("default-src 'none'", csp!.GetAttribute("content"));
    }

    [Fact]
    public void Render_HasThePlotsAsInlineSvg_WithUniqueIds()
    {
        var (document, _) = Parse(Decoder.Value.Html);
        Assert.Equal(2, document.QuerySelectorAll("#massive svg").Length); // residual and residual-sum
        Assert.NotEmpty(document.QuerySelectorAll("#channels svg"));
        Assert.Single(document.QuerySelectorAll("#sinks svg"));
        foreach (var svg in document.QuerySelectorAll("svg"))
            Assert.Matches("^0 0 [0-9]+ [0-9]+$", svg.GetAttribute("viewBox") ?? "");
        var ids = document.All.Select(e => e.Id).Where(id => !string.IsNullOrEmpty(id)).ToList();
        Assert.Equal(ids.Count, ids.Distinct().Count());
        // every url(#id) a plot uses resolves in the document (a clip path of its own)
        foreach (var element in document.All.Where(e => e.GetAttribute("clip-path") is not null))
            Assert.NotNull(document.GetElementById(element.GetAttribute("clip-path")!["url(#".Length..^1]));

        string massive = document.QuerySelector("#massive")!.TextContent;
        Assert.Contains("top-1", massive);
        Assert.Contains("median |x|", massive);
        Assert.Contains("|x| (log scale)", massive);
        Assert.Contains($"ch {DecoderLikeStatistics.MassiveChannel}:", document.QuerySelector("#channels")!.TextContent);
        Assert.Contains("0.91", document.QuerySelector("#sinks")!.TextContent); // the sink head's cell label
    }

    [Fact]
    public void Render_FindingsTable_ListsTheFindings()
    {
        var (document, _) = Parse(Decoder.Value.Html);
        var rows = document.QuerySelectorAll("#findings tbody tr").Select(r => r.QuerySelectorAll("td").Select(c => c.TextContent).ToArray()).ToList();
        var massive = rows.Where(r => r[0] == "massive activation").ToList();
        Assert.Contains(massive, r => r[3] == DecoderLikeStatistics.MassiveChannel.ToString() && r[2].StartsWith("\"<s>\"", StringComparison.Ordinal));
        Assert.Contains(rows, r => r[0] == "attention sink" && r[1].EndsWith($"head {DecoderLikeStatistics.SinkHead}", StringComparison.Ordinal));
        Assert.Contains(rows, r => r[0].StartsWith("channel outlier", StringComparison.Ordinal) && r[3] == DecoderLikeStatistics.GainChannel.ToString());
        Assert.Equal(FindingRows.From(Decoder.Value.Analysis).Count, rows.Count);
        // the header names the model, the corpus and the settings
        string header = document.QuerySelector("header")!.TextContent;
        Assert.Contains(Decoder.Value.Statistics.Manifest.Model, header);
        Assert.Contains(ReportSamples.Run.Text!, header);
        Assert.Contains("massiveAbsoluteRatio 1000", header);
    }

    [Fact]
    public void Render_HostileTokenTexts_AreTextNotMarkup()
    {
        var texts = new Dictionary<int, string>(DecoderLikeStatistics.DefaultTexts())
        {
            [DecoderLikeStatistics.BosId] = "</td></table><script>alert(1)</script><s>",
            [DecoderLikeStatistics.PeriodId] = "\u001b[31m.\n\u202e",
        };
        var statistics = DecoderLikeStatistics.Build(texts);
        string html = HtmlReport.Render(statistics, OutlierAnalyzer.Analyze(statistics, structure: null), ReportSamples.Run with { Text = "<b>corpus</b>.txt" });

        var (document, errors) = Parse(html);
        Assert.Empty(errors);
        Assert.Empty(document.QuerySelectorAll("script"));
        Assert.Empty(document.QuerySelectorAll("header b"));
        Assert.DoesNotContain('\u001b', html);
        Assert.DoesNotContain('\u202e', html);
        var tokens = document.QuerySelectorAll("code.tok").Select(c => c.TextContent).ToList();
        Assert.Contains("\"</td></table><script>alert(1)</script><s>\"", tokens);
        Assert.Contains("\"\\e[31m.\\n\\u202e\"", tokens); // control characters shown, not acted on
        Assert.Contains("<b>corpus</b>.txt", document.QuerySelector("header")!.TextContent);
    }

    [Fact]
    public void Render_WithoutAnalysis_DrawsFromTheStatisticsAlone()
    {
        var statistics = DecoderLikeStatistics.Build();
        var (document, errors) = Parse(HtmlReport.Render(statistics, analysis: null));
        Assert.Empty(errors);
        Assert.Contains("No analysis was run", document.QuerySelector("#findings")!.TextContent);
        Assert.Equal(2, document.QuerySelectorAll("#massive svg").Length);
        Assert.Single(document.QuerySelectorAll("#sinks svg"));
    }

    [Fact]
    public void Write_IsAtomicAndRefusesToReplaceWithoutOverwrite()
    {
        using var temp = new TempFolder("html");
        string path = temp.Path("report.html");
        HtmlReport.Write(path, Decoder.Value.Statistics, Decoder.Value.Analysis);
        Assert.Throws<OnnxOutlierTools.IO.OutputExistsException>(() => HtmlReport.Write(path, Decoder.Value.Statistics, Decoder.Value.Analysis));
        HtmlReport.Write(path, Decoder.Value.Statistics, Decoder.Value.Analysis, overwrite: true);
        Assert.Equal(["report.html"], temp.Files());
    }

    /// <summary>Parses with AngleSharp, collecting every parse error but one AngleSharp false alarm: it compares the end
    /// tag of a camelCase SVG element (&lt;/clipPath&gt;) with the element's name case-sensitively, where HTML5 compares
    /// the lowercased name (tree construction, "any other end tag" in foreign content).</summary>
    internal static (IDocument Document, List<string> Errors) Parse(string html)
    {
        var errors = new List<string>();
        var parser = new HtmlParser();
        parser.Error += (_, e) =>
        {
            if (e is not AngleSharp.Html.Dom.Events.HtmlErrorEvent h) { errors.Add(e.ToString() ?? "parse error"); return; }
            int at = html.LastIndexOf("</", Math.Min(html.Length - 1, h.Position.Position), StringComparison.Ordinal);
            var endTag = System.Text.RegularExpressions.Regex.Match(html[Math.Max(0, at)..], "^</([a-z]+[A-Z][A-Za-z]*)>");
            if (h.Code == (int)AngleSharp.Html.Parser.HtmlParseError.TagClosingMismatch && endTag.Success) return;
            errors.Add($"{h.Position}: {h.Message}");
        };
        var document = parser.ParseDocument(html);
        return (document, errors);
    }
}
