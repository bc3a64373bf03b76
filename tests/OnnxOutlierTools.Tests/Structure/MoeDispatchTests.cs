using OnnxOutlierTools.IO;
using OnnxOutlierTools.Ir;
using OnnxOutlierTools.Runtime;
using OnnxOutlierTools.Structure.Recognition;
using OnnxOutlierTools.Structure.Roles;
using OnnxOutlierTools.Tensors;

namespace OnnxOutlierTools.Tests.Structure;

/// <summary>Sparse mixture-of-experts dispatch as HF's eager Mixtral / Qwen2-MoE blocks export (#7 item 5): router, softmax,
/// top-2, renormalized weights; per expert the tokens routed to it are found with OneHot + NonZero, gathered, run through
/// the expert's SwiGLU, scaled by their routing weight (GatherND) and added back in place (ScatterND, reduction add); and
/// the dense Where-based dispatch (each expert on every token, weighted by Where(selected == e, weight, 0)). The graphs run
/// in ONNX Runtime, their MoE output is checked against a float64 reference, and the MoE is recognized with its router,
/// top-k and the experts' gate/up/down.</summary>
public class MoeDispatchTests
{
    private const int D = 8, S = 4, E = 4, I = 12, K = 2, Vocab = 40;

    public enum Dispatch { Sparse, WhereDense, SparseUnweighted }

    private sealed class Weights
    {
        public readonly Dictionary<string, float[]> Arrays = [];
    }

