using OnnxOutlierTools.Analysis;
using OnnxOutlierTools.Reporting;

namespace OnnxOutlierTools.Tests.Reporting;

public class ConsoleSummaryTests
{
    [Fact]
    public void Write_Redirected_IsPlainTextTable()
    {
        var statistics = DecoderLikeStatistics.Build();
        var writer = new StringWriter();
        ConsoleSummary.Write(writer, statistics, OutlierAnalyzer.Analyze(statistics, structure: null), terminal: false);
        string text = writer.ToString();
        if (Environment.GetEnvironmentVariable("REPORT_SCREENSHOT_DIR") is { Length: > 0 } dir) File.WriteAllText(Path.Combine(dir, "summary.txt"), text);

        Assert.DoesNotContain('\u001b', text);
        Assert.DoesNotContain(text, c => c is >= '\u2500' and <= '\u257f'); // no box-drawing characters either
        var lines = text.Split('\n');
        Assert.StartsWith(statistics.Manifest.Model + ": 128 tokens in 4 window(s)", lines[0]);
        Assert.Contains(lines, l => l.Contains("| finding", StringComparison.Ordinal) && l.Contains("x median", StringComparison.Ordinal));
        Assert.Contains(lines, l => l.Contains("massive activation", StringComparison.Ordinal) && l.Contains("\"<s>\" @0", StringComparison.Ordinal)
            && System.Text.RegularExpressions.Regex.IsMatch(l, $@"\|\s+{DecoderLikeStatistics.MassiveChannel} \|"));
        Assert.Contains(lines, l => l.Contains("attention sink", StringComparison.Ordinal));
        Assert.All(lines, l => Assert.True(l.TrimEnd('\r').Length <= 120, $"line longer than 120 columns: {l}"));
        Assert.StartsWith("2 massive activation(s), 0 fp16-range point(s), 4 sink head(s), 11 channel outlier(s)", lines.First(l => l.Contains("massive activation(s)", StringComparison.Ordinal)));
    }

    [Fact]
    public void Write_Terminal_UsesAnsiStyles()
    {
        var statistics = DecoderLikeStatistics.Build();
        var writer = new StringWriter();
        ConsoleSummary.Write(writer, statistics, OutlierAnalyzer.Analyze(statistics, structure: null), terminal: true);
        Assert.Contains("\u001b[1m", writer.ToString()); // bold headers
    }

    [Fact]
    public void Write_HostileTokenText_EscapedAndNotMarkup()
    {
        var texts = new Dictionary<int, string>(DecoderLikeStatistics.DefaultTexts()) { [DecoderLikeStatistics.BosId] = "[red]\u001b]0;pwned\u0007\n" };
        var statistics = DecoderLikeStatistics.Build(texts);
        var writer = new StringWriter();
        ConsoleSummary.Write(writer, statistics, OutlierAnalyzer.Analyze(statistics, structure: null), terminal: false);
        string text = writer.ToString();
        if (Environment.GetEnvironmentVariable("REPORT_SCREENSHOT_DIR") is { Length: > 0 } dir) File.WriteAllText(Path.Combine(dir, "summary-hostile.txt"), text);
        Assert.DoesNotContain('\u001b', text);
        Assert.DoesNotContain('\u0007', text);
        Assert.Contains("\"[red]\\e]0;pwned\\u0007\\n\" @0", text);
    }

    [Fact]
    public void Write_WithoutAnalysis_SaysSo()
    {
        var writer = new StringWriter();
        ConsoleSummary.Write(writer, DecoderLikeStatistics.Build(), analysis: null, terminal: false);
        Assert.EndsWith("no analysis run", writer.ToString().TrimEnd());
    }
}
