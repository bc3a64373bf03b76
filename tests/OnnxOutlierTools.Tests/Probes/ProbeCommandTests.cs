using System.Text.Json;
using OnnxOutlierTools.Ir;
using OnnxOutlierTools.IO;
using OnnxOutlierTools.Probes;
using OnnxOutlierTools.Runtime;
using OnnxOutlierTools.Tensors;
using OnnxOutlierTools.Tests.Cli;

namespace OnnxOutlierTools.Tests.Probes;

/// <summary><c>onnx-outliers probe</c> as a user types it.</summary>
public sealed class ProbeCommandTests
{
    private static string TinyLlama => Path.Combine(ProbeStatisticsTests.RepoRoot, "onnx-models", "tiny-llama", "model.onnx");

    [Fact]
    public void Probe_WritesModelAndManifest_AndRefusesExistingOutputsWithoutForce()
    {
        using var temp = new TempFolder("probe-cli");
        string output = temp.Path("probed.onnx");
        var result = CliRunner.Run("probe", TinyLlama, "-o", output, "--probe", "residual,down-input", "--top-k", "5");
        Assert.True(result.ExitCode == 0, result.ToString());
        Assert.StartsWith($"wrote {output}: 7 probe points (embedding 1, residual 2, residual-sum 2, down-input 2)", result.Stdout);
        string manifestPath = temp.Path("probed.probes.json");
        Assert.True(File.Exists(manifestPath));
        using var json = JsonDocument.Parse(File.ReadAllText(manifestPath));
        var points = json.RootElement.GetProperty("points");
        Assert.Equal(7, points.GetArrayLength());
        Assert.Equal(5, json.RootElement.GetProperty("settings").GetProperty("topK").GetInt32());
        Assert.Equal("probe.block1.down-input.top-k-index", points[5].GetProperty("outputs").GetProperty("topKIndex").GetString());

        // The written model runs and its probe outputs are there (5 entries of the top-k list).
        using (var session = SessionFactory.Open(output, SessionSettings.CpuUnoptimized))
        {
            var feeds = session.SynthesizeInputs(new InputSynthesisOptions { IdUpperBound = 256, Dims = new Dictionary<string, long> { ["batch_size"] = 1, ["sequence_length"] = 6 } });
            var top = session.Run(feeds, ["probe.block1.down-input.top-k-abs"]);
            Assert.Equal([5L], top[0].Dims);
        }

        byte[] before = File.ReadAllBytes(manifestPath);
        var again = CliRunner.Run("probe", TinyLlama, "-o", output);
        Assert.Equal(2, again.ExitCode);
        Assert.Single(again.StderrLines);
        Assert.Contains("already exists; add --force", again.Stderr);
        Assert.Equal(before, File.ReadAllBytes(manifestPath));

        File.Delete(manifestPath);
        var modelInTheWay = CliRunner.Run("probe", TinyLlama, "-o", output);
        Assert.Equal(2, modelInTheWay.ExitCode);
        Assert.Contains("already exists; add --force", modelInTheWay.Stderr);
        Assert.False(File.Exists(manifestPath));

        var forced = CliRunner.Run("probe", TinyLlama, "-o", output, "--force", "--json");
        Assert.True(forced.ExitCode == 0, forced.ToString());
        using var report = JsonDocument.Parse(forced.Stdout);
        Assert.Equal(15, report.RootElement.GetProperty("points").GetInt32());
        Assert.Equal(2, report.RootElement.GetProperty("counts").GetProperty("attention").GetInt32());
        Assert.True(File.Exists(manifestPath));
    }

    [Fact]
    public void Probe_UnknownTensorOrNoBlocks_IsOneClearLine()
    {
        using var temp = new TempFolder("probe-cli-bad");
        var unknown = CliRunner.Run("probe", TinyLlama, "-o", temp.Path("p.onnx"), "--probe", "residuals");
        Assert.Equal(2, unknown.ExitCode);
        Assert.Single(unknown.StderrLines);
        Assert.Contains("'residuals' (--probe) is neither a probe kind", unknown.Stderr);
        Assert.Empty(temp.Files());

        string plain = temp.Path("relu.onnx");
        using (var model = new Model(new Graph("relu")))
        {
            model.OpsetImports.Add(new OpsetId("", 17));
            var x = model.Graph.AddInput("x", TensorDataType.Float, [new Dim(2), new Dim(3)]);
            var y = model.Edit().Op("Relu", x);
            model.Graph.AddOutput(y);
            y.SetTensorType(TensorDataType.Float, [new Dim(2), new Dim(3)]);
            ModelWriter.Save(model, plain, new SaveOptions { Durable = false });
        }
        var none = CliRunner.Run("probe", plain, "-o", temp.Path("out.onnx"));
        Assert.Equal(3, none.ExitCode);
        Assert.Single(none.StderrLines);
        Assert.Contains("cannot place probes: no transformer blocks recognized", none.Stderr);
        Assert.False(File.Exists(temp.Path("out.onnx")));
    }

    [Fact]
    public void Probe_DecoderNestedInBeamSearch_IsWrittenAsAModelOfItsOwn_AsAnalyzeRunsIt()
    {
        using var temp = new TempFolder("probe-cli-nested");
        var result = CliRunner.Run("probe", Fixtures.Export("gpt2-ort-beamsearch", "tiny_gpt2_beamsearch.onnx"), "-o", temp.Path("p.onnx"));
        Assert.True(result.ExitCode == 0, result.ToString());
        Assert.Contains("probing that decoder as a model of its own", Assert.Single(result.StderrLines));
        using var written = ModelReader.Load(temp.Path("p.onnx"));
        Assert.DoesNotContain(written.Graph.Nodes, n => n.OpType == "BeamSearch");
        Assert.Contains(written.Graph.Outputs, o => o.Name.StartsWith("probe.block0.", StringComparison.Ordinal));
        using var session = OnnxOutlierTools.Runtime.SessionFactory.Open(temp.Path("p.onnx"), OnnxOutlierTools.Runtime.SessionSettings.CpuUnoptimized);
        Assert.Contains(session.OutputNames, n => n.StartsWith("probe.", StringComparison.Ordinal));
    }

    [Fact]
    public void Probe_ReportsSkippedAttention_AsWarnings()
    {
        using var temp = new TempFolder("probe-cli-skip");
        string model = temp.CopyFixture("llama-mobius-opset24", "model.onnx");
        var result = CliRunner.Run("probe", model, "-o", temp.Path("probed.onnx"), "--probe", "attention,residual");
        Assert.True(result.ExitCode == 0, result.ToString());
        Assert.Equal(2, result.StderrLines.Length);
        Assert.All(result.StderrLines, l => Assert.StartsWith("warning: not probed: block", l));
        Assert.Contains("static cache", result.Stderr);
    }
}
