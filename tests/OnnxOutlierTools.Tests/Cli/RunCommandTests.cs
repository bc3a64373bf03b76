using System.Text.Json;
using AngleSharp.Html.Parser;
using OnnxOutlierTools.Cli.Commands;

namespace OnnxOutlierTools.Tests.Cli;

/// <summary><c>run</c>: the whole pipeline on the planted decoder (small windows and two schemes, to stay fast), its table in
/// run.json and report.html, and the bad inputs it refuses with one line.</summary>
public sealed class RunCommandTests
{
    private static string Planted => RepositoryFiles.Path("onnx-models", "planted-llama-decomposed");
    private static string DemoText => RepositoryFiles.Path("onnx-models", "planted-llama-decomposed", "demo-text.txt");

    [Fact]
    public void Run_OnThePlantedDecoder_WritesTheTable_TheExactMitigationIsExact_AndStaticW8A8GetsCloserToFp32()
    {
        using var temp = new TempFolder();
        string output = temp.Path("run");
        var result = CliRunner.Run("run", Planted, "--text", DemoText, "-o", output, "--schemes", "w8a8-static,int4-rtn",
            "--calibration-tokens", "512", "--eval-tokens", "768", "--seq-len", "128", "--no-latency");
        Assert.True(result.ExitCode == 0, result.ToString());
        using var json = JsonDocument.Parse(File.ReadAllText(Path.Combine(output, "run.json")));
        var root = json.RootElement;
        Assert.Equal(1, root.GetProperty("schemaVersion").GetInt32());
        Assert.Contains("sink-bias", root.GetProperty("recipe").EnumerateArray().Select(e => e.GetString()));
        var rows = root.GetProperty("rows").EnumerateArray().ToDictionary(r => r.GetProperty("variant").GetString()!);
        Assert.Equal(["original", "mitigated", "original + w8a8-static", "original + int4-rtn", "mitigated + w8a8-static", "mitigated + int4-rtn"], rows.Keys);
        foreach (var (name, row) in rows)
        {
            Assert.True(double.IsFinite(row.GetProperty("perplexity").GetDouble()), name);
            Assert.True(row.GetProperty("sizeBytes").GetInt64() > 0, name);
            string path = row.GetProperty("path").GetString()!;
            Assert.True(File.Exists(Path.IsPathRooted(path) ? path : Path.Combine(output, path)), $"{name}: {path}");
            if (name != "original") Assert.True(File.Exists(Path.Combine(output, row.GetProperty("evaluation").GetString()!)), name);
        }
        double Kl(string name) => rows[name].GetProperty("meanKl").GetDouble();
        // The recipe is exact (proven by mitigate): the mitigated model's distributions are the original's.
        Assert.True(Kl("mitigated") < 1e-6, $"mitigated KL {Kl("mitigated")}");
        Assert.Equal(rows["original"].GetProperty("perplexity").GetDouble(), rows["mitigated"].GetProperty("perplexity").GetDouble(), 4);
        // The planted massive activation (thousands) is gone from the mitigated model's stream, and with it the static
        // per-tensor scale it forced: W8A8 static after mitigation is strictly closer to FP32 (the issue's check).
        Assert.True(rows["mitigated"].GetProperty("maxAbs").GetDouble() < rows["original"].GetProperty("maxAbs").GetDouble() / 10);
        Assert.True(Kl("mitigated + w8a8-static") < Kl("original + w8a8-static"), $"{Kl("mitigated + w8a8-static")} vs {Kl("original + w8a8-static")}");
        Assert.True(rows["original + int4-rtn"].GetProperty("sizeBytes").GetInt64() < rows["original"].GetProperty("sizeBytes").GetInt64());

        var document = new HtmlParser().ParseDocument(File.ReadAllText(Path.Combine(output, "report.html")));
        var table = document.QuerySelector("section#pipeline table.pipeline");
        Assert.NotNull(table);
        Assert.Equal(6, table!.QuerySelectorAll("tbody tr").Length);
        Assert.NotNull(document.QuerySelector("section#glance")); // the analyze report follows the table
        Assert.Contains("original + w8a8-static", result.Stdout);
    }

