using OnnxOutlierTools.Calibration;
using OnnxOutlierTools.Ir;
using OnnxOutlierTools.Mitigation.Smoothing;
using OnnxOutlierTools.Runtime;
using OnnxOutlierTools.Structure.Roles;
using OnnxOutlierTools.Tensors;

namespace OnnxOutlierTools.Tests.Mitigation.Smoothing;

/// <summary>FakeQuant computes what ONNX Runtime's QuantizeLinear -> DequantizeLinear (int8, zero point 0) computes: per tensor
/// with the same scale, and per output channel (axis 0 of an [out, in] weight, axis 1 of an [in, out] one).</summary>
public sealed class FakeQuantOrtTests
{
    private static float[] RunQdq(float[] x, int rows, int columns, float[] scales, int? axis)
    {
        using var model = new Model(new Graph("qdq"));
        model.OpsetImports.Add(new OpsetId("", 13));
        var input = model.Graph.AddInput("x", TensorDataType.Float, [new Dim(rows), new Dim(columns)]);
        var editor = model.Edit();
        var scale = axis is null ? editor.Initializer("scale", ArrayTensor.Create<float>(scales)) : editor.Initializer("scale", ArrayTensor.Create<float>(scales, scales.Length));
        var zero = axis is null ? editor.Initializer("zero", ArrayTensor.Create<sbyte>([0])) : editor.Initializer("zero", ArrayTensor.Create<sbyte>(new sbyte[scales.Length], scales.Length));
        var attributes = axis is int a ? new[] { Attr.Int("axis", a) } : [];
        var q = editor.Add("QuantizeLinear", [input, scale, zero], attributes)[0]!;
        var y = editor.Add("DequantizeLinear", [q, scale, zero], attributes)[0]!;
        model.Graph.AddOutput(y);
        y.SetTensorType(TensorDataType.Float, [new Dim(rows), new Dim(columns)]);
        using var session = InMemoryModel.Open(model, SessionSettings.CpuUnoptimized);
        return session.Run([TensorData.Create("x", x, rows, columns)])[0].Tensor.ToSingleArray();
    }

    [Fact]
    public void PerTensor_EqualsOrtQdq()
    {
        var x = FakeQuantTests.Random(64 * 64, 7, outlierScale: 40, outlierEvery: 29);
        var mine = new float[x.Length];
        float scale = FakeQuant.PerTensor(x, mine);
        Assert.Equal(RunQdq(x, 64, 64, [scale], null), mine);
    }

    [Theory]
    [InlineData(WeightLayout.OutIn)]
    [InlineData(WeightLayout.InOut)]
    public void PerOutputChannel_EqualsOrtQdq(WeightLayout layout)
    {
        const int rows = 48, columns = 40;
        var w = FakeQuantTests.Random(rows * columns, 8, outlierScale: 20, outlierEvery: 17);
        var mine = new float[w.Length];
        var scales = new float[layout == WeightLayout.OutIn ? rows : columns];
        FakeQuant.PerOutputChannel(w, rows, columns, layout, mine, scales);
        Assert.Equal(RunQdq(w, rows, columns, scales, layout == WeightLayout.OutIn ? 0 : 1), mine);
    }
}
