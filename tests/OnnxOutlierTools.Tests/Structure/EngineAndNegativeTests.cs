using Microsoft.ML.OnnxRuntime;
using OnnxOutlierTools.IO;
using OnnxOutlierTools.Passes;
using OnnxOutlierTools.Passes.Rewriting;
using OnnxOutlierTools.Ir;
using OnnxOutlierTools.Structure.Patterns;
using OnnxOutlierTools.Structure.Recognition;
using OnnxOutlierTools.Tensors;

namespace OnnxOutlierTools.Tests.Structure;

/// <summary>The rule engine itself (bindings, alternatives, tracer, rewrites) and recognition of graphs
/// that are not transformers.</summary>
public class EngineAndNegativeTests
{
    [Fact]
    public void Var_BoundTwice_MustBeTheSameValue()
    {
        var b = new GraphBuilder();
        var x = b.Input("x", TensorDataType.Float, 4);
        var y = b.Input("y", TensorDataType.Float, 4);
        var same = b.Op("Mul", x, b.Op("Sigmoid", x));
        var different = b.Op("Mul", y, b.Op("Sigmoid", x));
        var rule = new Rule<Value>("silu", P.Commuted("Mul", P.Var("a"), P.Op("Sigmoid", P.Var("a"))), null, m => m["a"]);
        var matcher = new Matcher(b.Graph);
        Assert.Same(x, rule.Build(matcher.TryMatch(rule, same)!));
        Assert.Null(matcher.TryMatch(rule, different));
        Assert.Contains("must be the same value", matcher.NearMisses["silu"].Reason);
    }

    [Fact]
    public void Tracer_ReportsHowFarTheBestNearMissGot()
    {
        var b = new GraphBuilder();
        var x = b.Input("x", TensorDataType.Float, 4);
        b.Op("Exp", b.Op("Sqrt", b.Op("Abs", x)));            // Sqrt(Abs), not Sqrt(Add): fails one level deeper
        var rule = new Rule<bool>("exp-sqrt-add", P.Op("Exp", P.Op("Sqrt", P.Op("Add", P.Var("a"), P.Var("b")))), null, _ => true);
        var matcher = new Matcher(b.Graph);
        Assert.Empty(matcher.MatchAll(rule));
        var miss = matcher.NearMisses["exp-sqrt-add"];
        Assert.Equal(2, miss.Progress);
        Assert.Contains("expected Add, found Abs", miss.Reason);
    }

    [Fact]
    public void Rewrite_DivBySqrt_ToMulByReciprocal_PreservesOutputsOnOrt()
    {
        var b = new GraphBuilder();
        var x = b.Input("x", TensorDataType.Float, 2, 8);
        var z = b.Input("z", TensorDataType.Float, 2, 8);
        var y = b.Op("Div", x, b.Op("Sqrt", z));
        b.Output(b.Op("Relu", y), TensorDataType.Float, 2, 8);
        using var model = b.ToModel();
        string dir = Directory.CreateTempSubdirectory("onnx-outliers-rewrite").FullName;
        try
        {
            string original = Path.Combine(dir, "original.onnx");
            ModelWriter.Save(model, original);
            var rule = new RewriteRule("div-sqrt-to-mul-reciprocal",
                P.Op("Div", P.Var("x"), P.Node(["Sqrt"], [P.Var("z")], bindAs: "sqrt")), null,
                (m, c) => c.Add("Mul", [m["x"], c.Add("Reciprocal", [m.Node("sqrt").Output(0)])]));
            var report = new RewritePass("div-sqrt", rule).Sequence().Run(new PassContext(model));
            Assert.Equal(1, report.Counts["div-sqrt/div-sqrt-to-mul-reciprocal"]);
            Assert.Equal(1, report.Counts["dead-node-elimination/removed-nodes"]);
            Assert.DoesNotContain(model.Graph.Nodes, n => n.Is("Div"));
            Assert.All(model.Graph.Nodes.Where(n => n.Is("Mul") || n.Is("Reciprocal")),
                n => Assert.Equal(new NodeOrigin("div-sqrt", "div-sqrt-to-mul-reciprocal"), NodeOrigin.Of(n)));
            string rewritten = Path.Combine(dir, "rewritten.onnx");
            ModelWriter.Save(model, rewritten);

            var rng = new Random(7);
            float[] xs = Enumerable.Range(0, 16).Select(_ => (float)rng.NextDouble() * 4 - 2).ToArray();
            float[] zs = Enumerable.Range(0, 16).Select(_ => (float)rng.NextDouble() * 3 + 0.1f).ToArray();
            float[] a = Run(original, xs, zs), r = Run(rewritten, xs, zs);
            for (int i = 0; i < a.Length; i++) Assert.True(Math.Abs(a[i] - r[i]) <= 1e-6f * Math.Max(1, Math.Abs(a[i])), $"element {i}: {a[i]} vs {r[i]}");
        }
        finally { Directory.Delete(dir, true); }
    }

