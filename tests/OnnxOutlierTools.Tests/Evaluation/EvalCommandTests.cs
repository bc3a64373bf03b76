using System.Text.Json;
using OnnxOutlierTools.Tests.Cli;
using OnnxOutlierTools.Tests.Mitigation.Measurement;

namespace OnnxOutlierTools.Tests.Evaluation;

/// <summary><c>onnx-outliers eval</c> as a user types it: the JSON of a planted-model run with a reference and latency, and
/// bad input as one error line naming the file, exit 2.</summary>
public class EvalCommandTests
{
    private static string PlantedGenAi => RepositoryFiles.Path("onnx-models", "planted-llama-genai");
    private static string PlantedDecomposed => RepositoryFiles.Path("onnx-models", "planted-llama-decomposed");

    [Fact]
    public void Eval_PlantedWithReferenceAndLatency_WritesTheJsonWithEverySetting()
    {
        using var folder = new TempFolder("eval-cli");
        string json = folder.Path("eval.json");
        var run = CliRunner.Run("eval", PlantedGenAi, "--text", CalibratedModel.Text, "--ref", PlantedDecomposed, "--window", "64", "--stride", "32",
            "--max-tokens", "256", "--device", "cpu", "--latency", "--repetitions", "2", "--decode-tokens", "4", "--json", json);
        Assert.True(run.ExitCode == 0, run.ToString());
        Assert.Contains("perplexity", run.Stdout);
        Assert.Contains("top-1 agreement", run.Stdout);
        Assert.Contains("evaluating", run.Stderr);

        using var doc = JsonDocument.Parse(File.ReadAllText(json));
        var root = doc.RootElement;
        Assert.Equal(1, root.GetProperty("schemaVersion").GetInt32());
        Assert.StartsWith("onnx-outliers eval", root.GetProperty("commandLine").GetString());
        var settings = root.GetProperty("settings");
        Assert.Equal(64, settings.GetProperty("window").GetInt32());
        Assert.Equal(32, settings.GetProperty("stride").GetInt32());
        Assert.Equal("window", settings.GetProperty("bosResolved").GetString());
        Assert.Equal(1, settings.GetProperty("windowPrefix")[0].GetInt32());
        Assert.Equal(7, root.GetProperty("windows").GetProperty("count").GetInt32()); // starts 0, 32, ..., 192 (+63 <= 256)
        // The two planted flavours carry the same weights: the same distributions to fp32 rounding.
        Assert.InRange(root.GetProperty("divergence").GetProperty("maxKl").GetDouble(), 0, 1e-6);
        double model = root.GetProperty("perplexity").GetProperty("model").GetProperty("perplexity").GetDouble();
        double reference = root.GetProperty("perplexity").GetProperty("reference").GetProperty("perplexity").GetDouble();
        Assert.Equal(reference, model, reference * 1e-5);
        var latency = root.GetProperty("latency");
        Assert.Equal(4, latency.GetProperty("model").GetProperty("decodeTokens").GetInt32());
        Assert.True(latency.GetProperty("model").GetProperty("decodeTokensPerSecond").GetDouble() > 0);
        Assert.True(latency.GetProperty("model").GetProperty("promptMs").GetDouble() > 0);
        // The decomposed reference has no KV cache: no decode figures.
        Assert.Equal(JsonValueKind.Null, latency.GetProperty("reference").GetProperty("decodeMsPerToken").ValueKind);
    }

    private static void AssertBadInput(CliResult run, string file, string problem)
    {
        Assert.True(run.ExitCode == 2, run.ToString());
        var line = Assert.Single(run.StderrLines);
        Assert.StartsWith("error: ", line);
        Assert.Contains(file, line);
        Assert.Contains(problem, line);
    }

    [Fact]
    public void Eval_CorruptReference_OneLineExit2()
    {
        using var folder = new TempFolder("eval-bad");
        string corrupt = folder.Path("corrupt.onnx");
        File.WriteAllBytes(corrupt, [0x08, 0x07, 0xFF, 0xFF, 0x13, 0x00, 0x42]);
        AssertBadInput(CliRunner.Run("eval", PlantedDecomposed, "--text", CalibratedModel.Text, "--ref", corrupt, "--window", "32", "--max-tokens", "64"),
            corrupt, "ONNX");
    }

    [Fact]
    public void Eval_ReferenceOfAnotherVocabulary_OneLineExit2()
    {
        string tiny = RepositoryFiles.Path("onnx-models", "tiny-llama");
        AssertBadInput(CliRunner.Run("eval", PlantedDecomposed, "--text", CalibratedModel.Text, "--ref", tiny, "--window", "32", "--max-tokens", "64"),
            "tiny-llama", "vocabulary");
    }

    [Fact]
    public void Eval_IdsBeyondTheVocabulary_OneLineExit2()
    {
        using var folder = new TempFolder("eval-bad");
        string ids = folder.Path("windows.json");
        File.WriteAllText(ids, "[[1, 403, 407, 261, 378], [1, 403, 5000, 261]]");
        AssertBadInput(CliRunner.Run("eval", PlantedDecomposed, "--ids", ids, "--device", "cpu"), ids, "token id 5000 (window 1)");
    }

    [Fact]
    public void Eval_TextShorterThanOneWindow_OneLineExit2()
    {
        using var folder = new TempFolder("eval-bad");
        string text = folder.Path("short.txt");
        File.WriteAllText(text, "Once upon a time, there was a cat.");
        AssertBadInput(CliRunner.Run("eval", PlantedDecomposed, "--text", text, "--window", "128"), text, "fewer than one window");
    }

    [Fact]
    public void Eval_TextAndIdsTogether_UsageErrorExit2()
    {
        var run = CliRunner.Run("eval", PlantedDecomposed, "--text", CalibratedModel.Text, "--ids", "w.json");
        Assert.True(run.ExitCode == 2, run.ToString());
        Assert.Contains("not both", Assert.Single(run.StderrLines));
    }

    [Fact]
    public void Eval_IdsAsGiven_ScoresEveryPositionAfterTheFirst()
    {
        using var folder = new TempFolder("eval-ids");
        string ids = folder.Path("windows.json");
        File.WriteAllText(ids, "[[1, 403, 407, 261, 378], [1, 403, 407]]");
        string json = folder.Path("eval.json");
        var run = CliRunner.Run("eval", PlantedDecomposed, "--ids", ids, "--device", "cpu", "--json", json);
        Assert.True(run.ExitCode == 0, run.ToString());
        using var doc = JsonDocument.Parse(File.ReadAllText(json));
        Assert.Equal(4 + 2, doc.RootElement.GetProperty("windows").GetProperty("scoredTokens").GetInt64());
        Assert.Equal(8, doc.RootElement.GetProperty("windows").GetProperty("fedTokens").GetInt64());
        // An existing --json file is kept unless --force.
        var again = CliRunner.Run("eval", PlantedDecomposed, "--ids", ids, "--json", json);
        Assert.Equal(2, again.ExitCode);
        Assert.Contains("--force", again.Stderr);
    }
}
