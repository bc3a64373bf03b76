using System.Text.Json;
using OnnxOutlierTools.Analysis;
using OnnxOutlierTools.Cli.Analyze;
using OnnxOutlierTools.Calibration.Text;
using OnnxOutlierTools.Import;
using OnnxOutlierTools.IO;
using OnnxOutlierTools.Probes;
using OnnxOutlierTools.Runtime;

namespace OnnxOutlierTools.Tests.Cli;

/// <summary><c>analyze</c> end to end on real models and text: the planted models (every planted outlier found at its
/// block, birth point, token and channel, and nothing else of the kind), MiniLM's measured massive activation, the trained
/// stories260K (no massive activation), every exported fixture flavour (random weights: it runs and writes honest
/// reports), and bad input (one line, non-zero exit).</summary>
public sealed class AnalyzeCommandTests
{
    private static string Repo(params string[] parts) => RepositoryFiles.Path(parts);

    private static string Text(string name) => Fixtures.Path("text", name);

    private static AnalyzeOutcome Analyze(string model, string output, string? text = null, string? ids = null, string? tokenizer = null,
        int? seqLen = null, int maxTokens = 1024) =>
        AnalyzeRun.Execute(new AnalyzeRequest
        {
            Model = model,
            Text = text,
            Ids = ids,
            Tokenizer = tokenizer,
            Output = output,
            SequenceLength = seqLen,
            MaxTokens = maxTokens,
            Device = ExecutionDevice.Cpu,
        }, TextWriter.Null);

    [Theory]
    [InlineData("planted-llama-decomposed")]
    [InlineData("planted-llama-genai")]
    public void Analyze_PlantedModel_FindsEveryPlantedOutlierAndNothingElse(string folder)
    {
        using var temp = new TempFolder("analyze-planted");
        string modelDir = Repo("onnx-models", folder);
        using var truth = JsonDocument.Parse(File.ReadAllText(System.IO.Path.Combine(modelDir, "ground-truth.json")));
        var root = truth.RootElement;
        var ma = root.GetProperty("massiveActivation");
        int maBlock = ma.GetProperty("block").GetInt32();
        var maChannels = ma.GetProperty("channels").EnumerateArray().Select(c => c.GetInt32()).ToArray();
        var superWeights = ma.GetProperty("superWeights").EnumerateArray()
            .Select(w => (Block: w.GetProperty("block").GetInt32(), Row: w.GetProperty("row").GetInt32(), Column: w.GetProperty("column").GetInt32())).ToArray();
        var co = root.GetProperty("channelOutliers");
        int coBlock = co.GetProperty("block").GetInt32();
        var coChannels = co.GetProperty("channels").EnumerateArray().Select(c => c.GetInt32()).OrderBy(c => c).ToArray();
        var sink = root.GetProperty("attentionSink");

        var outcome = Analyze(System.IO.Path.Combine(modelDir, "model.onnx"), temp.Path("out"), Text("tinystories-sample.txt"), seqLen: 256);
        var result = outcome.Analysis;

        // (a) the massive activation: exactly the planted channels, born in the FFN of the planted block at position 0 (BOS),
        // written by the planted super weights.
        Assert.Equal(maChannels.OrderBy(c => c), result.MassiveActivations.Select(m => m.Channel).OrderBy(c => c));
        foreach (var found in result.MassiveActivations)
        {
            Assert.Equal(maBlock, found.Birth.EmergenceBlock);
            Assert.Equal(BirthPlace.Ffn, found.Birth.Place);
            Assert.Equal(0, found.Birth.Token.Position);
            Assert.Equal(1, found.Birth.Token.TokenId);
            Assert.True(found.Birth.MassiveAtDownInput, $"channel {found.Channel}: the down-projection input should be massive on BOS");
            var sw = Assert.IsType<SuperWeight>(found.Birth.SuperWeight);
            Assert.Contains((sw.Block, sw.Row, sw.Column), superWeights);
            Assert.All(found.Hits, h => Assert.Equal(0, h.Token.Position));
        }
        Assert.All(result.MassiveActivationTokens, t => Assert.Equal(TokenCategory.FirstPosition, t.Category));

        // (b) the norm-gain channel outliers: the planted gains, and the channel-wise outliers they cause at that norm's output.
        var gains = result.NormGainOutliers.Where(g => g.Block == coBlock).Select(g => g.Channel).Distinct().OrderBy(c => c).ToArray();
        Assert.Equal(coChannels, gains);
        var ffnInput = result.ChannelOutliers.Where(c => c.Point.Block == coBlock && c.Point.Kind == ProbeKind.FfnInput).Select(c => c.Channel).OrderBy(c => c).ToArray();
        Assert.Equal(coChannels, ffnInput);

        // (c) the attention sink head.
        Assert.Contains(result.AttentionSinks, s => s.Point.Block == sink.GetProperty("block").GetInt32()
            && s.Head == sink.GetProperty("head").GetInt32() && s.Position == 0 && s.Mass > 0.9);

        foreach (string file in new[] { outcome.StatsPath, outcome.ReportJsonPath, outcome.ReportHtmlPath }) Assert.True(new FileInfo(file).Length > 1000, file);
    }

