using System.Text.Json;

namespace OnnxOutlierTools.Tests.Cli;

/// <summary>onnx-outliers mitigate end to end on the planted model: the planted gain-caused channel outliers are gone after
/// folding the norm gains, with the logits proven equal; the same driven by a stats.json of analyze; bad input.</summary>
public class MitigateCommandTests
{
    private static string Repo(params string[] parts) => RepositoryFiles.Path(parts);

    private static readonly string Planted = Repo("onnx-models", "planted-llama-decomposed", "model.onnx");
    private static string Text => Fixtures.Path("text", "tinystories-sample.txt");

    private static JsonElement Change(JsonDocument report, string point) =>
        report.RootElement.GetProperty("beforeAfter").EnumerateArray().Single(c => c.GetProperty("point").GetString() == point);

    [Fact]
    public void FoldNorms_OnPlanted_RemovesTheGainOutliers_ProvenExact()
    {
        using var temp = new TempFolder("mitigate-cli");
        var r = CliRunner.Run("mitigate", Planted, "--text", Text, "--seq-len", "128", "--max-tokens", "512", "--fold-norms", "-o", temp.Path("out"));
        Assert.True(r.ExitCode == 0, r.ToString());
        Assert.Contains("fold-norms: qkv=5, gate-up=5", r.Stdout);
        Assert.Contains("): exact", r.Stdout);
        using var report = JsonDocument.Parse(File.ReadAllText(temp.Path("out", "mitigation.json")));
        // ground-truth.json: block 2's FFN norm has gains of about 20 at channels 21 and 50; folded, the FFN input's worst
        // channel is no longer an outlier (ratio 34 before, within the ordinary spread after).
        var ffn = Change(report, "block2.ffn-input");
        Assert.True(ffn.GetProperty("channelRatioBefore").GetDouble() > 20);
        Assert.True(ffn.GetProperty("channelRatioAfter").GetDouble() < 4);
        // The residual stream is untouched (the massive activation is not what gain folding removes).
        var residual = Change(report, "block2.residual");
        Assert.Equal(residual.GetProperty("maxAbsBefore").GetDouble(), residual.GetProperty("maxAbsAfter").GetDouble(), 2);
        var proof = report.RootElement.GetProperty("stages")[0].GetProperty("proof");
        Assert.True(proof.GetProperty("exact").GetBoolean());
        Assert.True(File.Exists(temp.Path("out", "tokenizer.bin")));
        // Edited weights replace the originals (none is kept twice): the data is the original's size.
        long before = new FileInfo(Planted + ".data").Length, after = new FileInfo(temp.Path("out", "model.onnx.data")).Length;
        Assert.InRange(after, before * 0.99, before * 1.01);
    }

    [Fact]
    public void Stats_FromAnalyze_DriveSmoothQuant_AndTheProofUsesTheStatsText()
    {
        using var temp = new TempFolder("mitigate-stats");
        var a = CliRunner.Run("analyze", Planted, "--text", Text, "--seq-len", "128", "--max-tokens", "512", "-o", temp.Path("analysis"));
        Assert.True(a.ExitCode == 0, a.ToString());
        var r = CliRunner.Run("mitigate", Planted, "--stats", temp.Path("analysis", "stats.json"), "--smooth", "0.5", "-o", temp.Path("out"), "--no-compare");
        Assert.True(r.ExitCode == 0, r.ToString());
        Assert.Contains("smooth: qkv=5, gate-up=5", r.Stdout);
        Assert.Contains("): exact", r.Stdout);
    }

