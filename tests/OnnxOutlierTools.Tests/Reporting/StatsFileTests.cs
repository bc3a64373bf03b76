using System.Text.Json;
using OnnxOutlierTools.Probes;
using OnnxOutlierTools.Reporting;
using OnnxOutlierTools.Reporting.Json;
using OnnxOutlierTools.Reporting.Stats;

namespace OnnxOutlierTools.Tests.Reporting;

public class StatsFileTests
{
    private static readonly RunSettings Run = new()
    {
        Text = "corpus/tiny stories.txt",
        TextSha256 = "ab12",
        Tokenizer = "tok512.model",
        TokenizerKind = "sentencepiece",
        SequenceLength = 32,
        MaxTokens = 4096,
        Bos = "auto",
        BosAdded = true,
        BatchSize = 2,
        Device = "auto",
        DeviceUsed = "cpu",
        CommandLine = "onnx-outliers analyze model.onnx --text 'tiny stories.txt' -o out",
        ToolVersion = "0.8.0",
        Finished = new DateTimeOffset(2026, 12, 3, 8, 30, 0, TimeSpan.Zero),
    };

    [Fact]
    public void Write_ThenRead_RestoresEveryField()
    {
        var statistics = WithUnseenPoint(DecoderLikeStatistics.Build(HostileTexts()));
        using var temp = new TempFolder("stats");
        string path = temp.Path("stats.json");

        StatsFile.Write(path, statistics, Run);
        var read = StatsFile.Read(path);

        AssertEqual(statistics, read.Statistics);
        Assert.Equal(Run, read.Run);
        // and the file is a fixed point: writing what was read gives the same bytes
        Assert.Equal(File.ReadAllText(path), StatsFile.ToJson(read.Statistics, read.Run));
    }

    [Fact]
    public void Write_NonFiniteNumbers_AreNamedStrings()
    {
        var statistics = WithUnseenPoint(DecoderLikeStatistics.Build());
        using var doc = JsonDocument.Parse(StatsFile.ToJson(statistics));
        var unseen = doc.RootElement.GetProperty("points").EnumerateArray().Single(p => p.GetProperty("id").GetString() == "unseen");

        Assert.Equal("-Infinity", unseen.GetProperty("channelMax")[0].GetString());
        Assert.Equal("Infinity", unseen.GetProperty("channelMin")[0].GetString());
        Assert.Equal("NaN", unseen.GetProperty("positionMaxAbs")[0].GetString());
        Assert.Equal(StatsFile.CurrentSchemaVersion, doc.RootElement.GetProperty("schemaVersion").GetInt32());
        Assert.Equal(StatsFile.FormatName, doc.RootElement.GetProperty("format").GetString());
    }

    [Fact]
    public void Write_ChannelArrays_OneLineEach()
    {
        string json = StatsFile.ToJson(DecoderLikeStatistics.Build());
        string line = json.Split('\n').First(l => l.TrimStart().StartsWith("\"channelMax\": [", StringComparison.Ordinal));
        Assert.Equal(DecoderLikeStatistics.Channels, JsonDocument.Parse("{" + line.TrimEnd(',') + "}").RootElement.GetProperty("channelMax").GetArrayLength());
    }

    [Fact]
    public void Write_ExistingFile_RefusedWithoutOverwrite()
    {
        using var temp = new TempFolder("stats");
        string path = temp.Path("stats.json");
        File.WriteAllText(path, "keep");
        Assert.Throws<OnnxOutlierTools.IO.OutputExistsException>(() => StatsFile.Write(path, DecoderLikeStatistics.Build()));
        Assert.Equal("keep", File.ReadAllText(path));
        StatsFile.Write(path, DecoderLikeStatistics.Build(), overwrite: true);
        Assert.StartsWith("{", File.ReadAllText(path));
        Assert.Single(temp.Files());
    }

