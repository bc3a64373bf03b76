using OnnxOutlierTools.IO;
using OnnxOutlierTools.Ir;
using OnnxOutlierTools.Tensors;

namespace OnnxOutlierTools.Tests.IO;

/// <summary>Graph IR edits keep use-def information consistent, and survive a save and reload.</summary>
public class IrEditTests
{
    private static (GraphBuilder B, Value X, Value Hidden, Value Y) Mlp()
    {
        var b = new GraphBuilder();
        var x = b.Input("x", TensorDataType.Float, "batch", 4);
        var hidden = b.Op("Relu", b.Op("MatMul", x, b.Initializer("w", Enumerable.Range(0, 16).Select(i => i * 0.1f).ToArray(), 4, 4)));
        var y = b.Output(b.Op("Tanh", hidden), TensorDataType.Float, "batch", 4);
        return (b, x, hidden, y);
    }

    [Fact]
    public void Values_KnowProducerAndConsumers()
    {
        var (b, x, hidden, y) = Mlp();
        Assert.True(hidden.Producer!.Is("Relu"));
        Assert.Equal(["Tanh"], hidden.Consumers.Select(n => n.OpType));
        Assert.True(y.IsGraphOutput);
        Assert.Contains(y.Uses, u => u.IsGraphOutput);
        Assert.True(x.IsGraphInput);
        Assert.Single(b.Graph.Initializers[0].Uses);
    }

    [Fact]
    public void InsertNode_ReplaceAllUsesWith_UpdatesUsesEverywhere()
    {
        var (b, _, hidden, y) = Mlp();
        var relu = hidden.Producer!;
        var scale = b.Graph.AddInitializer(b.Names.NewValueName("scale"), ArrayTensor.Create<float>([2f, 2f, 2f, 2f], 4));
        var mul = new Node("", "Mul", [hidden, scale], [b.Names.NewValueName("scaled")], name: b.Names.NewNodeName("probe_mul"));
        b.Graph.InsertAfter(relu, mul);
        var scaled = mul.Outputs[0]!;
        // Every use of hidden except the new Mul itself moves to the scaled value.
        hidden.ReplaceAllUsesWith(scaled, except: mul);
        Assert.Equal([mul], hidden.Consumers);
        Assert.Equal(["Tanh"], scaled.Consumers.Select(n => n.OpType));
        Assert.Same(scaled.Graph, b.Graph);
        Assert.Single(scale.Uses);

        // Replacing a graph output keeps the output list consistent.
        var tanh = y.Producer!;
        var identity = new Node("", "Identity", [y], [b.Names.NewValueName("y_copy")]);
        b.Graph.InsertAfter(tanh, identity);
        y.ReplaceAllUsesWith(identity.Outputs[0]!, except: identity);
        Assert.Same(identity.Outputs[0], b.Graph.Outputs[0]);
        Assert.Contains(identity, y.Consumers);       // the Identity still reads y ...
        Assert.DoesNotContain(y.Uses, u => u.IsGraphOutput); // ... but y is no longer an output
    }

    [Fact]
    public void Remove_RefusesUsedNode_AndRemoveDeadNodesCleansUp()
    {
        var (b, _, hidden, _) = Mlp();
        var relu = hidden.Producer!;
        var ex = Assert.Throws<InvalidOperationException>(() => b.Graph.Remove(relu));
        Assert.Contains("is used by", ex.Message);
        Assert.Contains(relu, b.Graph.Nodes); // nothing changed
        var dead = b.Op("Sigmoid", hidden);
        b.Op("Neg", dead);
        int before = b.Graph.Nodes.Count;
        Assert.Equal(2, b.Graph.RemoveDeadNodes());
        Assert.Equal(before - 2, b.Graph.Nodes.Count);
        Assert.Equal(["Tanh"], hidden.Consumers.Select(n => n.OpType));
    }

    [Fact]
    public void TopologicalSort_IsStableAndFixesOrder()
    {
        var (b, x, hidden, _) = Mlp();
        var late = new Node("", "Abs", [x], ["abs_x"]);
        b.Graph.InsertBefore(b.Graph.Nodes[0], new Node("", "Neg", [late.Outputs[0]], ["neg_abs"]));
        b.Graph.Append(late); // now Neg comes before its producer
        b.Graph.TopologicalSort();
        var order = b.Graph.Nodes.Select(n => n.OpType).ToList();
        Assert.True(order.IndexOf("Abs") < order.IndexOf("Neg"));
        Assert.True(order.IndexOf("MatMul") < order.IndexOf("Relu") && order.IndexOf("Relu") < order.IndexOf("Tanh"));
    }

    [Fact]
    public void NameAuthority_NeverRepeatsAName()
    {
        using var model = ModelReader.Load(Fixtures.Export("gpt2-ort-beamsearch", "tiny_gpt2_beamsearch.onnx"));
        var taken = model.Graph.SelfAndSubgraphs().SelectMany(g => g.Values()).Select(v => v.Name).ToHashSet();
        var fresh = Enumerable.Range(0, 50).Select(_ => model.Names.NewValueName("present_0")).ToList();
        Assert.Equal(50, fresh.Distinct().Count());
        Assert.DoesNotContain(fresh, taken.Contains);
    }

    [Fact]
    public void Edits_SurviveSaveAndReload_AsRealOnnx()
    {
        using var temp = new TempFolder("ir");
        var (b, _, hidden, _) = Mlp();
        using var model = b.ToModel();
        var probe = new Node("", "ReduceMax", [hidden], [model.Names.NewValueName("hidden_max")], [Attr.Ints("axes", -1), Attr.Int("keepdims", 0)])
        {
            DocString = "onnx-outliers: probe",
        };
        model.Graph.InsertAfter(hidden.Producer!, probe);
        model.Graph.AddOutput(probe.Outputs[0]!);
        probe.Outputs[0]!.SetTensorType(TensorDataType.Float, [Dim.Symbolic("batch")]);
        string path = temp.Path("edited.onnx");
        ModelWriter.Save(model, path);
        using var reloaded = ModelReader.Load(path);
        Assert.Equal(2, reloaded.Graph.Outputs.Count);
        var node = reloaded.Graph.Nodes.Single(n => n.Is("ReduceMax"));
        Assert.Equal("onnx-outliers: probe", node.DocString);
        Assert.Equal("batch", reloaded.Graph.Outputs[1].Shape![0].Param);
        Assert.True(ModelComparison.Compare(model, reloaded).AreEqual, ModelComparison.Compare(model, reloaded).Difference);
    }
}
