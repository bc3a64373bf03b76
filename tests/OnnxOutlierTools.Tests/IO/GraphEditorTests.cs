using OnnxOutlierTools.IO;
using OnnxOutlierTools.Ir;
using OnnxOutlierTools.Tensors;

namespace OnnxOutlierTools.Tests.IO;

/// <summary>The one node-adding API: names through the model's authority, exact names for generators,
/// insertion before an anchor, provenance in metadata_props that a save and reload keep.</summary>
public sealed class GraphEditorTests : IDisposable
{
    private readonly TempFolder _temp = new("graph-editor");

    [Fact]
    public void Add_NamesTakenInTheModel_AreNumberedNotReused()
    {
        using var model = Small();
        var editor = model.Edit();
        var outputs = editor.Add("Neg", [model.Graph.Inputs[0]], null, "y");   // "y" is the graph output
        Assert.Equal("y_1", outputs[0]!.Name);
        var second = editor.Op("Relu", outputs[0]);
        Assert.Equal("Relu_1", second.Producer!.Name);                         // "Relu" names the existing node
        Assert.Equal("Relu_1_output_0", second.Name);
    }

    [Fact]
    public void Add_ExactNames_ThrowsOnATakenName()
    {
        using var model = Small();
        var editor = new GraphEditor(model.Graph, model.Names) { ExactNames = true };
        var e = Assert.Throws<InvalidOperationException>(() => editor.Add("Neg", [model.Graph.Inputs[0]], null, "y"));
        Assert.Contains("'y' is already taken", e.Message);
    }

    [Fact]
    public void Add_WithOriginAndAnchor_InsertsBeforeAndRecordsProvenanceThatSurvivesSave()
    {
        using var model = Small();
        var relu = model.Graph.Nodes.Single();
        var editor = model.Edit(origin: new NodeOrigin("smooth-quant", "scale-input")).InsertingBefore(relu);
        var outputs = editor.Add("Mul", [model.Graph.Inputs[0], editor.Initializer("s", ArrayTensor.Create<float>([2f]))], null, "scaled", null);
        Assert.Equal(2, outputs.Count);
        Assert.Null(outputs[1]);
        relu.ReplaceInput(0, outputs[0]);
        Assert.Equal(["Mul", "Relu"], model.Graph.Nodes.Select(n => n.OpType));

        string path = _temp.Path("edited.onnx");
        ModelWriter.Save(model, path, new SaveOptions { Durable = false });
        using var reloaded = ModelReader.Load(path);
        var mul = reloaded.Graph.Nodes.Single(n => n.Is("Mul"));
        Assert.Equal(new NodeOrigin("smooth-quant", "scale-input"), NodeOrigin.Of(mul));
        Assert.Equal([new("onnx_outliers.pass", "smooth-quant"), new KeyValuePair<string, string>("onnx_outliers.rule", "scale-input")], mul.Metadata);
        Assert.Null(NodeOrigin.Of(reloaded.Graph.Nodes.Single(n => n.Is("Relu"))));
    }

    [Fact]
    public void SetMetadata_ReplacesInPlaceAndNullRemoves()
    {
        var node = new Node("", "Relu", [], ["r"]);
        node.SetMetadata("a", "1");
        node.SetMetadata("b", "2");
        node.SetMetadata("a", "3");
        Assert.Equal([new("a", "3"), new KeyValuePair<string, string>("b", "2")], node.Metadata);
        node.SetMetadata("a", null);
        Assert.Equal("2", node.GetMetadata("b"));
        Assert.Null(node.GetMetadata("a"));
    }

    private static Model Small()
    {
        var b = new GraphBuilder();
        var x = b.Input("x", TensorDataType.Float, 4);
        var y = b.Node("Relu", [x], name: "Relu", outputNames: ["y"])[0];
        b.Output(y, TensorDataType.Float, 4);
        return b.ToModel();
    }

    public void Dispose() => _temp.Dispose();
}
