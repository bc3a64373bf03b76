using System.Text.Json;
using System.Text.RegularExpressions;

namespace OnnxOutlierTools.Tests.Cli;

/// <summary><c>inspect --layers</c> as a user types it, and every CLI command the README shows.</summary>
public class InspectLayersTests
{
    [Fact]
    public void InspectLayers_GqaModel_PrintsTheRoleTable()
    {
        var r = CliRunner.Run("inspect", Fixtures.Export("llama-genai-gqa-fp32", "model.onnx"), "--layers");
        Assert.True(r.ExitCode == 0, r.ToString());
        Assert.Contains("Structure: 2 pre-norm decoder block(s)", r.Stdout);
        foreach (var role in new[] { "block 0", "block 1", "residual in", "attn norm", "packed qkv model.layers.0.attn.qkv_proj.MatMul.weight",
                     "o proj", "kv cache      past past_key_values.0.key", "ffn norm", "glu silu", "down input    /model/layers.0/mlp/Mul/output_0",
                     "residual out", "final norm", "lm head         lm_head.MatMul.weight [16->32000]" })
            Assert.Contains(role, r.Stdout);
        Assert.DoesNotContain("INCOMPLETE", r.Stdout);
        Assert.DoesNotContain("Rule trace", r.Stdout); // only with --explain
    }

    [Fact]
    public void InspectLayers_Qwen3TtsMobius_ShowsQkNormInTableAndJson()
    {
        string model = Fixtures.Path("exports-modern", "qwen3-tts-codepredictor-mobius", "model.onnx");
        var r = CliRunner.Run("inspect", model, "--layers");
        Assert.True(r.ExitCode == 0, r.ToString());
        Assert.Contains("Structure: 5 pre-norm decoder block(s)", r.Stdout);
        Assert.Contains("qk norm       q per-head [128] RMSNormalization gain code_predictor.layers.4.self_attn.q_norm.weight", r.Stdout);
        Assert.DoesNotContain("INCOMPLETE", r.Stdout);

        var j = CliRunner.Run("inspect", model, "--layers", "--json");
        Assert.True(j.ExitCode == 0, j.ToString());
        using var doc = JsonDocument.Parse(j.Stdout);
        var layers = doc.RootElement.GetProperty("layers");
        Assert.Equal(2, layers.GetProperty("schemaVersion").GetInt32());
        Assert.Equal("attention", layers.GetProperty("blocks")[0].GetProperty("kind").GetString());
        var attention = layers.GetProperty("blocks")[0].GetProperty("attention");
        var k = attention.GetProperty("keyNorm");
        Assert.Equal("perHead", k.GetProperty("scope").GetString());
        Assert.Equal(128, k.GetProperty("normalizedSize").GetInt64());
        Assert.Equal("code_predictor.layers.0.self_attn.k_norm.weight", k.GetProperty("norm").GetProperty("gain").GetString());
        Assert.Equal(JsonValueKind.Null, attention.GetProperty("outputGate").ValueKind);
        Assert.Equal("global", attention.GetProperty("window").GetProperty("kind").GetString());
    }

    [Fact]
    public void InspectLayersJson_MiniLm_IsTheStableMachineForm()
    {
        var r = CliRunner.Run("inspect", MiniLm.ModelPath, "--layers", "--json");
        Assert.True(r.ExitCode == 0, r.ToString());
        using var doc = JsonDocument.Parse(r.Stdout);
        var layers = doc.RootElement.GetProperty("layers");
        Assert.True(layers.GetProperty("recognized").GetBoolean());
        Assert.Equal(6, layers.GetProperty("blockCount").GetInt32());
        Assert.Equal("post-norm", layers.GetProperty("normPlacement").GetString());
        Assert.Equal("encoder", layers.GetProperty("architecture").GetString());
        var block = layers.GetProperty("blocks")[0];
        Assert.Equal(12, block.GetProperty("attention").GetProperty("numHeads").GetInt32());
        Assert.Equal("encoder.layer.0.attention.output.LayerNorm.weight", block.GetProperty("attentionNorm").GetProperty("gain").GetString());
        Assert.Equal(1536, block.GetProperty("ffn").GetProperty("down").GetProperty("inFeatures").GetInt64());
        Assert.Equal(0, block.GetProperty("missing").GetArrayLength());
        Assert.Equal(JsonValueKind.Null, layers.GetProperty("trace").ValueKind); // only with --explain
        Assert.Equal(1, doc.RootElement.GetProperty("schemaVersion").GetInt32()); // the inspect summary is still there
    }

