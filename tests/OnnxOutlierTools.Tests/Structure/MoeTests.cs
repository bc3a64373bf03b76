using Microsoft.ML.OnnxRuntime;
using OnnxOutlierTools.IO;
using OnnxOutlierTools.Ir;
using OnnxOutlierTools.Structure.Recognition;
using OnnxOutlierTools.Structure.Roles;
using OnnxOutlierTools.Tensors;

namespace OnnxOutlierTools.Tests.Structure;

/// <summary>Mixture of experts (#7 item 5): com.microsoft MoE/QMoE and the decomposed router + TopK + expert-FFN form,
/// with router, experts' gate/up/down and shared expert as roles; the GLM-5.2 fixture (MLA attention, QMoE).</summary>
public class MoeTests
{
    private const int D = 8, S = 4, E = 4, I = 12;

    public enum Form { Decomposed, DecomposedUnweighted, FusedMoe }

    /// <summary>Two blocks: a causal running-sum mixer (no rule knows it; the fallback reports it) and an MoE FFN. The
    /// decomposed form follows Mixtral / Qwen2-MoE exports: router logits, softmax, top-2, renormalized weights scattered
    /// back to [tokens, experts], each expert a SwiGLU scaled by its weight, summed, plus a sigmoid-gated shared expert.
    /// The fused form is ORT's com.microsoft MoE on [tokens, hidden] with fused SwiGLU fc1 [E, 2I, D] and fc2 [E, D, I].</summary>
    private static Model Build(Form form, int layers = 2)
    {
        var b = new GraphBuilder();
        var x = b.Input("inputs_embeds", TensorDataType.Float, 1, S, D);
        var rng = new Random(21);
        float[] Rand(int n) => Enumerable.Range(0, n).Select(_ => ((float)rng.NextDouble() - 0.5f) * 0.5f).ToArray();
        Value W(string name, int rows, int cols) => b.Initializer(name, Rand(rows * cols), rows, cols);
        Value Rms(string name, Value input) => b.Node("SimplifiedLayerNormalization", [input, b.Initializer(name, Enumerable.Repeat(1f, D).ToArray())], [Attr.Float("epsilon", 1e-6f)])[0];
        Value Silu(Value v) => b.Op("Mul", v, b.Op("Sigmoid", v));
        Value Glu(string p, Value h, int width) => b.Op("MatMul", b.Op("Mul", Silu(b.Op("MatMul", h, W($"{p}.gate_proj.weight", D, width))), b.Op("MatMul", h, W($"{p}.up_proj.weight", D, width))), W($"{p}.down_proj.weight", width, D));
        for (int l = 0; l < layers; l++)
        {
            string p = $"model.layers.{l}";
            var h = Rms($"{p}.input_layernorm.weight", x);
            var mixed = b.Op("CumSum", b.Op("MatMul", h, W($"{p}.mixer.in_proj.weight", D, D)), b.Scalar($"{p}.axis", 1L));
            x = b.Op("Add", x, b.Op("MatMul", mixed, W($"{p}.mixer.out_proj.weight", D, D)));
            var h2 = Rms($"{p}.post_attention_layernorm.weight", x);
            Value moe;
            if (form == Form.FusedMoe)
            {
                var tokens = b.Op("Reshape", h2, b.Initializer($"{p}.flat", new long[] { -1, D }, 2));
                var logits = b.Op("MatMul", tokens, W($"{p}.mlp.gate.weight", D, E));
                var fc1 = b.Initializer($"{p}.mlp.experts.fc1", Rand(E * 2 * I * D), E, 2 * I, D);
                var fc2 = b.Initializer($"{p}.mlp.experts.fc2", Rand(E * D * I), E, D, I);
                var routed = b.Node("MoE", [tokens, logits, fc1, null, fc2], [Attr.Int("k", 2), Attr.String("activation_type", "swiglu"), Attr.Int("swiglu_fusion", 1),
                    Attr.Int("normalize_routing_weights", 1)], domain: "com.microsoft")[0];
                moe = b.Op("Reshape", routed, b.Initializer($"{p}.unflat", new long[] { 1, S, D }, 3));
            }
            else
            {
                var probs = b.Node("Softmax", [b.Op("MatMul", h2, W($"{p}.mlp.gate.weight", D, E))], [Attr.Int("axis", -1)])[0];
                var top = b.Node("TopK", [probs, b.Initializer($"{p}.mlp.k", new long[] { 2 }, 1)], [Attr.Int("axis", -1)], outputs: 2);
                var weights = b.Op("Div", top[0], b.Node("ReduceSum", [top[0], b.Initializer($"{p}.mlp.last", new long[] { -1 }, 1)], [Attr.Int("keepdims", 1)])[0]);
                var dense = b.Node("ScatterElements", [b.Op("Mul", probs, b.Scalar($"{p}.mlp.zero", 0f)), top[1], weights], [Attr.Int("axis", -1)])[0];
                moe = null!;
                for (int e = 0; e < E; e++)
                {
                    var expert = Glu($"{p}.mlp.experts.{e}", h2, I);
                    var we = b.Op("Unsqueeze", b.Node("Gather", [dense, b.Scalar($"{p}.mlp.e{e}", (long)e)], [Attr.Int("axis", 2)])[0], b.Initializer($"{p}.mlp.u{e}", new long[] { -1 }, 1));
                    var contribution = form == Form.DecomposedUnweighted ? expert : b.Op("Mul", expert, we);
                    moe = e == 0 ? contribution : b.Op("Add", moe, contribution);
                }
                var sharedGate = b.Op("Sigmoid", b.Op("MatMul", h2, W($"{p}.mlp.shared_expert_gate.weight", D, 1)));
                moe = b.Op("Add", moe, b.Op("Mul", sharedGate, Glu($"{p}.mlp.shared_expert", h2, I)));
            }
            x = b.Op("Add", x, moe);
        }
        b.Output(b.Op("MatMul", Rms("model.norm.weight", x), W("lm_head.weight", D, 40)), TensorDataType.Float, 1, S, 40);
        return b.ToModel(irVersion: 8, new OpsetId("", 17), new OpsetId("com.microsoft", 1));
    }

