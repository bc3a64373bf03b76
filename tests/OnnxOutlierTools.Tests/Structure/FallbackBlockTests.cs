using Microsoft.ML.OnnxRuntime;
using OnnxOutlierTools.IO;
using OnnxOutlierTools.Ir;
using OnnxOutlierTools.Structure.Recognition;
using OnnxOutlierTools.Structure.Roles;
using OnnxOutlierTools.Tensors;

namespace OnnxOutlierTools.Tests.Structure;

/// <summary>The generic fallback (#7 item 8): blocks whose token mixer no rule knows are still reported from the
/// residual stream, with their norms and linears; custom-domain SDPA is attention; classifier heads are not LM heads.</summary>
public class FallbackBlockTests
{
    private const int D = 16, S = 5;

    /// <summary>Two pre-norm blocks whose token mixer is a causal running sum (CumSum over the sequence) between an
    /// in and an out projection: a mixer no rule knows, built only from standard ops so ORT runs it.
    /// <paramref name="head"/>: "lm" (a per-token vocabulary head), "classifier" (first token pooled, 3 classes),
    /// "detached" (the mixer branch reads another input, not the stream: no residual join).</summary>
    private static Model Build(string head = "lm", int layers = 2)
    {
        var b = new GraphBuilder();
        var x = b.Input("inputs_embeds", TensorDataType.Float, 1, S, D);
        var other = head == "detached" ? b.Input("side", TensorDataType.Float, 1, S, D) : null;
        var rng = new Random(5);
        Value W(string name, int rows, int cols) => b.Initializer(name, Enumerable.Range(0, rows * cols).Select(_ => ((float)rng.NextDouble() - 0.5f) * 0.5f).ToArray(), rows, cols);
        Value Rms(string name, Value input) => b.Node("SimplifiedLayerNormalization", [input, b.Initializer(name, Enumerable.Repeat(1f, D).ToArray())], [Attr.Float("epsilon", 1e-6f)])[0];
        for (int l = 0; l < layers; l++)
        {
            var h = Rms($"layers.{l}.input_layernorm.weight", other ?? x);
            var mixed = b.Op("CumSum", b.Op("MatMul", h, W($"layers.{l}.mixer.in_proj.weight", D, 2 * D)), b.Scalar($"layers.{l}.axis", 1L));
            x = b.Op("Add", x, b.Op("MatMul", mixed, W($"layers.{l}.mixer.out_proj.weight", 2 * D, D)));
            var h2 = Rms($"layers.{l}.post_attention_layernorm.weight", x);
            x = b.Op("Add", x, b.Op("MatMul", b.Op("Relu", b.Op("MatMul", h2, W($"layers.{l}.mlp.fc1.weight", D, 4 * D))), W($"layers.{l}.mlp.fc2.weight", 4 * D, D)));
        }
        var final = Rms("norm.weight", x);
        if (head == "classifier")
        {
            var pooled = b.Node("Gather", [final, b.Scalar("cls_index", 0L)], [Attr.Int("axis", 1)])[0];
            b.Output(b.Op("MatMul", pooled, W("score.weight", D, 3)), TensorDataType.Float, 1, 3);
        }
        else b.Output(b.Op("MatMul", final, W("lm_head.weight", D, 50)), TensorDataType.Float, 1, S, 50);
        return b.ToModel();
    }

    [Fact]
    public void UnknownMixer_IsReportedFromTheResidualStream()
    {
        using var model = Build();
        var result = StructureRecognizer.Recognize(model);
        Assert.True(result.Recognized, result.Message + "\n" + StructureReport.ToText(result, explain: true));
        var s = result.Structure!;
        Assert.Equal(2, s.Blocks.Count);
        for (int l = 0; l < 2; l++)
        {
            var blk = s.Blocks[l];
            Assert.Equal(BlockKind.Unknown, blk.Kind);
            Assert.Null(blk.Attention);
            var mixer = Assert.IsType<OpaqueSublayer>(blk.Mixer);
            Assert.Equal($"layers.{l}.input_layernorm.weight", blk.AttentionNorm!.Gain.Name);
            var group = Assert.Single(mixer.InputProjections);
            Assert.Same(blk.AttentionNorm, group.Norm);
            Assert.Equal($"layers.{l}.mixer.in_proj.weight", Assert.Single(group.Linears).Weight.Name);
            Assert.Equal($"layers.{l}.mixer.out_proj.weight", mixer.OutputProjection!.Weight.Name);
            Assert.Empty(mixer.States);
            Assert.Contains(mixer.NotUnderstood, n => n.Contains("no attention rule"));
            // The FFN is recognized by its rule even though the mixer is not.
            Assert.Equal((FfnKind.Mlp, FfnActivation.Relu), (blk.Ffn!.Kind, blk.Ffn.Activation));
            Assert.Equal($"layers.{l}.post_attention_layernorm.weight", blk.FfnNorm!.Gain.Name);
            Assert.Contains("tokenMixer (unknown)", StructureReport.Missing(blk));
        }
        Assert.Equal("inputs_embeds", s.Blocks[0].ResidualIn.Value!.Name);
        Assert.Same(s.Blocks[0].ResidualOut.Value, s.Blocks[1].ResidualIn.Value);
        Assert.Equal("norm.weight", s.FinalNorm!.Gain.Name);
        Assert.Equal("lm_head.weight", s.LmHead!.Weight.Name);
        Assert.Null(s.ClassifierHead);

        string text = StructureReport.ToText(result, explain: true);
        Assert.Contains("block 0 [unknown]", text);
        Assert.Contains("Blocks/Fallback", text);
        var json = StructureReport.ToJson(result, includeTrace: false);
        Assert.Equal(2, json.SchemaVersion);
        Assert.Equal("unknown", json.Blocks[0].Kind);
        Assert.Null(json.Blocks[0].Attention);
        Assert.Equal("layers.0.mixer.out_proj.weight", json.Blocks[0].Mixer!.OutputProjection!.Weight);
    }

