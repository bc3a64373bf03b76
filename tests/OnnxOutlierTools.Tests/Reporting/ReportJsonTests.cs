using System.Text.Json;
using OnnxOutlierTools.Analysis;
using OnnxOutlierTools.Reporting;
using OnnxOutlierTools.Reporting.Json;

namespace OnnxOutlierTools.Tests.Reporting;

public class ReportJsonTests
{
    [Fact]
    public void Write_HoldsFindingsAndEverySetting()
    {
        var statistics = DecoderLikeStatistics.Build();
        var settings = new AnalysisSettings { MassiveRelativeRatio = double.PositiveInfinity, SinkMass = 0.6 };
        var analysis = OutlierAnalyzer.Analyze(statistics, structure: null, settings);
        using var temp = new TempFolder("report-json");
        string path = temp.Path("report.json");
        ReportJson.Write(path, statistics, analysis, ReportSamples.Run);
        string json = File.ReadAllText(path);

        using var doc = JsonDocument.Parse(json);
        var root = doc.RootElement;
        Assert.Equal(1, root.GetProperty("schemaVersion").GetInt32());
        Assert.Equal(ReportJson.FormatName, root.GetProperty("format").GetString());
        Assert.Equal(statistics.Manifest.Model, root.GetProperty("model").GetString());
        Assert.Equal("stats.json", root.GetProperty("statsFile").GetString());
        Assert.Equal(ReportSamples.Run.CommandLine, root.GetProperty("run").GetProperty("commandLine").GetString());
        Assert.Equal(32, root.GetProperty("probes").GetProperty("settings").GetProperty("topK").GetInt32());
        Assert.Equal("Infinity", root.GetProperty("analysis").GetProperty("settings").GetProperty("massiveRelativeRatio").GetString());
        var massive = root.GetProperty("analysis").GetProperty("massiveActivations");
        Assert.Equal(analysis.MassiveActivations.Count, massive.GetArrayLength());
        Assert.Equal(analysis.AttentionSinks.Count, root.GetProperty("analysis").GetProperty("attentionSinks").GetArrayLength());

        // the settings read back are the ones used: the analysis re-run from them finds the same
        var (readAnalysis, readProbes, readRun) = ReportJson.ReadSettings(json);
        Assert.Equal(JsonSerializer.Serialize(settings, ReportingJson.Options), JsonSerializer.Serialize(readAnalysis, ReportingJson.Options));
        Assert.Equal(statistics.Manifest.Settings.TopK, readProbes.TopK);
        Assert.Equal(statistics.Manifest.Settings.Kinds, readProbes.Kinds);
        Assert.Equal(ReportSamples.Run, readRun);
        var again = OutlierAnalyzer.Analyze(statistics, structure: null, readAnalysis);
        Assert.Equal(JsonSerializer.Serialize(analysis, ReportingJson.Options), JsonSerializer.Serialize(again, ReportingJson.Options));
    }

    [Fact]
    public void ReadSettings_NotAReport_OneLine()
    {
        var ex = Assert.Throws<FormatException>(() => ReportJson.ReadSettings("{\"format\": \"onnx-outliers-stats\"}"));
        Assert.Equal("not a report file (no \"format\": \"onnx-outliers-report\")", ex.Message);
    }
}
