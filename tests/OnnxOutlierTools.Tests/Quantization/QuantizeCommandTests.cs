using System.Text.Json;
using OnnxOutlierTools.IO;
using OnnxOutlierTools.Ir;
using OnnxOutlierTools.Tests.Cli;

namespace OnnxOutlierTools.Tests.Quantization;

/// <summary>onnx-outliers quantize end to end on the planted model, as a user types it: the static scheme calibrated on the
/// TinyStories sample with the site ranking, driven by analyze's stats.json, the dynamic scheme without calibration; bad
/// input gets one line and exit 2, and nothing is written.</summary>
public sealed class QuantizeCommandTests
{
    private static readonly string Planted = RepositoryFiles.Path("onnx-models", "planted-llama-decomposed", "model.onnx");
    private static string Text => Fixtures.Path("text", "tinystories-sample.txt");

    [Fact]
    public void Static_WithText_OnPlanted_WritesTheFolder_AndRanksTheMassiveActivationFirst()
    {
        using var temp = new TempFolder("quantize-cli");
        string output = temp.Path("out");
        var r = CliRunner.Run("quantize", Planted, "--scheme", "w8a8-static", "--text", Text, "--seq-len", "64", "--max-tokens", "256", "--attribute", "-o", output);
        Assert.True(r.ExitCode == 0, r.ToString());
        Assert.Contains("w8a8-static: 35 linear(s) in 20 site(s) quantized (down 5, gate 5, k 5, o 5, q 5, up 5, v 5)", r.Stdout);
        Assert.Contains("nodes per rule: weight-dq=35, activation-qdq=35", r.Stdout);
        Assert.Contains("left in float: lm-head", r.Stdout);
        Assert.Matches(@"\n +1 block1\.down ", r.Stdout);
        Assert.Equal(new[] { "config.json", "model.onnx", "model.onnx.data", "quantization.json", "tokenizer.bin" }, Directory.GetFiles(output).Select(f => Path.GetFileName(f)!).Order().ToArray());

        using var report = JsonDocument.Parse(File.ReadAllText(Path.Combine(output, "quantization.json")));
        var root = report.RootElement;
        Assert.Equal("onnx-outliers-quantization", root.GetProperty("format").GetString());
        Assert.Equal("w8a8-static", root.GetProperty("scheme").GetString());
        Assert.Equal(20, root.GetProperty("sites").GetArrayLength());
        Assert.Equal("w8a8-static", root.GetProperty("request").GetProperty("scheme").GetString());
        Assert.Equal(64, root.GetProperty("calibration").GetProperty("sequenceLength").GetInt32());
        Assert.True(root.GetProperty("comparison").GetProperty("meanKl").GetDouble() > 0);
        var ranked = root.GetProperty("attribution").GetProperty("sites");
        Assert.Equal(20, ranked.GetArrayLength());
        Assert.Equal("block1.down", ranked[0].GetProperty("site").GetString());
        Assert.True(root.GetProperty("size").GetProperty("quantizedBytes").GetInt64() < root.GetProperty("size").GetProperty("originalBytes").GetInt64() * 0.6);

        using var model = ModelReader.Load(Path.Combine(output, "model.onnx"));
        Assert.All(model.Graph.Nodes.Where(n => n.OpType is "QuantizeLinear" or "DequantizeLinear"), n => Assert.Equal("w8a8-static", NodeOrigin.Of(n)?.Pass));
    }