    private static (Model Model, Weights Weights) Build(Dispatch dispatch)
    {
        var b = new GraphBuilder();
        var weights = new Weights();
        var rng = new Random(33);
        var x = b.Input("inputs_embeds", TensorDataType.Float, 1, S, D);
        Value W(string name, int rows, int cols)
        {
            var data = Enumerable.Range(0, rows * cols).Select(_ => ((float)rng.NextDouble() - 0.5f) * 0.8f).ToArray();
            weights.Arrays[name] = data;
            return b.Initializer(name, data, rows, cols);
        }
        Value I64(string name, params long[] v) => b.Initializer(name, v, v.Length);
        Value Rms(string name, Value input) => b.Node("SimplifiedLayerNormalization", [input, b.Initializer(name, Enumerable.Repeat(1f, D).ToArray(), D)], [Attr.Float("epsilon", 1e-6f)])[0];
        Value Glu(string p, Value h)
        {
            var g = b.Op("MatMul", h, W($"{p}.gate_proj.weight", D, I));
            return b.Op("MatMul", b.Op("Mul", b.Op("Mul", g, b.Op("Sigmoid", g)), b.Op("MatMul", h, W($"{p}.up_proj.weight", D, I))), W($"{p}.down_proj.weight", I, D));
        }

        // A one-head causal attention so the block is complete.
        const string a = "model.layers.0.self_attn";
        var h = Rms("model.layers.0.input_layernorm.weight", x);
        var scores = b.Op("Add", b.Op("Mul", b.Op("MatMul", b.Op("MatMul", h, W($"{a}.q_proj.weight", D, D)), b.Node("Transpose", [b.Op("MatMul", h, W($"{a}.k_proj.weight", D, D))], [Attr.Ints("perm", 0, 2, 1)])[0]),
            b.Scalar($"{a}.scale", 1f / MathF.Sqrt(D))), b.Initializer($"{a}.causal", Enumerable.Range(0, S * S).Select(i => i % S <= i / S ? 0f : -1e9f).ToArray(), 1, S, S));
        var ctx = b.Op("MatMul", b.Node("Softmax", [scores], [Attr.Int("axis", -1)])[0], b.Op("MatMul", h, W($"{a}.v_proj.weight", D, D)));
        x = b.Op("Add", x, b.Op("MatMul", ctx, W($"{a}.o_proj.weight", D, D)));

        const string m = "model.layers.0.mlp";
        var normed = b.Output(Rms("model.layers.0.post_attention_layernorm.weight", x), TensorDataType.Float, 1, S, D);
        var tokens = b.Op("Reshape", normed, I64($"{m}.flat", -1, D));
        var probs = b.Node("Softmax", [b.Op("MatMul", tokens, W($"{m}.gate.weight", D, E))], [Attr.Int("axis", -1)])[0];
        var top = b.Node("TopK", [probs, I64($"{m}.k", K)], [Attr.Int("axis", -1)], outputs: 2);
        var routing = b.Op("Div", top[0], b.Node("ReduceSum", [top[0], I64($"{m}.last", -1)], [Attr.Int("keepdims", 1)])[0]);
        Value moe;
        if (dispatch == Dispatch.WhereDense)
        {
            moe = null!;
            for (int e = 0; e < E; e++)
            {
                var selected = b.Op("Equal", top[1], b.Scalar($"{m}.e{e}", (long)e));
                var weight = b.Node("ReduceSum", [b.Op("Where", selected, routing, b.Scalar($"{m}.zero{e}", 0f)), I64($"{m}.axis{e}", -1)], [Attr.Int("keepdims", 1)])[0];
                var contribution = b.Op("Mul", Glu($"{m}.experts.{e}", tokens), weight);
                moe = e == 0 ? contribution : b.Op("Add", moe, contribution);
            }
        }
        else
        {
            // expert_mask = one_hot(selected, E).permute(2, 1, 0): [E, K, T]; per expert NonZero gives (slot, token) pairs.
            var mask = b.Node("Transpose", [b.Node("OneHot", [top[1], b.Scalar($"{m}.depth", (long)E), b.Initializer($"{m}.onehot", new long[] { 0, 1 }, 2)], [Attr.Int("axis", -1)])[0]],
                [Attr.Ints("perm", 2, 1, 0)])[0];
            moe = b.Initializer($"{m}.zeros", new float[S * D], S, D);
            for (int e = 0; e < E; e++)
            {
                var pairs = b.Op("NonZero", b.Node("Gather", [mask, b.Scalar($"{m}.e{e}", (long)e)], [Attr.Int("axis", 0)])[0]);
                var slot = b.Node("Gather", [pairs, b.Scalar($"{m}.row0.{e}", 0L)], [Attr.Int("axis", 0)])[0];
                var token = b.Node("Gather", [pairs, b.Scalar($"{m}.row1.{e}", 1L)], [Attr.Int("axis", 0)])[0];
                var expertOut = Glu($"{m}.experts.{e}", b.Node("Gather", [tokens, token], [Attr.Int("axis", 0)])[0]);
                var where = b.Node("Concat", [b.Op("Unsqueeze", token, I64($"{m}.u{e}a", -1)), b.Op("Unsqueeze", slot, I64($"{m}.u{e}b", -1))], [Attr.Int("axis", -1)])[0];
                var weight = b.Op("Unsqueeze", b.Op("GatherND", routing, where), I64($"{m}.u{e}c", -1));
                var update = dispatch == Dispatch.SparseUnweighted ? expertOut : b.Op("Mul", expertOut, weight);
                moe = b.Node("ScatterND", [moe, b.Op("Unsqueeze", token, I64($"{m}.u{e}d", -1)), update], [Attr.String("reduction", "add")])[0];
            }
        }
        var moeOut = b.Output(b.Op("Reshape", moe, I64($"{m}.unflat", 1, S, D)), TensorDataType.Float, 1, S, D);
        x = b.Op("Add", x, moeOut);
        b.Output(b.Op("MatMul", Rms("model.norm.weight", x), W("lm_head.weight", D, Vocab)), TensorDataType.Float, 1, S, Vocab);
        return (b.ToModel(irVersion: 8, new OpsetId("", 17)), weights);
    }

    /// <summary>The MoE in float64 from the weights: softmax router, top-2 renormalized, SwiGLU experts.</summary>
    private static double[] Reference(Weights w, float[] normed)
    {
        double[] MatVec(IReadOnlyList<double> x, string name, int rows, int cols)
        {
            var m = w.Arrays[name];
            var y = new double[cols];
            for (int c = 0; c < cols; c++) for (int r = 0; r < rows; r++) y[c] += x[r] * m[r * cols + c];
            return y;
        }
        var result = new double[S * D];
        for (int t = 0; t < S; t++)
        {
            var token = normed.Skip(t * D).Take(D).Select(v => (double)v).ToArray();
            var logits = MatVec(token, "model.layers.0.mlp.gate.weight", D, E);
            double max = logits.Max();
            var p = logits.Select(l => Math.Exp(l - max)).ToArray();
            var chosen = Enumerable.Range(0, E).OrderByDescending(e => p[e]).Take(K).ToArray();
            double chosenSum = chosen.Sum(e => p[e]);
            foreach (int e in chosen)
            {
                string pre = $"model.layers.0.mlp.experts.{e}";
                var gate = MatVec(token, $"{pre}.gate_proj.weight", D, I);
                var up = MatVec(token, $"{pre}.up_proj.weight", D, I);
                var act = Enumerable.Range(0, I).Select(i => gate[i] / (1 + Math.Exp(-gate[i])) * up[i]).ToArray();
                var down = MatVec(act, $"{pre}.down_proj.weight", I, D);
                for (int d = 0; d < D; d++) result[t * D + d] += p[e] / chosenSum * down[d];
            }
        }
        return result;
    }