    [Fact]
    public void FoldThenSmoothAuto_TwoProvenStages_AnAlphaOfTheGridPerSite()
    {
        using var temp = new TempFolder("mitigate-auto");
        var r = CliRunner.Run("mitigate", Planted, "--text", Text, "--seq-len", "128", "--max-tokens", "512", "--fold-norms", "--smooth", "auto",
            "--sites", "qkv,gate-up,up-down", "-o", temp.Path("out"), "--no-compare");
        Assert.True(r.ExitCode == 0, r.ToString());
        // fold-norms then smooth: two exact stages, each proven; the search ran on the model the fold left.
        using var report = JsonDocument.Parse(File.ReadAllText(temp.Path("out", "mitigation.json")));
        var stages = report.RootElement.GetProperty("stages");
        Assert.Equal(2, stages.GetArrayLength());
        Assert.All(stages.EnumerateArray(), s => Assert.True(s.GetProperty("proof").GetProperty("exact").GetBoolean()));
        var lines = stages[1].GetProperty("steps")[0].GetProperty("lines").EnumerateArray().Select(l => l.GetString()!).ToList();
        Assert.Equal(15, lines.Count);
        foreach (string line in lines)
        {
            var m = System.Text.RegularExpressions.Regex.Match(line, @"alpha ([0-9.]+) \(int8 output error ([0-9.Ee+-]+), ([0-9.Ee+-]+) unsmoothed");
            Assert.True(m.Success, line);
            double alpha = double.Parse(m.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture);
            Assert.Equal(Math.Round(alpha * 20) / 20, alpha, 9); // a point of the 0, 0.05, ..., 1 grid
        }
    }

    [Fact]
    public void FoldNormsAndSinkBias_RemoveEveryPlantedOutlier_BothProvenExact()
    {
        using var temp = new TempFolder("mitigate-sink");
        var r = CliRunner.Run("mitigate", Planted, "--text", Text, "--seq-len", "128", "--max-tokens", "512", "--sink-bias", "--fold-norms", "-o", temp.Path("out"));
        Assert.True(r.ExitCode == 0, r.ToString());
        using var report = JsonDocument.Parse(File.ReadAllText(temp.Path("out", "mitigation.json")));
        var stages = report.RootElement.GetProperty("stages");
        // The fixed order puts fold-norms first whatever the options' order; the sink bias is proven on its own (BOS + text
        // against the text alone).
        Assert.Equal(["fold-norms", "sink-bias"], stages.EnumerateArray().Select(s => s.GetProperty("steps")[0].GetProperty("step").GetString()!).ToArray());
        Assert.All(stages.EnumerateArray(), s => Assert.True(s.GetProperty("proof").GetProperty("exact").GetBoolean()));
        // ground-truth.json: |x| 2400 on BOS (channels 66/67) from block 1 on; the rewritten model, fed text without BOS, never has it.
        foreach (int block in new[] { 1, 2, 3, 4 })
        {
            var residual = Change(report, $"block{block}.residual");
            Assert.True(residual.GetProperty("maxAbsBefore").GetDouble() > 1000);
            Assert.True(residual.GetProperty("maxAbsAfter").GetDouble() < 50);
        }
        Assert.True(Change(report, "block2.ffn-input").GetProperty("channelRatioAfter").GetDouble() < 4);
        using var model = OnnxOutlierTools.IO.ModelReader.Load(temp.Path("out", "model.onnx"));
        Assert.Contains(model.Metadata, p => p.Key == "onnx_outliers.input_contract" && p.Value.Contains("WITHOUT the prefix", StringComparison.Ordinal));
    }

    [Fact]
    public void SinkBias_OnTheGenaiFlavour_UpdatesGenaiConfig()
    {
        using var temp = new TempFolder("mitigate-sink-genai");
        // A copy of the planted genai model with the genai_config.json onnxruntime-genai reads (share buffer on, as the builder writes it).
        string source = Repo("onnx-models", "planted-llama-genai");
        string folder = temp.Folder("model");
        foreach (string file in Directory.GetFiles(source)) File.Copy(file, System.IO.Path.Combine(folder, System.IO.Path.GetFileName(file)));
        File.WriteAllText(System.IO.Path.Combine(folder, "genai_config.json"),
            """{ "model": { "type": "llama", "context_length": 512, "decoder": { "filename": "model.onnx" } }, "search": { "max_length": 512, "past_present_share_buffer": true } }""");
        var r = CliRunner.Run("mitigate", System.IO.Path.Combine(folder, "model.onnx"), "--text", Text, "--seq-len", "128", "--max-tokens", "256", "--sink-bias", "--no-compare", "-o", temp.Path("out"));
        Assert.True(r.ExitCode == 0, r.ToString());
        Assert.Contains("): exact", r.Stdout);
        using var config = JsonDocument.Parse(File.ReadAllText(temp.Path("out", "genai_config.json")));
        Assert.False(config.RootElement.GetProperty("search").GetProperty("past_present_share_buffer").GetBoolean());
        Assert.Equal(511, config.RootElement.GetProperty("model").GetProperty("context_length").GetInt32());
        Assert.Contains("past_present_share_buffer", File.ReadAllText(System.IO.Path.Combine(folder, "genai_config.json"))); // the input is untouched
        Assert.Contains("true", File.ReadAllText(System.IO.Path.Combine(folder, "genai_config.json")));
    }