    [Theory]
    [InlineData("[]", "not a stats file")]
    [InlineData("{\"format\": \"onnx-outliers-stats\", \"schemaVersion\": 3}", "schema version 3; this tool reads versions 1 and 2")]
    [InlineData("{\"format\": \"onnx-outliers-stats\", \"schemaVersion\": 2}", "invalid stats JSON")]
    [InlineData("{not json", "invalid stats JSON")]
    public void Read_BadFile_OneLineNamingFileAndProblem(string content, string expected)
    {
        using var temp = new TempFolder("stats");
        string path = temp.Path("stats.json");
        File.WriteAllText(path, content);
        var ex = Assert.Throws<StatsFileException>(() => StatsFile.Read(path));
        Assert.StartsWith(path + ": ", ex.Message);
        Assert.Contains(expected, ex.Message);
        Assert.DoesNotContain('\n', ex.Message);
    }

    [Theory]
    [InlineData("\"channelMax\": [", "\"channelMax\": [1,", "channelMax has 65 values, 64 channels expected")]
    [InlineData("\"argMaxChannel\": ", "\"argMaxChannel\": 9999", "names channel 9999")]
    [InlineData("\"top\": [", "\"top\": null,\"x\": [", "invalid stats JSON")]
    public void Read_DamagedPoint_NamesPointAndField(string find, string replace, string expected)
    {
        string json = StatsFile.ToJson(DecoderLikeStatistics.Build());
        int at = json.IndexOf(find, StringComparison.Ordinal);
        string damaged = json[..at] + replace + json[(at + find.Length)..];
        var ex = Assert.Throws<FormatException>(() => StatsFile.FromJson(damaged));
        Assert.Contains(expected, ex.Message);
    }

    [Fact]
    public void Read_Version1_MediansWereOverEveryChannel()
    {
        var statistics = DecoderLikeStatistics.Build();
        string json = StatsFile.ToJson(statistics);
        Assert.Contains("\"schemaVersion\": 2", json);
        Assert.Contains("\"medianChannels\": 128", json);
        string v1 = json.Replace("\"schemaVersion\": 2", "\"schemaVersion\": 1").Replace("\"medianChannels\": 128,", "").Replace(",\n      \"medianChannels\": 128", "");
        Assert.DoesNotContain("medianChannels", v1);
        Assert.Equal(0, StatsFile.FromJson(v1).Statistics.Manifest.Settings.MedianChannels);
        Assert.Equal(128, StatsFile.FromJson(json).Statistics.Manifest.Settings.MedianChannels);
    }

    [Fact]
    public void NonFiniteConverter_ReadsWhatItWrites()
    {
        double[] values = [double.NaN, double.PositiveInfinity, double.NegativeInfinity, 0.1, -0.0, double.Epsilon, double.MaxValue, 1e300];
        string json = JsonSerializer.Serialize(values, ReportingJson.Options);
        var back = JsonSerializer.Deserialize<double[]>(json, ReportingJson.Options)!;
        Assert.Equal(values.Select(BitConverter.DoubleToInt64Bits), back.Select(BitConverter.DoubleToInt64Bits));
        Assert.Throws<JsonException>(() => JsonSerializer.Deserialize<double[]>("[\"inf\"]", ReportingJson.Options));
    }

    internal static Dictionary<int, string> HostileTexts()
    {
        var texts = new Dictionary<int, string>(DecoderLikeStatistics.DefaultTexts())
        {
            [DecoderLikeStatistics.BosId] = "<s>",
            [101] = "</table><script>alert(1)</script>",
            [102] = "\u001b[31mred\u001b[0m",
            [103] = "a&amp;b \"q\" 'p'",
            [104] = "\u202eevil\u2066",
            [105] = "\t\r\0",
        };
        return texts;
    }

