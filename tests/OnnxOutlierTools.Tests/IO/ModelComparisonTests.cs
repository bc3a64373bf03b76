using Google.Protobuf;
using Onnx.Protobuf;
using OnnxOutlierTools.IO;
using OnnxOutlierTools.Ir;
using OnnxOutlierTools.Tensors;

namespace OnnxOutlierTools.Tests.IO;

public sealed class ModelComparisonTests
{
    private static Model Load(string fixture, string file) => ModelReader.Load(Fixtures.Export(fixture, file));

    [Fact]
    public void Compare_SameFileLoadedTwice_IsEqual()
    {
        using var a = Load("gpt2-ort-beamsearch", "tiny_gpt2_beamsearch.onnx");
        using var b = Load("gpt2-ort-beamsearch", "tiny_gpt2_beamsearch.onnx");
        var result = ModelComparison.Compare(a, b);
        Assert.True(result.AreEqual, result.ToString());
    }

    [Fact]
    public void Compare_TypedFieldsVersusRawData_IsEqual()
    {
        float[] values = [1.5f, -2, 0.25f, float.NaN];
        var typed = new TensorProto { Name = "w", DataType = (int)TensorDataType.Float, Dims = { 4 } };
        typed.FloatData.Add(values);
        var raw = new TensorProto { Name = "w", DataType = (int)TensorDataType.Float, Dims = { 4 }, RawData = ByteString.CopyFrom(System.Runtime.InteropServices.MemoryMarshal.AsBytes(values.AsSpan())) };
        using var a = FromProto(TinyProto(typed));
        using var b = FromProto(TinyProto(raw));
        Assert.True(ModelComparison.Compare(a, b).AreEqual);

        // One bit of one element differs.
        values[2] = MathF.BitIncrement(0.25f);
        var other = new TensorProto { Name = "w", DataType = (int)TensorDataType.Float, Dims = { 4 }, RawData = ByteString.CopyFrom(System.Runtime.InteropServices.MemoryMarshal.AsBytes(values.AsSpan())) };
        using var c = FromProto(TinyProto(other));
        var result = ModelComparison.Compare(a, c);
        Assert.False(result.AreEqual);
        Assert.Equal("graph 'tiny' initializer 'w': data differs at byte 8 (0x00 vs 0x01; Embedded vs Embedded)", result.Difference);
    }

    [Fact]
    public void Compare_EditedInitializerData_NamesTheInitializerAndTheByte()
    {
        using var a = Load("llama-genai-gqa-fp32", "model.onnx");
        using var b = Load("llama-genai-gqa-fp32", "model.onnx");
        var weight = b.Graph.Initializers.First(v => v.ConstValue!.ByteLength > 4096);
        var copy = weight.ConstValue!.ToArrayTensor();
        copy.WritableBytes[4000] ^= 0x10;
        b.Graph.SetInitializerData(weight, copy);

        var result = ModelComparison.Compare(a, b);
        Assert.False(result.AreEqual);
        Assert.StartsWith($"graph '{a.Graph.Name}' initializer '{weight.Name}': data differs at byte 4000", result.Difference);
        Assert.EndsWith("External vs Memory)", result.Difference);
    }

    [Fact]
    public void Compare_SameBytesDifferentShape_IsADifference()
    {
        using var a = FromProto(TinyProto(FloatTensor("w", [4], 1, 2, 3, 4)));
        using var b = FromProto(TinyProto(FloatTensor("w", [2, 2], 1, 2, 3, 4)));
        var result = ModelComparison.Compare(a, b);
        Assert.Equal("model.graph.initializer[0 'w'].dims[0]: 4 vs 2", result.Difference);
    }

    [Fact]
    public void Compare_ChangedAttribute_NamesNodeAndAttribute()
    {
        using var a = Load("distilbert-optimum", "model.onnx");
        using var b = Load("distilbert-optimum", "model.onnx");
        var softmax = b.Graph.Nodes.First(n => n.OpType == "Softmax");
        softmax.SetAttribute(Attr.Int("axis", 1));
        var result = ModelComparison.Compare(a, b);
        Assert.False(result.AreEqual);
        Assert.Contains($"node[{b.Graph.Nodes.ToList().IndexOf(softmax)} Softmax '{softmax.Name}']", result.Difference);
        Assert.EndsWith(".attribute[0 'axis'].i: 3 vs 1", result.Difference);
    }

    [Fact]
    public void Compare_ChangeInsideNestedGraph_GivesThePathThroughTheAttribute()
    {
        using var a = Load("gpt2-ort-beamsearch", "tiny_gpt2_beamsearch.onnx");
        using var b = Load("gpt2-ort-beamsearch", "tiny_gpt2_beamsearch.onnx");
        var decoder = b.Graph.Nodes[0].Subgraphs.Single();
        decoder.Nodes[3].Name = "renamed";
        var result = ModelComparison.Compare(a, b);
        Assert.False(result.AreEqual);
        Assert.StartsWith("model.graph.node[0 BeamSearch 'BeamSearch_gpt2'].attribute[5 'decoder'].g.node[3 ", result.Difference);
        Assert.EndsWith($".name: '{a.Graph.Nodes[0].Subgraphs.Single().Nodes[3].Name}' vs 'renamed'", result.Difference);
    }

    [Fact]
    public void Compare_ModelLevelChanges_AreNamed()
    {
        using var a = Load("distilbert-optimum", "model.onnx");
        using var b = Load("distilbert-optimum", "model.onnx");
        b.RequireOpset("com.microsoft", 1);
        Assert.Equal("model.opset_import: 1 vs 2 entries (first extra 'com.microsoft')", ModelComparison.Compare(a, b).Difference);

        using var c = Load("distilbert-optimum", "model.onnx");
        c.Metadata.Add(new("origin", "test"));
        Assert.StartsWith("model.metadata_props: 0 vs 1 entries", ModelComparison.Compare(a, c).Difference);

        using var d = Load("distilbert-optimum", "model.onnx");
        d.Graph.Inputs[1].SetTensorType(TensorDataType.Int32, [Dim.Symbolic("batch"), Dim.Symbolic("sequence")]);
        Assert.Equal("model.graph.input[1 'attention_mask'].type.tensor_type.elem_type: 7 vs 6", ModelComparison.Compare(a, d).Difference);
    }

    private static TensorProto FloatTensor(string name, long[] dims, params float[] values)
    {
        var t = new TensorProto { Name = name, DataType = (int)TensorDataType.Float };
        t.Dims.Add(dims);
        t.FloatData.Add(values);
        return t;
    }

    private static Model FromProto(ModelProto proto) => ModelReader.FromProto(proto, Path.Combine(Path.GetTempPath(), "in-memory.onnx"));

    private static ModelProto TinyProto(TensorProto weight)
    {
        var graph = new GraphProto { Name = "tiny" };
        graph.Input.Add(new ValueInfoProto { Name = "x", Type = new TypeProto { TensorType = new TypeProto.Types.Tensor { ElemType = (int)TensorDataType.Float } } });
        graph.Initializer.Add(weight);
        graph.Node.Add(new NodeProto { OpType = "Add", Name = "add", Input = { "x", "w" }, Output = { "y" } });
        graph.Output.Add(new ValueInfoProto { Name = "y" });
        var model = new ModelProto { IrVersion = 8, Graph = graph };
        model.OpsetImport.Add(new OperatorSetIdProto { Domain = "", Version = 17 });
        return model;
    }
}