    [Fact]
    public void Static_FromAnalyzeStats_AndDynamicWithoutCalibration()
    {
        using var temp = new TempFolder("quantize-stats");
        var a = CliRunner.Run("analyze", Planted, "--text", Text, "--seq-len", "64", "--max-tokens", "256", "--probe", "linear-inputs", "-o", temp.Path("analysis"));
        Assert.True(a.ExitCode == 0, a.ToString());
        var s = CliRunner.Run("quantize", Planted, "--scheme", "w8a8-static", "--stats", temp.Path("analysis", "stats.json"), "--percentile", "99", "-o", temp.Path("static"));
        Assert.True(s.ExitCode == 0, s.ToString());
        Assert.Contains("p99 of token max", s.Stdout);
        Assert.DoesNotContain("vs the original", s.Stdout); // no windows given: nothing to compare on

        var d = CliRunner.Run("quantize", Planted, "--scheme", "w8a8-dynamic", "-o", temp.Path("dynamic"));
        Assert.True(d.ExitCode == 0, d.ToString());
        Assert.Contains("nodes per rule: dynamic-int8-matmul=35", d.Stdout);
        Assert.Contains("dynamic per-token", d.Stdout);

        // --force replaces a folder quantize wrote.
        var again = CliRunner.Run("quantize", Planted, "--scheme", "w8a8-dynamic", "-o", temp.Path("dynamic"), "--force");
        Assert.True(again.ExitCode == 0, again.ToString());
    }

    [Fact]
    public void BadInput_OneLine_ExitTwo_NothingWritten()
    {
        using var temp = new TempFolder("quantize-bad");
        string output = temp.Path("out");

        var blockSize = CliRunner.Run("quantize", Planted, "--scheme", "int4-rtn", "--block-size", "48", "-o", output);
        Assert.Equal(2, blockSize.ExitCode);
        Assert.Contains("--block-size", Assert.Single(blockSize.StderrLines));

        var dqLevel = CliRunner.Run("quantize", Planted, "--scheme", "int4-rtn", "--int4-format", "dq", "--accuracy-level", "4", "-o", output);
        Assert.Equal(2, dqLevel.ExitCode);
        Assert.Contains("accuracy_level", Assert.Single(dqLevel.StderrLines));

        var int4Attribute = CliRunner.Run("quantize", Planted, "--scheme", "int4-rtn", "--attribute", "--text", Text, "--seq-len", "64", "--max-tokens", "128", "-o", output);
        Assert.Equal(2, int4Attribute.ExitCode);
        Assert.Contains("--attribute", Assert.Single(int4Attribute.StderrLines, l => l.StartsWith("error:", StringComparison.Ordinal)));

        var awqNoText = CliRunner.Run("quantize", Planted, "--scheme", "int4-awq", "-o", output);
        Assert.Equal(2, awqNoText.ExitCode);
        Assert.Single(awqNoText.StderrLines);

        var unknown = CliRunner.Run("quantize", Planted, "--scheme", "w4a4", "-o", output);
        Assert.Equal(2, unknown.ExitCode);
        Assert.Contains("--scheme must be one of w8a8-static, w8a8-dynamic, int4-rtn, int4-awq", Assert.Single(unknown.StderrLines));

        var noStats = CliRunner.Run("quantize", Planted, "--scheme", "w8a8-static", "-o", output);
        Assert.Equal(2, noStats.ExitCode);
        Assert.Contains("needs calibration statistics", Assert.Single(noStats.StderrLines));

        var attribute = CliRunner.Run("quantize", Planted, "--scheme", "w8a8-dynamic", "--attribute", "-o", output);
        Assert.Equal(2, attribute.ExitCode);
        Assert.Contains("--attribute needs calibration windows", Assert.Single(attribute.StderrLines));

        var percentile = CliRunner.Run("quantize", Planted, "--scheme", "w8a8-static", "--percentile", "120", "-o", output);
        Assert.Equal(2, percentile.ExitCode);
        Assert.Contains("--percentile must be in (0, 100]", Assert.Single(percentile.StderrLines));

        // A model without recognized linears: one line naming the file.
        var b = new GraphBuilder();
        var x = b.Input("x", Tensors.TensorDataType.Float, 1, 8);
        b.Output(b.Op("Relu", b.Op("MatMul", x, b.Initializer("w", new float[64], 8, 8))), Tensors.TensorDataType.Float, 1, 8);
        using (var mlp = b.ToModel()) ModelWriter.Save(mlp, temp.Path("mlp.onnx"));
        var none = CliRunner.Run("quantize", temp.Path("mlp.onnx"), "--scheme", "w8a8-dynamic", "-o", output);
        Assert.Equal(2, none.ExitCode);
        string line = Assert.Single(none.StderrLines);
        Assert.Contains("mlp.onnx: no transformer blocks recognized, so no linears to quantize", line);

        // Statistics of another model (stories260K, width 64) for the planted one (width 80).
        var a = CliRunner.Run("analyze", Fixtures.Export("llama-torch-nopast", "model.onnx"), "--text", Text, "--tokenizer", Fixtures.Path("llama2c", "tok512.bin"),
            "--seq-len", "32", "--max-tokens", "64", "--probe", "linear-inputs", "-o", temp.Path("other"));
        Assert.True(a.ExitCode == 0, a.ToString());
        var other = CliRunner.Run("quantize", Planted, "--scheme", "w8a8-static", "--stats", temp.Path("other", "stats.json"), "-o", output);
        Assert.Equal(2, other.ExitCode);
        string mismatch = Assert.Single(other.StderrLines);
        Assert.Contains("stats.json: point 'block0.attention-input' has 64 channels, the linears reading", mismatch);
        Assert.EndsWith("take 80; run analyze on this model", mismatch);

        // An existing folder of other files is never replaced.
        Directory.CreateDirectory(temp.Path("mine"));
        File.WriteAllText(temp.Path("mine", "notes.txt"), "mine");
        var mine = CliRunner.Run("quantize", Planted, "--scheme", "w8a8-dynamic", "-o", temp.Path("mine"), "--force");
        Assert.Equal(2, mine.ExitCode);
        Assert.Contains("was not written by quantize", Assert.Single(mine.StderrLines));

        Assert.False(Directory.Exists(output));
        Assert.Equal(new[] { "mine", "mlp.onnx", "other" }, Directory.GetFileSystemEntries(temp.FullPath).Select(f => Path.GetFileName(f)!).Order().ToArray());
    }