    /// <summary>A point that no batch reached: its extrema are infinite, its position maxima NaN.</summary>
    private static CalibrationStatistics WithUnseenPoint(CalibrationStatistics statistics)
    {
        var manifest = statistics.Manifest with
        {
            Points = [.. statistics.Manifest.Points, new ProbePoint { Id = "unseen", Kind = ProbeKind.Tensor, Role = "tensor", Tensor = "t", Channels = 3, Outputs = new Dictionary<ProbeStatistic, string>() }],
        };
        var copy = new CalibrationStatistics(manifest) { Tokens = statistics.Tokens, Windows = statistics.Windows };
        foreach (var (id, p) in statistics.Points) copy.Points[id] = p;
        foreach (var (id, t) in statistics.TokenTexts) copy.TokenTexts[id] = t;
        copy.Points["unseen"] = new PointStatistics("unseen", 3, 4);
        return copy;
    }

    internal static void AssertEqual(CalibrationStatistics expected, CalibrationStatistics actual)
    {
        Assert.Equal(expected.Tokens, actual.Tokens);
        Assert.Equal(expected.Windows, actual.Windows);
        Assert.Equal(expected.TokenTexts.OrderBy(t => t.Key), actual.TokenTexts.OrderBy(t => t.Key));
        AssertEqual(expected.Manifest, actual.Manifest);
        Assert.Equal(expected.Points.Keys.Order(StringComparer.Ordinal), actual.Points.Keys.Order(StringComparer.Ordinal));
        foreach (var (id, e) in expected.Points)
        {
            var a = actual.Points[id];
            Assert.Equal(e.Id, a.Id);
            Assert.Equal(e.Channels, a.Channels);
            Assert.Equal(e.TopK, a.TopK);
            Assert.Equal(e.Tokens, a.Tokens);
            Bits(e.ChannelMax, a.ChannelMax);
            Bits(e.ChannelMin, a.ChannelMin);
            Bits(e.ChannelSum, a.ChannelSum);
            Bits(e.ChannelSumSquares, a.ChannelSumSquares);
            Bits(e.ChannelSumFourth, a.ChannelSumFourth);
            Assert.Equal(e.ChannelAboveCount, a.ChannelAboveCount);
            Assert.Equal(e.Top, a.Top);
            Assert.Equal(e.LargestTokens, a.LargestTokens);
            Assert.Equal(e.HighestRatioTokens, a.HighestRatioTokens);
            Assert.Equal(e.TokenMaxAbs.Bins(), a.TokenMaxAbs.Bins());
            Assert.Equal(e.TokenMaxAbs.Count, a.TokenMaxAbs.Count);
            Assert.Equal(e.TokenMedianAbs.Bins(), a.TokenMedianAbs.Bins());
            Assert.Equal(e.TokenMedianAbs.Count, a.TokenMedianAbs.Count);
            Bits(e.PositionMaxAbs, a.PositionMaxAbs);
            Assert.Equal(e.AttentionMass is null, a.AttentionMass is null);
            if (e.AttentionMass is not null)
            {
                Assert.Equal(e.AttentionMass.Length, a.AttentionMass!.Length);
                for (int h = 0; h < e.AttentionMass.Length; h++) Bits(e.AttentionMass[h], a.AttentionMass[h]);
            }
            Assert.Equal(e.AttentionQueriesPerPosition, a.AttentionQueriesPerPosition);
        }
    }

    /// <summary>The manifest is a committed contract that grows (new optional fields): compared as its serialized form,
    /// which covers every field present and future, plus the fields the analysis keys on.</summary>
    private static void AssertEqual(ProbeManifest e, ProbeManifest a)
    {
        Assert.Equal(JsonSerializer.Serialize(e, ReportingJson.Options), JsonSerializer.Serialize(a, ReportingJson.Options));
        Assert.Equal(e.Model, a.Model);
        Assert.Equal(e.Settings.Kinds, a.Settings.Kinds);
        Assert.Equal(e.Points.Select(p => (p.Id, p.Kind, p.Block, p.Tensor, p.Channels, p.Heads)), a.Points.Select(p => (p.Id, p.Kind, p.Block, p.Tensor, p.Channels, p.Heads)));
        Assert.Equal(e.Skipped, a.Skipped);
    }

    private static void Bits(double[] expected, double[] actual) =>
        Assert.Equal(expected.Select(BitConverter.DoubleToInt64Bits), actual.Select(BitConverter.DoubleToInt64Bits));
}