    [Fact]
    public void Analyze_MiniLm_FindsChannel99AtClsBornInBlock0sFfn()
    {
        using var temp = new TempFolder("analyze-minilm");
        var outcome = Analyze(MiniLm.ModelPath, temp.Path("out"), Text("prose-sample.txt"), seqLen: 128, maxTokens: 512);
        var ma = Assert.Single(outcome.Analysis.MassiveActivations, m => m.Channel == 99);
        Assert.Equal(0, ma.Birth.EmergenceBlock);
        Assert.Equal(BirthPlace.Ffn, ma.Birth.Place);
        Assert.Equal(0, ma.Birth.Token.Position);
        Assert.Equal(101, ma.Birth.Token.TokenId); // [CLS]
        Assert.InRange(ma.Peak.Abs, 150, 400);
        Assert.Equal(856, ma.Birth.SuperWeight?.Row);
        Assert.Equal(99, ma.Birth.SuperWeight?.Column);
        Assert.Contains(outcome.Analysis.ChannelOutliers, c => c.Point.Kind == ProbeKind.DownInput);
    }

    [Fact]
    public void Analyze_Stories260K_ReportsNoMassiveActivation()
    {
        using var temp = new TempFolder("analyze-stories");
        string folder = temp.Folder("stories260K");
        using (var model = LlamaOnnxBuilder.Build(Llama2cCheckpoint.Load(Fixtures.Path("llama2c", "stories260K.bin"))))
            ModelWriter.Save(model, System.IO.Path.Combine(folder, "model.onnx"));
        var outcome = Analyze(System.IO.Path.Combine(folder, "model.onnx"), temp.Path("out"), Text("tinystories-sample.txt"),
            tokenizer: Fixtures.Path("llama2c", "tok512.bin"), seqLen: 256);
        Assert.Empty(outcome.Analysis.MassiveActivations);
        Assert.True(outcome.Statistics.Tokens >= 1000);
        Assert.Contains(outcome.Statistics.Points.Values, p => p.Top.Count > 0);
    }

    public static TheoryData<string> Flavours => Runtime.FixtureRecipes.Names;

