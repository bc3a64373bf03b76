using OnnxOutlierTools.Calibration;
using OnnxOutlierTools.IO;
using OnnxOutlierTools.Quantization.Int4;
using OnnxOutlierTools.Runtime;
using OnnxOutlierTools.Structure.Roles;
using OnnxOutlierTools.Tensors;
using OnnxOutlierTools.Tests.Mitigation.Measurement;
using Xunit.Abstractions;

namespace OnnxOutlierTools.Tests.Quantization;

/// <summary>Int4 on real exporters' graphs (torch.onnx with Casts and pre-transposed weights, the genai builder's packed QKV
/// with GroupQueryAttention, an fp16 genai model, an opset-24 model, GPT-2's Gemm): both forms run on ORT CPU and match the
/// FP32 (or FP16) model with the dequantized weights read back from the quantized file; a model the opset-21 form cannot reach
/// is refused with one line.</summary>
public class Int4ExportsTests(ITestOutputHelper output)
{
    public static TheoryData<string, string, int> Exports() => new()
    {
        { "llama-torch-nopast", "model.onnx", 16 },
        { "llama-genai-gqa-fp32", "model.onnx", 8 },
        { "llama-genai-mha-fp16", "model.onnx", 8 },
        { "gpt2-ort-fused-fp32", "past.onnx", 8 },
        { "gpt2-torch-nopast", "GPT2Model.onnx", 4 },
    };

    [Theory]
    [MemberData(nameof(Exports))]
    public void Export_BothForms_RunOnOrtAndMatchTheDequantizedReference(string fixture, string file, int length)
    {
        using var temp = new TempFolder("int4-export");
        string source = Fixtures.Export(fixture, file);
        foreach (var settings in new[] { new Int4Settings(Int4Format.MatMulNBits, 32), new Int4Settings(Int4Format.BlockedDequantize, 32, symmetric: false) })
        {
            string path = temp.Path(settings.Format.ToString(), "model.onnx");
            Int4Report report;
            using (var model = ModelReader.Load(source))
            {
                if (settings.Format == Int4Format.BlockedDequantize && (model.OpsetVersion("") ?? 0) < 13)
                {
                    var ex = Assert.Throws<Int4QuantizationException>(() => Int4Quantizer.Quantize(model, settings, display: file));
                    Assert.StartsWith(file + ": default opset", ex.Message);
                    Assert.DoesNotContain('\n', ex.Message);
                    output.WriteLine($"{fixture} {settings.Format}: refused: {ex.Message}");
                    continue;
                }
                report = Int4Quantizer.Quantize(model, settings);
                ModelWriter.Save(model, path, new SaveOptions { Layout = TensorLayout.External, Durable = false });
            }
            Assert.True(report.QuantizedCount > 0, string.Join("; ", report.Linears.Select(l => $"{l.Role}: {l.Reason}")));
            string reference = Dequantized(source, path, settings, temp.Path(settings.Format + "-reference", "model.onnx"));
            var (quantized, expected) = (Logits(path, length), Logits(reference, length));
            double diff = 0, scale = expected.Max(Math.Abs);
            for (int i = 0; i < expected.Length; i++) diff = Math.Max(diff, Math.Abs(quantized[i] - expected[i]));
            bool fp16 = fixture.Contains("fp16");
            output.WriteLine($"{fixture} {settings.Format}: {report.QuantizedCount} of {report.Linears.Count} linears{string.Concat(report.OpsetChanges.Select(c => ", " + c))}; max |diff| {diff:G3} of {scale:G3}");
            Assert.True(diff <= (fp16 ? 2e-2 : 1e-3) * scale + 1e-5, $"{fixture} {settings.Format}: {diff} vs max {scale}");
        }
    }

    private static string Dequantized(string source, string quantizedPath, Int4Settings settings, string path)
    {
        using var quantized = ModelReader.Load(quantizedPath);
        using var model = ModelReader.Load(source);
        var structure = CalibratedModel.Recognize(model);
        foreach (var candidate in Int4Linears.Select(structure, settings.IncludeLmHead).Where(c => c.Eligible))
        {
            var linear = candidate.Linear;
            var deq = Int4Reference.DecodeFromModel(quantized, linear.Weight.Name, settings);
            var data = Int4Linears.WeightData(linear)!;
            int rows = (int)data.Dims[0], columns = (int)data.Dims[1];
            var values = new float[rows * columns];
            for (int r = 0; r < rows; r++)
                for (int c = 0; c < columns; c++)
                    values[r * columns + c] = (float)(linear.Layout == WeightLayout.InOut ? deq[c, r] : deq[r, c]);
            Tensor tensor = data.DataType == TensorDataType.Float16
                ? ArrayTensor.Create<Half>(values.Select(v => (Half)v).ToArray(), rows, columns)
                : ArrayTensor.Create<float>(values, rows, columns);
            model.Graph.SetInitializerData(linear.Weight, tensor);
        }
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        ModelWriter.Save(model, path, new SaveOptions { Layout = TensorLayout.External, Durable = false });
        return path;
    }

    /// <summary>The first output on ids (7i + 3) mod vocab (the fixtures' runtime-check inputs), as fp32.</summary>
    private static float[] Logits(string path, int length)
    {
        using var session = SessionFactory.Open(path, SessionSettings.CpuUnoptimized);
        var plan = FeedPlan.Create(session.ModelPath, session.Inputs, session.OutputNames);
        string outputName = session.OutputNames[0];
        int vocab = 20;
        var ids = Enumerable.Range(0, length).Select(i => (7 * i + 3) % vocab).ToArray();
        return session.Run(plan.Build(1, length, ids, 0, null), [outputName])[0].Tensor.ToSingleArray();
    }
}