    [Fact]
    public void InspectLayersJson_FusedSkipNorm_NamesTheUnemittedResidualSum()
    {
        var r = CliRunner.Run("inspect", Fixtures.Export("llama-genai-gqa-fp32", "model.onnx"), "--layers", "--json");
        Assert.True(r.ExitCode == 0, r.ToString());
        using var doc = JsonDocument.Parse(r.Stdout);
        var layers = doc.RootElement.GetProperty("layers");
        Assert.Equal(2, layers.GetProperty("schemaVersion").GetInt32());
        var blocks = layers.GetProperty("blocks");
        // Block 0 ends at the residual sum the next skip norm already emits (output 3) ...
        var out0 = blocks[0].GetProperty("residualOut");
        Assert.True(out0.GetProperty("emitted").GetBoolean());
        Assert.Equal("/model/layers.1/input_layernorm/output_3", out0.GetProperty("value").GetString());
        Assert.Equal(out0.GetProperty("value").GetString(), blocks[1].GetProperty("residualIn").GetProperty("value").GetString());
        // ... block 1 at one the final norm computes but does not emit: a probe has to request it.
        var out1 = blocks[1].GetProperty("residualOut");
        Assert.False(out1.GetProperty("emitted").GetBoolean());
        Assert.Equal(JsonValueKind.Null, out1.GetProperty("value").ValueKind);
        Assert.Equal("SkipSimplifiedLayerNormalization", out1.GetProperty("node").GetProperty("opType").GetString());
        Assert.Equal("com.microsoft", out1.GetProperty("node").GetProperty("domain").GetString());
        Assert.Equal(3, out1.GetProperty("outputIndex").GetInt32());
        var kv = layers.GetProperty("kvCache");
        Assert.Equal(2, kv.GetArrayLength());
        Assert.Equal("present.1.value", kv[1].GetProperty("presentValue").GetString());
    }

    [Fact]
    public void InspectLayersExplain_AddsEachRulesMatchesAndNearMisses()
    {
        var r = CliRunner.Run("inspect", Fixtures.Export("gpt2-torch-nopast", "GPT2Model.onnx"), "--layers", "--explain");
        Assert.True(r.ExitCode == 0, r.ToString());
        Assert.Contains("Rule trace", r.Stdout);
        Assert.Matches(new Regex(@"\[norm\] DecomposedLayerNorm: 25 match\(es\)"), r.Stdout);
        Assert.Matches(new Regex(@"\[norm\] DecomposedRmsNorm: 0 match\(es\); near miss .*inside of a LayerNorm"), r.Stdout);
        Assert.Matches(new Regex(@"\[ffn\] GLU/silu: 0 match\(es\); near miss rooted at"), r.Stdout);
    }

    [Fact]
    public void InspectLayers_NonTransformer_ExitsThreeWithMessageAndTrace()
    {
        using var temp = new TempFolder("cli-layers");
        var b = new Ir.GraphBuilder();
        var x = b.Input("x", Tensors.TensorDataType.Float, 1, 8);
        b.Output(b.Op("Relu", b.Op("MatMul", x, b.Initializer("w", new float[64], 8, 8))), Tensors.TensorDataType.Float, 1, 8);
        using (var model = b.ToModel()) OnnxOutlierTools.IO.ModelWriter.Save(model, temp.Path("mlp.onnx"));
        var r = CliRunner.Run("inspect", temp.Path("mlp.onnx"), "--layers");
        Assert.Equal(3, r.ExitCode);
        Assert.Contains("Structure not recognized: no transformer blocks recognized", r.Stdout);
        Assert.Contains("near miss", r.Stdout);
        Assert.Empty(r.Stderr);
    }

    [Fact]
    public void Explain_WithoutLayers_IsAUsageError()
    {
        var r = CliRunner.Run("inspect", Fixtures.Export("distilbert-optimum", "model.onnx"), "--explain");
        Assert.Equal(2, r.ExitCode);
        Assert.Contains("--explain needs --layers", r.Stderr);
    }

    /// <summary>The README's quick start, command by command, run in-process from the repository root.</summary>
    [Fact]
    public void ReadmeCommands_RunAsDocumented()
    {
        string root = RepositoryRoot();
        const string prefix = "dotnet run --project src/OnnxOutlierTools.Cli -c Release -- ";
        // `run --demo` (minutes) is run by the install test through the installed tool, and the pipeline by RunCommandTests.
        var commands = File.ReadAllLines(Path.Combine(root, "README.md")).Where(l => l.StartsWith(prefix, StringComparison.Ordinal))
            .Where(l => !l.Contains(" run --demo", StringComparison.Ordinal)).ToList();
        Assert.NotEmpty(commands);
        using var temp = new TempFolder("readme-quick-start");
        foreach (var line in commands)
        {
            // Paths are the repository's (the README runs from its root), fixtures wherever the tests find them; "out" goes to a temp folder.
            var args = line[prefix.Length..].Split(' ', StringSplitOptions.RemoveEmptyEntries)
                .Select(a => a == "out" ? temp.Path("out")
                    : a.StartsWith("../shared/fixtures/", StringComparison.Ordinal) ? Fixtures.Path(a["../shared/fixtures/".Length..].Split('/'))
                    : File.Exists(Path.Combine(root, a)) ? Path.Combine(root, a) : a).ToArray();
            var r = CliRunner.Run(args);
            Assert.True(r.ExitCode == 0, $"{line}\n{r}");
            Assert.NotEmpty(r.Stdout);
        }
    }

    private static string RepositoryRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "OnnxOutlierTools.sln"))) return dir.FullName;
        throw new InvalidOperationException("repository root not found");
    }
}