    [Fact]
    public void SinkBias_OnATorchExportWithoutCache_LengthensTheRotaryTables_ProvenExact()
    {
        using var temp = new TempFolder("mitigate-sink-torch");
        // Random weights: ids, not text. torch.onnx slices cos/sin to the fed length before gathering by position.
        File.WriteAllText(temp.Path("ids.json"), "[[1, 5, 9, 13, 17, 21, 25, 29, 33, 37, 41, 45, 49, 53, 57, 61], [1, 2, 4, 8, 16, 32, 64, 3, 6, 12, 24, 48, 96, 7, 14, 28]]");
        var r = CliRunner.Run("mitigate", Fixtures.Export("llama-torch-nopast", "model.onnx"), "--ids", temp.Path("ids.json"), "--sink-bias", "--no-compare", "-o", temp.Path("out"));
        Assert.True(r.ExitCode == 0, r.ToString());
        Assert.Contains("): exact", r.Stdout);
        Assert.Contains("shift-positions=1", r.Stdout);
    }

    [Fact]
    public void ClipMa_IsMeasured_NotProven_AndRemovesTheMassiveActivation()
    {
        using var temp = new TempFolder("mitigate-clip");
        var r = CliRunner.Run("mitigate", Planted, "--text", Text, "--seq-len", "128", "--max-tokens", "512", "--clip-ma", "-o", temp.Path("out"));
        Assert.True(r.ExitCode == 0, r.ToString());
        Assert.Contains("clip-ma: down-input=1", r.Stdout);
        Assert.Contains("measured: KL(original || rewritten) mean", r.Stdout);
        using var report = JsonDocument.Parse(File.ReadAllText(temp.Path("out", "mitigation.json")));
        var stage = report.RootElement.GetProperty("stages")[0];
        Assert.Equal(JsonValueKind.Null, stage.GetProperty("proof").ValueKind);
        Assert.Contains("perplexity", stage.GetProperty("measurement").GetString());
        // ground-truth.json: the planted massive activation (|x| 2400 on BOS in channels 66/67) is gone from the stream.
        var residual = Change(report, "block2.residual");
        Assert.True(residual.GetProperty("maxAbsBefore").GetDouble() > 1000);
        Assert.True(residual.GetProperty("maxAbsAfter").GetDouble() < 100);
    }

    [Fact]
    public void BadInput_OneLine_NothingWritten()
    {
        using var temp = new TempFolder("mitigate-bad");
        var none = CliRunner.Run("mitigate", Planted, "--text", Text, "-o", temp.Path("out"));
        Assert.Equal(2, none.ExitCode);
        Assert.Contains("nothing to do", Assert.Single(none.StderrLines));

        var noText = CliRunner.Run("mitigate", Planted, "--fold-norms", "-o", temp.Path("out"));
        Assert.Equal(2, noText.ExitCode);
        Assert.Contains("needs --stats FILE or calibration text", Assert.Single(noText.StderrLines));

        var alpha = CliRunner.Run("mitigate", Planted, "--text", Text, "--smooth", "1.5", "-o", temp.Path("out"));
        Assert.Equal(2, alpha.ExitCode);
        Assert.Contains("alpha in [0, 1]", Assert.Single(alpha.StderrLines));

        var site = CliRunner.Run("mitigate", Planted, "--text", Text, "--fold-norms", "--sites", "qkv,ffn", "-o", temp.Path("out"));
        Assert.Equal(2, site.ExitCode);
        Assert.Contains("unknown fold site 'ffn'", Assert.Single(site.StderrLines));
        Assert.Empty(Directory.GetFileSystemEntries(temp.FullPath));
    }
}