    /// <summary>The int4 schemes through the CLI: MatMulNBits at accuracy levels 0 and 4, the opset-21 blocked DequantizeLinear
    /// form, and AWQ on calibration text; every folder loads and runs in ORT (the command compares it with the original).</summary>
    [Theory]
    [InlineData("int4-rtn", "matmulnbits", "0", "MatMulNBits")]
    [InlineData("int4-rtn", "matmulnbits", "4", "MatMulNBits")]
    [InlineData("int4-rtn", "dq", "0", "DequantizeLinear")]
    [InlineData("int4-awq", "matmulnbits", "0", "MatMulNBits")]
    public void Int4_Schemes_WriteModelsThatOrtRuns(string scheme, string format, string level, string op)
    {
        using var temp = new TempFolder("quantize-int4");
        string output = temp.Path("out");
        var r = CliRunner.Run("quantize", Planted, "--scheme", scheme, "--int4-format", format, "--accuracy-level", level, "--block-size", "32",
            "--text", Text, "--seq-len", "64", "--max-tokens", "256", "-o", output);
        Assert.True(r.ExitCode == 0, r.ToString());
        using var report = JsonDocument.Parse(File.ReadAllText(Path.Combine(output, "quantization.json")));
        var root = report.RootElement;
        Assert.Equal(scheme, root.GetProperty("scheme").GetString());
        Assert.True(double.IsFinite(root.GetProperty("comparison").GetProperty("meanKl").GetDouble()));
        using var model = ModelReader.Load(Path.Combine(output, "model.onnx"));
        Assert.Equal(35, model.Graph.Nodes.Count(n => n.OpType == op && (op != "DequantizeLinear" || n.Input(0)?.ConstValue?.DataType is Tensors.TensorDataType.Int4 or Tensors.TensorDataType.UInt4)));
        if (format == "dq") Assert.Equal(21, model.OpsetVersion(""));
        if (op == "MatMulNBits")
            Assert.All(model.Graph.Nodes.Where(n => n.OpType == op), n => Assert.Equal(long.Parse(level), n.Attributes.FirstOrDefault(a => a.Name == "accuracy_level")?.AsInt() ?? 0));
    }
}