    /// <summary>An encoder (MiniLM, post-norm, a measured massive activation): no sink bias in its recipe, the embedding cosine
    /// of W8A8 with and without mitigation reported (measured, printed; asserted only where certain).</summary>
    [Fact]
    public void Run_OnMiniLm_ReportsTheEmbeddingCosine_WithAndWithoutMitigation()
    {
        using var temp = new TempFolder();
        string output = temp.Path("run");
        var result = CliRunner.Run("run", MiniLm.ModelPath, "--text", Fixtures.Path("text", "prose-sample.txt"), "-o", output,
            "--schemes", "w8a8-static,w8a8-dynamic", "--calibration-tokens", "512", "--eval-tokens", "512", "--no-latency");
        Assert.True(result.ExitCode == 0, result.ToString());
        using var json = JsonDocument.Parse(File.ReadAllText(Path.Combine(output, "run.json")));
        Assert.DoesNotContain("sink-bias", json.RootElement.GetProperty("recipe").EnumerateArray().Select(e => e.GetString()));
        var cosine = json.RootElement.GetProperty("rows").EnumerateArray().Where(r => r.GetProperty("variant").GetString() != "original")
            .ToDictionary(r => r.GetProperty("variant").GetString()!, r => r.GetProperty("cosine").GetDouble());
        Console.WriteLine("MiniLM mean pooled cosine to FP32: " + string.Join(", ", cosine.Select(c => $"{c.Key} {c.Value:F5}")));
        Assert.True(cosine["mitigated"] > 0.99999, $"the exact recipe changed the embeddings: cosine {cosine["mitigated"]}");
        foreach (var (name, value) in cosine) Assert.True(value is > 0 and <= 1.000001, $"{name}: {value}");
    }

    [Fact]
    public void Demo_IsBundledBesideTheTool()
    {
        Assert.True(File.Exists(Path.Combine(RunCommand.DemoFolder, "model.onnx")), RunCommand.DemoFolder);
        Assert.True(File.Exists(Path.Combine(RunCommand.DemoFolder, RunCommand.DemoText)));
        Assert.True(new FileInfo(Path.Combine(RunCommand.DemoFolder, RunCommand.DemoText)).Length > 10_000);
    }

    [Fact]
    public void BadInput_GetsOneLine_AndExitCode2_NothingIsReplaced()
    {
        using var temp = new TempFolder();
        var noText = CliRunner.Run("run", Planted, "-o", temp.Path("a"));
        Assert.Equal(2, noText.ExitCode);
        Assert.Single(noText.StderrLines);

        var demoAndModel = CliRunner.Run("run", "--demo", Planted);
        Assert.Equal(2, demoAndModel.ExitCode);
        Assert.Contains("--demo", demoAndModel.Stderr);

        var badRecipe = CliRunner.Run("run", Planted, "--text", DemoText, "-o", temp.Path("b"), "--recipe", "fold-norms,rotate");
        Assert.Equal(2, badRecipe.ExitCode);
        Assert.Contains("rotate", badRecipe.Stderr);

        var missingText = CliRunner.Run("run", Planted, "--text", temp.Path("absent.txt"), "-o", temp.Path("c"));
        Assert.Equal(2, missingText.ExitCode);
        Assert.Contains("absent.txt", missingText.Stderr);

        // A folder the user owns is never replaced, even with --force.
        string mine = temp.Path("mine");
        Directory.CreateDirectory(mine);
        File.WriteAllText(Path.Combine(mine, "notes.txt"), "keep me");
        var replace = CliRunner.Run("run", Planted, "--text", DemoText, "-o", mine, "--force");
        Assert.Equal(2, replace.ExitCode);
        Assert.Single(replace.StderrLines);
        Assert.Equal("keep me", File.ReadAllText(Path.Combine(mine, "notes.txt")));
    }
}
