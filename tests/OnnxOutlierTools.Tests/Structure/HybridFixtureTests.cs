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
            Assert.Equal(("glu", "silu", 3584L), (b.Ffn!.Kind, b.Ffn.Activation, b.Ffn.Down.InFeatures));
            Assert.True(b.Ffn.Up.Quantized && b.Ffn.Up.Form == "MatMulInteger", b.Ffn.Up.ToString());
            Assert.Same(b.FfnNorm!.Output, b.Ffn.Up.Input);
            Assert.NotNull(b.AttentionNorm);
            if (full)
            {
                // Gated attention with QK-norm: an attention role once those rules exist, reported by the fallback until then.
                Assert.True(b.Kind is BlockKind.Attention or BlockKind.Unknown, $"block {b.Index}: {b.Kind}");
                if (b.Mixer is { } m)
                {
                    Assert.Contains(m.CoreNodes, n => n.OpType == "GroupQueryAttention");
                    Assert.Equal($"model.layers.{b.Index}.attn.o_proj.MatMul.weight_quantized", m.OutputProjection!.Weight.Name);
                    Assert.Contains(m.States, st => st.Kind == StateKind.Key && st.Past!.Name == $"past_key_values.{b.Index}.key" && st.Present!.Name == $"present.{b.Index}.key");
                }
                continue;
            }
            Assert.Equal(BlockKind.LinearAttention, b.Kind);
            var mixer = b.Mixer!;
            Assert.StartsWith("If(", mixer.Form);
            var inputs = Assert.Single(mixer.InputProjections);
            Assert.Same(b.AttentionNorm, inputs.Norm);
            Assert.Equal(["in_proj_qkv", "in_proj_z", "in_proj_b", "in_proj_a"],
                inputs.Linears.Select(l => l.Weight.Name.Split('.')[4]).ToArray());
            Assert.Equal((2048L, 1024L), (mixer.OutputProjection!.InFeatures, mixer.OutputProjection.OutFeatures));
            Assert.Equal([(StateKind.Conv, $"past_conv.{b.Index}", $"present_conv.{b.Index}"), (StateKind.Recurrent, $"past_recurrent.{b.Index}", $"present_recurrent.{b.Index}")],
                mixer.States.Select(st => (st.Kind, st.Past!.Name, st.Present!.Name)).ToArray());
        }
        Assert.Equal(18, s.Blocks.Count(b => b.Kind == BlockKind.LinearAttention));
        Assert.Equal("inputs_embeds", s.Blocks[0].ResidualIn.Value!.Name);
        Assert.Equal(248320L, s.LmHead!.OutFeatures);
        Assert.NotNull(s.FinalNorm);
        var json = StructureReport.ToJson(result, includeTrace: false);
        Assert.Equal("linear-attention", json.Blocks[0].Kind);
        Assert.Equal("present_recurrent.0", json.Blocks[0].Mixer!.States[1].Present);
    }

    [Fact]
    public void Qwen3TtsCodePredictor_FiveBlocks_SwishGluFfn()
    {
        // QK-norm before ai.onnx Attention: attention once the QK-norm rules exist; the fallback reports the blocks until then.
        var result = Recognize("qwen3-tts-codepredictor-mobius", "model.onnx");
        Assert.True(result.Recognized, result.Message + "\n" + StructureReport.ToText(result, explain: true));
        var s = result.Structure!;
        Assert.Equal(5, s.Blocks.Count);
        Assert.All(s.Blocks, b =>
        {
            Assert.True(b.Kind is BlockKind.Attention or BlockKind.Unknown, $"block {b.Index}: {b.Kind}");
            Assert.Equal(("glu", "silu"), (b.Ffn!.Kind, b.Ffn.Activation));
            Assert.Equal($"code_predictor.layers.{b.Index}.mlp.down_proj.weight", b.Ffn.Down.Weight.Name);
            Assert.NotNull(b.AttentionNorm);
            Assert.NotNull(b.FfnNorm);
        });
    }
}