    [Theory]
    [InlineData(Dispatch.Sparse)]
    [InlineData(Dispatch.WhereDense)]
    public void Dispatch_RunsInOrt_MatchesTheFloat64Moe(Dispatch dispatch)
    {
        var (model, weights) = Build(dispatch);
        using var _ = model;
        using var dir = new TempFolder("moedispatch");
        string path = dir.Path("model.onnx");
        ModelWriter.Save(model, path);
        using var session = SessionFactory.Open(path, SessionSettings.CpuUnoptimized);
        var x = Enumerable.Range(0, S * D).Select(i => MathF.Sin(0.9f * i + 0.3f)).ToArray();
        var outputs = session.Run([TensorData.Create("inputs_embeds", x, 1, S, D)]);
        var byName = session.OutputNames.Zip(outputs).ToDictionary(p => p.First, p => p.Second);
        var normed = byName.Single(p => p.Key.Contains("SimplifiedLayerNormalization", StringComparison.Ordinal) || p.Key.Contains("post_attention", StringComparison.Ordinal)).Value.ToSingleArray();
        var moe = byName.Single(p => p.Key.StartsWith("Reshape", StringComparison.Ordinal)).Value.ToDoubleArray();
        var expected = Reference(weights, normed);
        for (int i = 0; i < moe.Length; i++) Assert.True(Math.Abs(moe[i] - expected[i]) < 1e-4, $"element {i}: {moe[i]} vs {expected[i]}");
    }

    [Theory]
    [InlineData(Dispatch.Sparse)]
    [InlineData(Dispatch.WhereDense)]
    public void Dispatch_IsRecognized_RouterTopKAndExperts(Dispatch dispatch)
    {
        var (model, _) = Build(dispatch);
        using var __ = model;
        var result = StructureRecognizer.Recognize(model);
        Assert.True(result.Recognized, result.Message + "\n" + StructureReport.ToText(result, explain: true));
        var blk = Assert.Single(result.Structure!.Blocks);
        Assert.Empty(StructureReport.Missing(blk));
        Assert.Null(blk.Ffn);
        var moe = blk.Moe!;
        const string p = "model.layers.0.mlp";
        Assert.Equal((MoeForm.Decomposed, K, E), (moe.Form, moe.TopK, moe.NumExperts));
        Assert.Equal((null, "TopK"), (moe.FusedOp, moe.Op));
        Assert.Equal($"{p}.gate.weight", moe.Router!.Weight.Name);
        Assert.Equal(Enumerable.Range(0, E).Select(e => $"{p}.experts.{e}.gate_proj.weight"), moe.Experts.Select(f => f.Gate!.Weight.Name));
        Assert.Equal(Enumerable.Range(0, E).Select(e => $"{p}.experts.{e}.up_proj.weight"), moe.Experts.Select(f => f.Up.Weight.Name));
        Assert.Equal(Enumerable.Range(0, E).Select(e => $"{p}.experts.{e}.down_proj.weight"), moe.Experts.Select(f => f.Down.Weight.Name));
        Assert.All(moe.Experts, f => Assert.Equal((FfnKind.Glu, FfnActivation.Silu), (f.Kind, f.Activation)));
        Assert.Same(blk.FfnNorm!.Output, moe.Input);
        // The MoE output is what the block adds to the stream.
        Assert.Equal("Reshape", moe.Output.Producer!.OpType);
        Assert.Contains("moe decomposed (TopK): 4 experts, top-2", StructureReport.ToText(result, explain: false));
    }

    [Fact]
    public void SparseDispatchWithoutRoutingWeights_IsNoMoe()
    {
        // Near miss: tokens are dispatched by the TopK, but the expert outputs are added back unweighted.
        var (model, _) = Build(Dispatch.SparseUnweighted);
        using var __ = model;
        var result = StructureRecognizer.Recognize(model);
        Assert.Null(Assert.Single(result.Structure!.Blocks).Moe);
        Assert.Contains(result.Trace.NotesFor("Moe/Decomposed"), n => n.Contains("0 FFN(s) are scaled by its routing weights"));
    }
}
