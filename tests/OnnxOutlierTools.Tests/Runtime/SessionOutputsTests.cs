using OnnxOutlierTools.Ir;
using OnnxOutlierTools.IO;
using OnnxOutlierTools.Runtime;
using OnnxOutlierTools.Tensors;

namespace OnnxOutlierTools.Tests.Runtime;

/// <summary>Outputs fetched without a managed copy read the same bytes as the copying Run, and are
/// unusable (an exception, not a crash) once disposed.</summary>
public sealed class SessionOutputsTests : IDisposable
{
    private readonly TempFolder _temp = new("session-outputs");

    public void Dispose() => _temp.Dispose();

    /// <summary>y = relu(x) * 2 and z = x + 1, both FLOAT[2, 3], plus a shape output (INT64).</summary>
    private string TwoOutputModel()
    {
        var b = new GraphBuilder();
        var x = b.Input("x", TensorDataType.Float, 2, 3);
        b.Output(b.Op("Mul", b.Op("Relu", x), b.Scalar("two", 2f)), TensorDataType.Float, 2, 3);
        b.Output(b.Op("Add", x, b.Scalar("one", 1f)), TensorDataType.Float, 2, 3);
        b.Output(b.Op("Shape", x), TensorDataType.Int64, 2);
        string path = _temp.Path("two.onnx");
        using var model = b.ToModel();
        ModelWriter.Save(model, path);
        return path;
    }

    [Fact]
    public void RunWithoutCopy_ReadsTheSameAsRun_AndRefusesAfterDispose()
    {
        using var session = SessionFactory.Open(TwoOutputModel(), SessionSettings.CpuUnoptimized);
        var input = TensorData.Create("x", new[] { -1f, 0.5f, 2f, -3f, 4f, 0f }, 2, 3);
        var copied = session.Run([input]);
        OrtTensor first;
        using (var outputs = session.RunWithoutCopy([input]))
        {
            Assert.Equal(3, outputs.Count);
            Assert.Equal(session.OutputNames, outputs.Select(o => o.Name));
            for (int i = 0; i < 3; i++)
            {
                Assert.Equal(copied[i].ElementType, outputs[i].DataType);
                Assert.Equal(copied[i].Dims, outputs[i].Dims);
                Assert.True(outputs[i].DataEquals(copied[i].Tensor));
            }
            Assert.Equal(new[] { 0f, 1f, 4f, 0f, 8f, 0f }, outputs[0].ToSingleArray());
            Assert.Equal(new long[] { 2, 3 }, outputs[2].ToInt64Array());
            Assert.Same(outputs[1], outputs[outputs[1].Name]);
            var kept = outputs[1].ToTensorData();
            first = outputs[0];
            Assert.Equal(new[] { 0f, 1.5f, 3f, -2f, 5f, 1f }, kept.ToSingleArray());
        }
        Assert.Throws<ObjectDisposedException>(() => first.ToSingleArray());
        // Selected outputs only, in the order asked.
        using var some = session.RunWithoutCopy([input], [session.OutputNames[2], session.OutputNames[0]]);
        Assert.Equal([session.OutputNames[2], session.OutputNames[0]], some.Select(o => o.Name));
        Assert.Throws<KeyNotFoundException>(() => some[session.OutputNames[1]]);
    }
}
