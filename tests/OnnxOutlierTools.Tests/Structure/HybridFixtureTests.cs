using OnnxOutlierTools.IO;
using OnnxOutlierTools.Structure.Recognition;
using OnnxOutlierTools.Structure.Roles;

namespace OnnxOutlierTools.Tests.Structure;

/// <summary>Real hybrid exports of ../shared/fixtures/exports-modern, with the block counts its MANIFEST states.</summary>
public class HybridFixtureTests
{
    private static RecognitionResult Recognize(params string[] path)
    {
        using var model = ModelReader.Load(Fixtures.Path(["exports-modern", .. path]), new LoadOptions { RequireExternalData = false });
        return StructureRecognizer.Recognize(model);
    }

    [Fact]
    public void Qwen35_Int8Dynamic_Has18GatedDeltaNetAnd6AttentionBlocks()
    {
        var result = Recognize("qwen35-0.8b-int8dyn-graphonly", "decoder_model_merged_quantized.onnx");
        Assert.True(result.Recognized, result.Message + "\n" + StructureReport.ToText(result, explain: true));
        var s = result.Structure!;
        Assert.Equal(24, s.Blocks.Count);
        foreach (var b in s.Blocks)
        {
            bool full = b.Index % 4 == 3; // full_attention_interval 4 (config.json)
            // Every FFN is a SwiGLU of MatMulInteger linears fed by DynamicQuantizeLinear; their input is the float norm output.
            Assert.Equal((FfnKind.Glu, FfnActivation.Silu, 3584L), (b.Ffn!.Kind, b.Ffn.Activation, b.Ffn.Down.InFeatures));
            Assert.True(b.Ffn.Up.Quantized && b.Ffn.Up.Form == LinearForm.MatMulInteger, b.Ffn.Up.ToString());
            Assert.Same(b.FfnNorm!.Output, b.Ffn.Up.Input);
            Assert.NotNull(b.AttentionNorm);
            if (full)
            {
                // Gated attention with QK-norm: an attention role (QK-norm and output-gate rules), not an opaque mixer.
                Assert.Equal(BlockKind.Attention, b.Kind);
                Assert.Null(b.Mixer);
                var a = Assert.IsType<AttentionRole>(b.Attention);
                Assert.Equal(AttentionForm.GroupQueryAttention, a.Form);
                Assert.Empty(StructureReport.Missing(b));
                Assert.Equal($"model.layers.{b.Index}.attn.q_norm.layernorm.weight", a.QueryNorm?.Gain.Name);
                Assert.Equal($"model.layers.{b.Index}.attn.k_norm.layernorm.weight", a.KeyNorm?.Gain.Name);
                Assert.Equal(GateSource.PackedWithQuery, a.OutputGate?.Source);
                Assert.Equal($"model.layers.{b.Index}.attn.o_proj.MatMul.weight_quantized", a.Output?.Weight.Name);
                Assert.Equal(($"past_key_values.{b.Index}.key", $"present.{b.Index}.key"), (a.Cache?.PastKey?.Name, a.Cache?.PresentKey?.Name));
                continue;
            }
            Assert.Equal(BlockKind.LinearAttention, b.Kind);
            var mixer = b.Mixer!;
            Assert.Equal("If", mixer.Form.CoreOps[0].OpType);
            Assert.NotEmpty(mixer.Form.CoreOps[0].Inner);
            var inputs = Assert.Single(mixer.InputProjections);
            Assert.Same(b.AttentionNorm, inputs.Norm);
            Assert.Equal(["in_proj_qkv", "in_proj_z", "in_proj_b", "in_proj_a"],
                inputs.Linears.Select(l => l.Weight.Name.Split('.')[4]).ToArray());
            Assert.Equal((2048L, 1024L), (mixer.OutputProjection!.InFeatures, mixer.OutputProjection.OutFeatures));
            Assert.Equal([(StateKind.Conv, $"past_conv.{b.Index}", $"present_conv.{b.Index}"), (StateKind.Recurrent, $"past_recurrent.{b.Index}", $"present_recurrent.{b.Index}")],
                mixer.States.Select(st => (st.Kind, st.Past!.Name, st.Present!.Name)).ToArray());
        }
        Assert.Equal(18, s.Blocks.Count(b => b.Kind == BlockKind.LinearAttention));
        Assert.Equal(6, s.Blocks.Count(b => b.Kind == BlockKind.Attention));
        Assert.Equal("inputs_embeds", s.Blocks[0].ResidualIn.Value!.Name);
        Assert.Equal(248320L, s.LmHead!.OutFeatures);
        Assert.NotNull(s.FinalNorm);
        var json = StructureReport.ToJson(result, includeTrace: false);
        Assert.Equal("linear-attention", json.Blocks[0].Kind);
        Assert.Equal("present_recurrent.0", json.Blocks[0].Mixer!.States[1].Present);
    }

    [Fact]
    public void Qwen3TtsCodePredictor_FiveAttentionBlocksWithQkNorm_SwishGluFfn()
    {
        // QK-norm before ai.onnx Attention: attention blocks with per-head query and key norms.
        var result = Recognize("qwen3-tts-codepredictor-mobius", "model.onnx");
        Assert.True(result.Recognized, result.Message + "\n" + StructureReport.ToText(result, explain: true));
        var s = result.Structure!;
        Assert.Equal(5, s.Blocks.Count);
        Assert.All(s.Blocks, b =>
        {
            Assert.Equal(BlockKind.Attention, b.Kind);
            var a = Assert.IsType<AttentionRole>(b.Attention);
            Assert.Equal($"code_predictor.layers.{b.Index}.self_attn.q_norm.weight", a.QueryNorm?.Gain.Name);
            Assert.Equal($"code_predictor.layers.{b.Index}.self_attn.k_norm.weight", a.KeyNorm?.Gain.Name);
            Assert.Equal((FfnKind.Glu, FfnActivation.Silu), (b.Ffn!.Kind, b.Ffn.Activation));
            Assert.Equal($"code_predictor.layers.{b.Index}.mlp.down_proj.weight", b.Ffn.Down.Weight.Name);
            Assert.NotNull(b.AttentionNorm);
            Assert.NotNull(b.FfnNorm);
        });
    }
}