    private static float[] Run(string path, float[] x, float[] z)
    {
        using var options = new SessionOptions { GraphOptimizationLevel = GraphOptimizationLevel.ORT_DISABLE_ALL };
        using var session = new InferenceSession(path, options);
        using var xv = OrtValue.CreateTensorValueFromMemory(x, [2, 8]);
        using var zv = OrtValue.CreateTensorValueFromMemory(z, [2, 8]);
        using var outputs = session.Run(new RunOptions(), ["x", "z"], [xv, zv], session.OutputNames);
        return outputs[0].GetTensorDataAsSpan<float>().ToArray();
    }

    [Fact]
    public void Recognize_NonTransformerGraph_SaysSoAndExplains()
    {
        var b = new GraphBuilder();
        var x = b.Input("x", TensorDataType.Float, 1, 8);
        var h = b.Op("Relu", b.Op("MatMul", x, b.Initializer("w1", new float[8 * 16], 8, 16)));
        b.Output(b.Op("Softmax", b.Op("MatMul", h, b.Initializer("w2", new float[16 * 4], 16, 4))), TensorDataType.Float, 1, 4);
        using var model = b.ToModel();
        var result = StructureRecognizer.Recognize(model);
        Assert.False(result.Recognized);
        Assert.Contains("no transformer blocks recognized", result.Message);
        Assert.Contains("2 linear layer(s)", result.Message);
        string text = StructureReport.ToText(result, explain: false);
        Assert.Contains("Structure not recognized", text);
        Assert.Contains("DecomposedAttention", text);             // the Softmax was examined ...
        Assert.Contains("does not feed MatMul(probabilities, V)", text); // ... and the reason is given
        var json = StructureReport.ToJson(result, includeTrace: true);
        Assert.False(json.Recognized);
        Assert.Empty(json.Blocks);
        Assert.NotEmpty(json.Trace!);
    }

    [Fact]
    public void Recognize_AttentionWithoutFfn_ReportsWhyNoBlock()
    {
        var b = new GraphBuilder();
        var x = b.Input("x", TensorDataType.Float, 1, 4, 8);
        Value Proj(string n) => b.Op("MatMul", x, b.Initializer(n, new float[64], 8, 8));
        var q = Proj("wq"); var k = Proj("wk"); var v = Proj("wv");
        var scores = b.Op("Div", b.Op("MatMul", q, b.Node("Transpose", [k], [Attr.Ints("perm", 0, 2, 1)])[0]), b.Scalar("sqrt_d", 2.828427f));
        var attn = b.Op("MatMul", b.Node("Softmax", [scores], [Attr.Int("axis", -1)])[0], v);
        var o = b.Op("MatMul", attn, b.Initializer("wo", new float[64], 8, 8));
        b.Output(b.Op("Add", x, o), TensorDataType.Float, 1, 4, 8);
        using var model = b.ToModel();
        var result = StructureRecognizer.Recognize(model);
        Assert.False(result.Recognized);
        Assert.Contains("1 attention unit(s), 0 FFN(s)", result.Message);
        Assert.Contains(result.Trace.NotesFor("Blocks"), n => n.Contains("followed by no FFN"));
    }
}
