using System.Text.Json;

namespace OnnxOutlierTools.Tests.Cli;

/// <summary><c>inspect --layers</c> on hybrid and MoE exports as a user types it: block kinds, mixer states and MoE roles in
/// the table and in the JSON (layers schema 2).</summary>
public class InspectBlockKindsTests
{
    private static string Modern(params string[] parts) => Fixtures.Path(["exports-modern", .. parts]);

    [Fact]
    public void InspectLayers_Qwen35_ShowsLinearAttentionBlocksAndStates()
    {
        var r = CliRunner.Run("inspect", Modern("qwen35-0.8b-int8dyn-graphonly", "decoder_model_merged_quantized.onnx"), "--layers", "--explain");
        Assert.True(r.ExitCode == 0, r.ToString());
        Assert.Contains("Structure: 24 pre-norm decoder block(s)", r.Stdout);
        foreach (var line in new[] { "block 0 [linear-attention]", "mixer         linear-attention If(", "states      conv past_conv.0 -> present_conv.0, recurrent past_recurrent.0 -> present_recurrent.0",
                     "out proj    model.layers.0.gdn.out_proj.MatMul.weight_quantized [2048->1024] MatMulInteger quantized", "[blocks] Blocks/Fallback",
                     // The full-attention layers are attention blocks: QK-norm and the gate packed with q_proj.
                     "qk norm       q per-head [256] SimplifiedLayerNormalization gain model.layers.3.attn.q_norm.layernorm.weight",
                     "output gate   sigmoid(/model/layers.3/attn/q_proj/Reshape_Gate/output_0) from the q projection (packed) -> /model/layers.3/attn/GateMul/output_0" })
            Assert.Contains(line, r.Stdout);
        Assert.Contains("block 3", r.Stdout.Split('\n').Select(l => l.TrimEnd('\r'))); // an attention block has no [kind] tag
    }

    [Fact]
    public void InspectLayersJson_Glm52_HasKindsLowRankAndMoe()
    {
        var r = CliRunner.Run("inspect", Modern("glm52-mla-moe-int4-mobius", "model.onnx"), "--layers", "--json");
        Assert.True(r.ExitCode == 0, r.ToString());
        using var doc = JsonDocument.Parse(r.Stdout);
        var layers = doc.RootElement.GetProperty("layers");
        Assert.Equal(2, layers.GetProperty("schemaVersion").GetInt32());
        var blocks = layers.GetProperty("blocks");
        Assert.Equal(2, blocks.GetArrayLength());
        Assert.Equal("attention", blocks[0].GetProperty("kind").GetString());
        Assert.Equal("model.layers.0.self_attn.q_a_proj.weight", blocks[0].GetProperty("attention").GetProperty("lowRank").GetProperty("queryDown").GetProperty("weight").GetString());
        Assert.Equal(JsonValueKind.Null, blocks[1].GetProperty("ffn").ValueKind);
        var moe = blocks[1].GetProperty("moe");
        Assert.Equal("fused", moe.GetProperty("form").GetString());
        Assert.Equal("model.layers.1.mlp.moe.gate.weight", moe.GetProperty("router").GetProperty("weight").GetString());
        Assert.Equal(4, moe.GetProperty("up").GetProperty("bits").GetInt32());
        Assert.Equal("model.layers.1.mlp.shared_experts.up_proj.weight", moe.GetProperty("sharedExpert").GetProperty("up").GetProperty("weight").GetString());
        Assert.Equal(0, blocks[1].GetProperty("missing").GetArrayLength());
    }
}