    [Theory]
    [MemberData(nameof(Flavours))]
    public void Analyze_EveryExportedFlavour_RunsAndWritesReports(string flavour)
    {
        using var temp = new TempFolder("analyze-fixture");
        var recipe = Runtime.FixtureRecipes.Get(flavour);
        // Random weights and tokenizers larger than the tiny vocabularies: pre-tokenized ids inside each model's vocabulary.
        string ids = temp.Path("ids.json");
        long vocab = recipe.Inputs.IdUpperBound;
        File.WriteAllText(ids, JsonSerializer.Serialize(Enumerable.Range(0, 3).Select(w => Enumerable.Range(0, 8).Select(i => (int)((31 * w + 7 * i + 3) % vocab)).ToArray())));
        var result = CliRunner.Run("analyze", recipe.ModelPath, "--ids", ids, "-o", temp.Path("out"), "--seq-len", "8", "--device", "cpu");
        Assert.True(result.ExitCode == 0, result.ToString());
        foreach (string file in AnalyzeRun.OutputFiles) Assert.True(File.Exists(temp.Path("out", file)), $"{flavour}: {file} missing\n{result}");
        using var report = JsonDocument.Parse(File.ReadAllText(temp.Path("out", "report.json")));
        Assert.Equal(1, report.RootElement.GetProperty("schemaVersion").GetInt32());
    }

    [Fact]
    public void Analyze_NoTokenizerBesideTheModel_OneLineExit2()
    {
        using var temp = new TempFolder("analyze-notok");
        string model = temp.CopyGqaModel();
        var result = CliRunner.Run("analyze", model, "--text", Text("prose-sample.txt"), "-o", temp.Path("out"));
        Assert.Equal(2, result.ExitCode);
        Assert.Single(result.StderrLines, l => l.StartsWith("error: ", StringComparison.Ordinal));
        Assert.Contains("tokenizer", result.Stderr);
        Assert.False(Directory.Exists(temp.Path("out")));
    }

    [Fact]
    public void Analyze_EmptyText_OneLineExit2()
    {
        using var temp = new TempFolder("analyze-empty");
        File.WriteAllText(temp.Path("empty.txt"), "\n\n  \n");
        var result = CliRunner.Run("analyze", Repo("onnx-models", "planted-llama-decomposed", "model.onnx"), "--text", temp.Path("empty.txt"), "-o", temp.Path("out"));
        Assert.Equal(2, result.ExitCode);
        Assert.Contains("empty", Assert.Single(result.StderrLines, l => l.StartsWith("error: ", StringComparison.Ordinal)));
    }

    [Fact]
    public void Analyze_SeqLenAboveContext_OneLineExit2()
    {
        using var temp = new TempFolder("analyze-ctx");
        var result = CliRunner.Run("analyze", Repo("onnx-models", "planted-llama-decomposed", "model.onnx"), "--text", Text("tinystories-sample.txt"),
            "-o", temp.Path("out"), "--seq-len", "4096");
        Assert.Equal(2, result.ExitCode);
        Assert.Contains("exceeds the model's context", Assert.Single(result.StderrLines, l => l.StartsWith("error: ", StringComparison.Ordinal)));
    }

    [Fact]
    public void Analyze_ModelWithoutBlocks_Exit3()
    {
        using var temp = new TempFolder("analyze-noblocks");
        string path = temp.Path("chain.onnx");
        using (var model = SyntheticGraph.Create(20)) ModelWriter.Save(model, path);
        File.WriteAllText(temp.Path("ids.json"), "[1, 2, 3]");
        var result = CliRunner.Run("analyze", path, "--ids", temp.Path("ids.json"), "-o", temp.Path("out"));
        Assert.Equal(3, result.ExitCode);
        Assert.Single(result.StderrLines, l => l.StartsWith("error: ", StringComparison.Ordinal));
    }

    [Fact]
    public void Analyze_ExistingReport_RefusedWithoutForce()
    {
        using var temp = new TempFolder("analyze-exists");
        Directory.CreateDirectory(temp.Path("out"));
        File.WriteAllText(temp.Path("out", "report.html"), "mine");
        var result = CliRunner.Run("analyze", Repo("onnx-models", "planted-llama-decomposed", "model.onnx"), "--text", Text("tinystories-sample.txt"), "-o", temp.Path("out"));
        Assert.Equal(2, result.ExitCode);
        Assert.Contains("--force", result.Stderr);
        Assert.Equal("mine", File.ReadAllText(temp.Path("out", "report.html")));
    }
}