    [Fact]
    public void DecomposedMoe_RouterExpertsAndSharedExpert()
    {
        using var model = Build(Form.Decomposed);
        var result = StructureRecognizer.Recognize(model);
        Assert.True(result.Recognized, result.Message + "\n" + StructureReport.ToText(result, explain: true));
        var s = result.Structure!;
        Assert.Equal(2, s.Blocks.Count);
        foreach (var blk in s.Blocks)
        {
            string p = $"model.layers.{blk.Index}.mlp";
            Assert.Null(blk.Ffn);
            var moe = blk.Moe!;
            Assert.Equal((MoeForm.Decomposed, 2, 4), (moe.Form, moe.TopK, moe.NumExperts));
            Assert.Equal($"{p}.gate.weight", moe.Router!.Weight.Name);
            Assert.Equal(Enumerable.Range(0, E).Select(e => $"{p}.experts.{e}.down_proj.weight"), moe.Experts.Select(f => f.Down.Weight.Name));
            Assert.All(moe.Experts, f => Assert.Equal((FfnKind.Glu, FfnActivation.Silu), (f.Kind, f.Activation)));
            Assert.Equal(MoeActivation.OfExperts(FfnKind.Glu, FfnActivation.Silu), moe.Activation);
            Assert.Equal($"{p}.experts.2.gate_proj.weight", moe.Experts[2].Gate!.Weight.Name);
            Assert.Equal($"{p}.shared_expert.down_proj.weight", moe.SharedExpert!.Down.Weight.Name);
            Assert.Equal($"{p}.shared_expert_gate.weight", moe.SharedExpertGate!.Weight.Name);
            Assert.Same(blk.FfnNorm!.Output, moe.Input);
            Assert.DoesNotContain("ffn", StructureReport.Missing(blk));
        }
        var json = StructureReport.ToJson(result, includeTrace: false);
        Assert.Equal("decomposed", json.Blocks[1].Moe!.Form);
        Assert.Equal(4, json.Blocks[1].Moe!.Experts.Count);
        Assert.Contains("moe decomposed (TopK): 4 experts, top-2", StructureReport.ToText(result, explain: false));
    }

    [Fact]
    public void DecomposedMoeGraph_RunsInOrt()
    {
        using var model = Build(Form.Decomposed);
        using var dir = new TempFolder("moe");
        string path = dir.Path("model.onnx");
        ModelWriter.Save(model, path);
        using var options = new SessionOptions { GraphOptimizationLevel = GraphOptimizationLevel.ORT_DISABLE_ALL };
        using var session = new InferenceSession(path, options);
        var data = Enumerable.Range(0, S * D).Select(i => MathF.Sin(0.3f * i)).ToArray();
        using var xv = OrtValue.CreateTensorValueFromMemory(data, [1, S, D]);
        using var outputs = session.Run(new RunOptions(), ["inputs_embeds"], [xv], session.OutputNames);
        Assert.All(outputs[0].GetTensorDataAsSpan<float>().ToArray(), v => Assert.True(float.IsFinite(v)));
    }

    [Fact]
    public void ExpertsNotWeightedByTheRouter_AreNoMoe()
    {
        // Near miss: router and TopK are there, but the FFNs are summed without routing weights.
        using var model = Build(Form.DecomposedUnweighted);
        var result = StructureRecognizer.Recognize(model);
        Assert.True(result.Recognized, result.Message);
        Assert.All(result.Structure!.Blocks, blk =>
        {
            Assert.Null(blk.Moe);
            Assert.NotNull(blk.OpaqueFfn);
            Assert.Contains("ffn (unknown)", StructureReport.Missing(blk));
        });
        Assert.Contains(result.Trace.NotesFor("Moe/Decomposed"), n => n.Contains("0 FFN(s) are scaled by its routing weights"));
    }