    [Fact]
    public void UnknownMixerGraph_RunsInOrt()
    {
        using var model = Build();
        using var dir = new TempFolder("fallback");
        string path = dir.Path("model.onnx");
        ModelWriter.Save(model, path);
        using var options = new SessionOptions { GraphOptimizationLevel = GraphOptimizationLevel.ORT_DISABLE_ALL };
        using var session = new InferenceSession(path, options);
        var x = Enumerable.Range(0, S * D).Select(i => MathF.Sin(i)).ToArray();
        using var xv = OrtValue.CreateTensorValueFromMemory(x, [1, S, D]);
        using var outputs = session.Run(new RunOptions(), ["inputs_embeds"], [xv], session.OutputNames);
        var logits = outputs[0].GetTensorDataAsSpan<float>().ToArray();
        Assert.Equal(S * 50, logits.Length);
        Assert.All(logits, v => Assert.True(float.IsFinite(v)));
    }

    [Fact]
    public void ClassifierHead_IsNotAnLmHead()
    {
        using var model = Build("classifier");
        var result = StructureRecognizer.Recognize(model);
        Assert.True(result.Recognized, result.Message);
        var s = result.Structure!;
        Assert.Equal(2, s.Blocks.Count);
        Assert.Null(s.LmHead);
        Assert.Equal(("score.weight", 3L), (s.ClassifierHead!.Weight.Name, s.ClassifierHead.OutFeatures));
        Assert.Contains("classifier head score.weight", StructureReport.ToText(result, explain: false));
        Assert.Equal("score.weight", StructureReport.ToJson(result, false).ClassifierHead!.Weight);
    }

    [Fact]
    public void BranchNotComputedFromTheStream_IsNoBlock()
    {
        // Near miss: the "mixer" reads another input, so x + mixer(side) is not a residual join and the stream has no
        // chain of joins: no block, and the FFN that was recognized is reported as found but unplaced.
        using var model = Build("detached", layers: 1);
        var result = StructureRecognizer.Recognize(model);
        Assert.False(result.Recognized, StructureReport.ToText(result, explain: true));
        Assert.Contains("1 FFN(s)", result.Message);
    }

    [Fact]
    public void Phi4TorchExport_SdpaIsAttention_WithHeadsFromReshapes()
    {
        using var model = ModelReader.Load(Fixtures.Path("exports-modern", "phi4-mini-2layer-torchexport", "microsoft_Phi-4-mini-reasoning-custom-default-f32-cpu.onnx"),
            new LoadOptions { RequireExternalData = false });
        var result = StructureRecognizer.Recognize(model);
        Assert.True(result.Recognized, result.Message + "\n" + StructureReport.ToText(result, explain: true));
        var s = result.Structure!;
        Assert.Equal(2, s.Blocks.Count);
        foreach (var blk in s.Blocks)
        {
            Assert.Empty(StructureReport.Missing(blk));
            var a = blk.Attention!;
            Assert.Equal(AttentionForm.Custom("aten::scaled_dot_product_attention"), a.Form);
            Assert.Equal((24, 8, 128), (a.NumHeads, a.KvHeads, a.HeadSize));
            Assert.Equal(5120L, a.PackedQkv!.OutFeatures);
            Assert.Equal((FfnKind.Glu, FfnActivation.Silu, 8192L), (blk.Ffn!.Kind, blk.Ffn.Activation, blk.Ffn.Down.InFeatures));
            Assert.True(blk.AttentionNorm is not null && blk.FfnNorm is not null);
            Assert.True(a.Cache!.PastKey is { IsGraphInput: true });
        }
        Assert.Equal(200064L, s.LmHead!.OutFeatures);
        Assert.NotNull(s.FinalNorm);
    }
}
