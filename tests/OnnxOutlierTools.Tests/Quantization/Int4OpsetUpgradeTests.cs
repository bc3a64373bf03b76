using OnnxOutlierTools.Ir;
using OnnxOutlierTools.IO;
using OnnxOutlierTools.Quantization.Int4;
using OnnxOutlierTools.Runtime;
using OnnxOutlierTools.Tensors;

namespace OnnxOutlierTools.Tests.Quantization;

/// <summary>The opset-21 upgrade converts the ops whose form changed (ReduceMean's axes attribute, Split without sizes) so the
/// upgraded graph computes what the original computes on ORT, and refuses with one line what it does not convert.</summary>
public class Int4OpsetUpgradeTests
{
    private static Model Build(long opset, Action<GraphEditor, Graph, Value> body)
    {
        var graph = new Graph("g");
        var x = graph.AddInput("x", TensorDataType.Float, [new Dim(2), new Dim(6)]);
        body(new GraphEditor(graph, NameAuthority.For(graph)), graph, x);
        var model = new Model(graph, 8);
        model.OpsetImports.Add(new OpsetId("", opset));
        return model;
    }

    [Fact]
    public void Upgrade_ReduceMeanAndSplit_SameOutputsOnOrt()
    {
        using var temp = new TempFolder("opset21");
        Model Make() => Build(14, (e, g, x) =>
        {
            var mean = e.Add("ReduceMean", [x], [Attr.Ints("axes", 1), Attr.Int("keepdims", 1)])[0]!;
            var centered = e.Op("Sub", x, mean);
            var parts = e.Add("Split", [centered], [Attr.Int("axis", 1)], "a", "b");
            var y = e.Op("Mul", parts[0], parts[1]);
            y.SetTensorType(TensorDataType.Float, null);
            g.AddOutput(y);
        });
        string before = temp.Path("before.onnx"), after = temp.Path("after.onnx");
        using (var model = Make()) ModelWriter.Save(model, before);
        using (var model = Make())
        {
            var lines = Opset21Upgrade.Apply(model, "m.onnx");
            Assert.Equal(21, model.OpsetVersion(""));
            Assert.True(model.IrVersion >= 10);
            Assert.Contains(lines, l => l.Contains("Reduce"));
            Assert.Contains(lines, l => l.Contains("Split"));
            ModelWriter.Save(model, after);
        }
        var input = new TensorData("x", ArrayTensor.Create<float>(Enumerable.Range(0, 12).Select(i => (float)(i * i % 7) - 2.5f).ToArray(), 2, 6));
        var a = ModelRunner.Run(before, [input])[0].Tensor.ToSingleArray();
        var b = ModelRunner.Run(after, [input])[0].Tensor.ToSingleArray();
        Assert.Equal(a, b);
    }

    [Fact]
    public void Upgrade_GroupNormalizationOrOldOpset_RefusedInOneLine()
    {
        using var group = Build(18, (e, g, x) => g.AddOutput(e.Add("GroupNormalization", [x, x, x], [Attr.Int("num_groups", 2)])[0]!));
        var ex = Assert.Throws<Int4QuantizationException>(() => Opset21Upgrade.Apply(group, "m.onnx"));
        Assert.StartsWith("m.onnx: ", ex.Message);
        Assert.Contains("GroupNormalization", ex.Message);
        Assert.DoesNotContain('\n', ex.Message);
        using var old = Build(12, (e, g, x) => g.AddOutput(e.Op("Relu", x)));
        Assert.Contains("opset 12", Assert.Throws<Int4QuantizationException>(() => Opset21Upgrade.Apply(old, "m.onnx")).Message);
        using var current = Build(21, (e, g, x) => g.AddOutput(e.Op("Relu", x)));
        Assert.Empty(Opset21Upgrade.Apply(current, "m.onnx"));
    }
}