    [Fact]
    public void FusedMoe_StackedExpertWeights()
    {
        using var model = Build(Form.FusedMoe);
        var result = StructureRecognizer.Recognize(model);
        Assert.True(result.Recognized, result.Message + "\n" + StructureReport.ToText(result, explain: true));
        foreach (var blk in result.Structure!.Blocks)
        {
            var moe = blk.Moe!;
            Assert.Equal((MoeForm.Fused, "com.microsoft::MoE", 2, 4, "swiglu"), (moe.Form, moe.Op, moe.TopK, moe.NumExperts, moe.Activation.ActivationType));
            Assert.True(moe.FusedGateUp);
            Assert.Same(moe.Gate, moe.Up);
            Assert.Equal((WeightLayout.OutIn, 4L, (long)D, 2L * I), (moe.Up!.Layout, moe.Up.Experts, moe.Up.InFeatures, moe.Up.OutFeatures));
            Assert.Equal(((long)I, (long)D, false), (moe.Down!.InFeatures, moe.Down.OutFeatures, moe.Down.Quantized));
            Assert.Equal($"model.layers.{blk.Index}.mlp.gate.weight", moe.Router!.Weight.Name);
            Assert.Null(moe.SharedExpert);
        }
    }

    [Fact]
    public void Glm52_MlaAttention_DenseAndQMoeBlocks()
    {
        using var model = ModelReader.Load(Fixtures.Path("exports-modern", "glm52-mla-moe-int4-mobius", "model.onnx"));
        var result = StructureRecognizer.Recognize(model);
        Assert.True(result.Recognized, result.Message + "\n" + StructureReport.ToText(result, explain: true));
        var s = result.Structure!;
        Assert.Equal(2, s.Blocks.Count);
        Assert.Equal(22, model.Graph.Nodes.Count(n => n.OpType == "MatMulNBits"));
        foreach (var blk in s.Blocks)
        {
            string p = $"model.layers.{blk.Index}";
            var a = blk.Attention!;
            Assert.Equal(AttentionForm.Custom("pkg.nxrt::IndexShare"), a.Form);
            Assert.Equal($"{p}.input_layernorm.weight", blk.AttentionNorm!.Gain.Name);
            var lr = a.LowRank!;
            Assert.Equal(($"{p}.self_attn.q_a_proj.weight", $"{p}.self_attn.q_a_layernorm.weight"), (lr.QueryDown.Weight.Name, lr.QueryDownNorm!.Gain.Name));
            Assert.Equal(($"{p}.self_attn.kv_a_proj_with_mqa.weight", $"{p}.self_attn.kv_a_layernorm.weight"), (lr.KvDown.Weight.Name, lr.KvDownNorm!.Gain.Name));
            Assert.Equal($"{p}.self_attn.q_b_proj.weight", a.Query!.Weight.Name);
            Assert.Equal($"{p}.self_attn.kv_b_proj.weight", a.Key!.Weight.Name);
            Assert.Same(a.Key, a.ValueProjection);
            Assert.Equal($"{p}.self_attn.o_proj.weight", a.Output!.Weight.Name);
            Assert.Equal(4, a.NumHeads);
            Assert.Equal($"{p}.post_attention_layernorm.weight", blk.FfnNorm!.Gain.Name);
        }
        Assert.Equal((FfnKind.Glu, FfnActivation.Silu, "model.layers.0.mlp.down_proj.weight"), (s.Blocks[0].Ffn!.Kind, s.Blocks[0].Ffn!.Activation, s.Blocks[0].Ffn!.Down.Weight.Name));
        var moe = s.Blocks[1].Moe!;
        Assert.Null(s.Blocks[1].Ffn);
        Assert.Equal((MoeForm.Fused, "com.microsoft::QMoE", 4, 2), (moe.Form, moe.Op, moe.NumExperts, moe.TopK));
        Assert.Equal("model.layers.1.mlp.moe.gate.weight", moe.Router!.Weight.Name);
        Assert.Equal(("model.layers.1.mlp.moe.fc1_experts_weights", "model.layers.1.mlp.moe.fc1_scales", 4), (moe.Up!.Weight.Name, moe.Up.Scales!.Name, moe.Up.Bits));
        Assert.Equal((64L, 64L), (moe.Up.InFeatures, moe.Up.OutFeatures));
        Assert.Equal(("model.layers.1.mlp.moe.fc2_experts_weights", 32L, 64L), (moe.Down!.Weight.Name, moe.Down.InFeatures, moe.Down.OutFeatures));
        Assert.True(moe.FusedGateUp);
        Assert.Equal("model.layers.1.mlp.shared_experts.down_proj.weight", moe.SharedExpert!.Down.Weight.Name);
        Assert.Equal("v_model.layers.1.mlp.Add_242", moe.Output.Name);
        Assert.Equal("model.norm.weight", s.FinalNorm!.Gain.Name);
        Assert.Equal(256L, s.LmHead!.OutFeatures);
        Assert.All(s.Blocks, blk => Assert.DoesNotContain("ffn", StructureReport.Missing(blk)));
    }
}
