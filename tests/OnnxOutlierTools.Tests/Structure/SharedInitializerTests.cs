using System.Text.Json;
using OnnxOutlierTools.IO;
using OnnxOutlierTools.Structure.Recognition;
using OnnxOutlierTools.Structure.Roles;
using OnnxOutlierTools.Tests.Cli;

namespace OnnxOutlierTools.Tests.Structure;

/// <summary>Initializers read by several roles are reported (model, text, JSON): a pass that folds a scale
/// into one role's tensor must copy a shared one first.</summary>
public class SharedInitializerTests
{
    private static ModelStructure Recognize(string flavour, string file)
    {
        using var model = ModelReader.Load(Fixtures.Export(flavour, file));
        var result = StructureRecognizer.Recognize(model);
        Assert.True(result.Recognized, result.Message);
        return result.Structure!;
    }

    [Theory]
    [InlineData("gpt2-ort-fused-fp32")]
    [InlineData("gpt2-ort-fused-fp16")]
    public void Recognize_FusedGpt2_ReportsOneGainSharedByAllElevenNorms(string flavour)
    {
        var s = Recognize(flavour, "past.onnx");
        var gain = Assert.Single(s.SharedInitializers, x => x.Initializer.Name == "transformer.h.0.ln_1.weight");
        var expected = Enumerable.Range(0, 5).Select(i => new RoleUse(i, "attentionNorm.gain"))
            .Concat(Enumerable.Range(0, 5).Select(i => new RoleUse(i, "ffnNorm.gain")))
            .Append(new RoleUse(null, "finalNorm.gain"));
        Assert.Equal(expected.OrderBy(u => u.ToString()), gain.Uses.OrderBy(u => u.ToString()));
        // Every norm's gain is that one tensor.
        var norms = s.Blocks.SelectMany(b => new[] { b.AttentionNorm!, b.FfnNorm! }).Append(s.FinalNorm!).ToList();
        Assert.Equal(11, norms.Count);
        Assert.All(norms, n => Assert.Same(gain.Initializer, n.Gain));
        // The zero biases are deduplicated too: 11 norm biases, 5 packed QKV biases.
        Assert.Equal(11, Assert.Single(s.SharedInitializers, x => x.Initializer.Name == "transformer.h.0.ln_1.bias").Uses.Count);
        var qkvBias = Assert.Single(s.SharedInitializers, x => x.Initializer.Name == "transformer.h.0.attn.c_attn.bias");
        Assert.All(qkvBias.Uses, u => Assert.Equal("attention.packedQkv.bias", u.Role));
        Assert.Equal(5, qkvBias.Uses.Count);
        Assert.Same(s.SharedInitializers, Assert.Single(s.Hints.OfType<SharedInitializersHint>()).Shared);
        Assert.Contains(s.Hints, h => StructureReport.HintText(h).Contains("'transformer.h.0.ln_1.weight' by 11 roles", StringComparison.Ordinal));
    }

    [Fact]
    public void Recognize_UntiedLlama_HasNoSharedInitializers()
    {
        // The MANIFEST: the tied lm_head is a transposed copy, not a shared initializer.
        var s = Recognize("llama-torch-past", "model.onnx");
        Assert.Empty(s.SharedInitializers);
        Assert.DoesNotContain(s.Hints, h => h.Kind == HintKind.SharedInitializers);
    }

    [Fact]
    public void Recognize_TiedBertHead_SharesTheTokenTableWithTheLmHead()
    {
        var s = Recognize("bert-toy-torch", "bert_toy_optimized.onnx");
        var tied = Assert.Single(s.SharedInitializers, x => x.Initializer.Name == "bert.embeddings.word_embeddings.weight");
        Assert.Equal([new RoleUse(null, "embedding.tokenTable"), new RoleUse(null, "lmHead.weight")], tied.Uses);
    }

    [Fact]
    public void InspectLayers_FusedGpt2_PrintsTheSharedInitializersSectionAndHint()
    {
        var r = CliRunner.Run("inspect", Fixtures.Export("gpt2-ort-fused-fp32", "past.onnx"), "--layers");
        Assert.True(r.ExitCode == 0, r.ToString());
        Assert.Contains("shared initializers (one tensor read by several roles", r.Stdout);
        Assert.Contains("  transformer.h.0.ln_1.weight: 11 roles: attentionNorm.gain (blocks 0-4), ffnNorm.gain (blocks 0-4), finalNorm.gain" + Environment.NewLine, r.Stdout);
        Assert.Contains("  transformer.h.0.attn.c_attn.bias: 5 roles: attention.packedQkv.bias (blocks 0-4)", r.Stdout);
        Assert.Contains("hint: 3 initializer(s) shared by several roles ('transformer.h.0.ln_1.weight' by 11 roles", r.Stdout);
    }

    [Fact]
    public void InspectLayersJson_FusedGpt2_ListsSharedInitializersWithTheirRoles()
    {
        var r = CliRunner.Run("inspect", Fixtures.Export("gpt2-ort-fused-fp32", "past.onnx"), "--layers", "--json");
        Assert.True(r.ExitCode == 0, r.ToString());
        using var doc = JsonDocument.Parse(r.Stdout);
        var layers = doc.RootElement.GetProperty("layers");
        Assert.Equal(StructureReport.SchemaVersion, layers.GetProperty("schemaVersion").GetInt32());
        var gain = layers.GetProperty("sharedInitializers").EnumerateArray().Single(x => x.GetProperty("name").GetString() == "transformer.h.0.ln_1.weight");
        var uses = gain.GetProperty("uses").EnumerateArray().ToList();
        Assert.Equal(11, uses.Count);
        Assert.Equal(5, uses.Count(u => u.GetProperty("role").GetString() == "attentionNorm.gain"));
        var final = Assert.Single(uses, u => u.GetProperty("role").GetString() == "finalNorm.gain");
        Assert.Equal(JsonValueKind.Null, final.GetProperty("block").ValueKind);
    }

    [Theory]
    [InlineData(new[] { 3 }, "block 3")]
    [InlineData(new[] { 0, 1, 2, 3, 4 }, "blocks 0-4")]
    [InlineData(new[] { 5, 0, 2, 6, 7 }, "blocks 0, 2, 5-7")]
    public void Blocks_CollapsesConsecutiveIndicesIntoRanges(int[] indices, string expected) =>
        Assert.Equal(expected, StructureReport.Blocks(indices));
}
