using OnnxOutlierTools.Calibration;
using OnnxOutlierTools.Import;
using OnnxOutlierTools.IO;
using OnnxOutlierTools.Ir;
using OnnxOutlierTools.Quantization.Int4;
using OnnxOutlierTools.Runtime;
using OnnxOutlierTools.Structure.Roles;
using OnnxOutlierTools.Tensors;
using OnnxOutlierTools.Tests.Import;
using OnnxOutlierTools.Tests.Mitigation.Measurement;
using Xunit.Abstractions;

namespace OnnxOutlierTools.Tests.Quantization;

/// <summary>Int4 models on ONNX Runtime CPU: the MatMulNBits model and the opset-21 DequantizeLinear model of stories260K
/// (K = 172 at the down projection: not a multiple of any block size) and of the planted model (hidden 80) run, and their
/// logits match those of the FP32 model whose quantized weights are replaced by the float64 dequantization the tests' own
/// reader makes of the written int4 tensors (<see cref="Int4Reference"/>), and each other's.</summary>
public class Int4ModelTests(ITestOutputHelper output)
{
    private static string Stories(TempFolder temp)
    {
        string path = temp.Path("stories", "model.onnx");
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        using var model = LlamaOnnxBuilder.Build(Stories260K.Weights, new LlamaOnnxOptions { Flavour = LlamaOnnxFlavour.Decomposed });
        ModelWriter.Save(model, path, new SaveOptions { Layout = TensorLayout.External, Durable = false });
        return path;
    }

    public static TheoryData<string> Models() => ["stories260K", "planted"];

    [Theory]
    [MemberData(nameof(Models))]
    public void QuantizedModels_RunOnOrtCpu_LogitsMatchTheDequantizedWeightReference(string which)
    {
        using var temp = new TempFolder("int4");
        string source = which == "planted" ? CalibratedModel.Planted : Stories(temp);
        var windows = CalibratedModel.Windows(seqLen: 32, maxTokens: 64, model: source);
        var cases = new (string Name, Int4Settings Settings)[]
        {
            ("nbits-sym-32", new Int4Settings(Int4Format.MatMulNBits, 32, symmetric: true)),
            ("dq21-sym-32", new Int4Settings(Int4Format.BlockedDequantize, 32, symmetric: true)),
            ("nbits-asym-128", new Int4Settings(Int4Format.MatMulNBits, 128, symmetric: false)),
            ("nbits-asym-32", new Int4Settings(Int4Format.MatMulNBits, 32, symmetric: false)),
            ("dq21-asym-64", new Int4Settings(Int4Format.BlockedDequantize, 64, symmetric: false)),
        };
        var logits = new Dictionary<string, float[]>();
        var fp32 = Run(source, windows);
        foreach (var (name, settings) in cases)
        {
            string path = temp.Path(name, "model.onnx");
            Int4Report report;
            using (var model = ModelReader.Load(source))
            {
                report = Int4Quantizer.Quantize(model, settings);
                ModelWriter.Save(model, path, new SaveOptions { Layout = TensorLayout.External, Durable = false });
            }
            Assert.True(report.QuantizedCount >= 5 * 7, $"{name}: {report.QuantizedCount} linears quantized");
            Assert.Contains(report.Linears, l => l.Role == "lm-head" && !l.Quantized);
            string reference = DequantizedReference(source, path, settings, temp.Path(name + "-reference", "model.onnx"));
            var quantized = Run(path, windows);
            var expected = Run(reference, windows);
            double diff = MaxAbsDiff(quantized, expected), scale = expected.Max(Math.Abs);
            output.WriteLine($"{which} {name}: {report.QuantizedCount} linears, max |logit - reference| {diff:G3} (max |logit| {scale:G3})");
            Assert.True(diff <= 1e-3 * scale, $"{which} {name}: logits differ from the dequantized-weight reference by {diff} (max |logit| {scale})");
            logits[name] = quantized;
            // int4 changes the function (a control that the int4 weights are what runs).
            Assert.True(MaxAbsDiff(quantized, fp32) > 1e-3, $"{name}: the int4 logits equal the FP32 ones");
            using var saved = ModelReader.Load(path);
            if (settings.Format == Int4Format.BlockedDequantize)
            {
                Assert.Equal(21, saved.OpsetVersion(""));
                Assert.DoesNotContain(saved.Graph.Nodes, n => n.Is("MatMulNBits", "com.microsoft"));
            }
            else Assert.Equal(report.QuantizedCount, saved.Graph.Nodes.Count(n => n.Is("MatMulNBits", "com.microsoft")));
            Assert.All(saved.Graph.Nodes.Where(n => n.Is("MatMulNBits", "com.microsoft") || n.Is("DequantizeLinear")),
                n => Assert.Equal(Int4QuantizePass.PassName, NodeOrigin.Of(n)?.Pass));
        }
        // The same symmetric codes in both forms: the two models compute the same function.
        double between = MaxAbsDiff(logits["nbits-sym-32"], logits["dq21-sym-32"]);
        Assert.True(between <= 1e-3 * logits["dq21-sym-32"].Max(Math.Abs), $"MatMulNBits and DequantizeLinear-21 differ by {between}");
    }

    /// <summary>The FP32 model with every weight the quantized model holds in int4 replaced by its dequantized value, read back
    /// from the quantized file by <see cref="Int4Reference"/>.</summary>
    private static string DequantizedReference(string source, string quantizedPath, Int4Settings settings, string path)
    {
        using var quantized = ModelReader.Load(quantizedPath);
        using var model = ModelReader.Load(source);
        var structure = CalibratedModel.Recognize(model);
        foreach (var candidate in Int4Linears.Select(structure, settings.IncludeLmHead).Where(c => c.Eligible))
        {
            var linear = candidate.Linear;
            var deq = Int4Reference.DecodeFromModel(quantized, linear.Weight.Name, settings);
            var data = linear.Weight.ConstValue!;
            int rows = (int)data.Dims[0], columns = (int)data.Dims[1];
            var values = new float[rows * columns];
            for (int r = 0; r < rows; r++)
                for (int c = 0; c < columns; c++)
                    values[r * columns + c] = (float)(linear.Layout == WeightLayout.InOut ? deq[c, r] : deq[r, c]);
            var tensor = ArrayTensor.Create<float>(values, rows, columns);
            if (linear.Weight.Uses.Count == 1) model.Graph.SetInitializerData(linear.Weight, tensor);
            else
            {
                // A tied table: only the linear reads the dequantized copy, the embedding's Gather keeps the float one.
                var (node, input) = Int4Linears.WeightSlot(linear)!.Value;
                node.ReplaceInput(input, model.Graph.AddInitializer(linear.Weight.Name + ".reference", tensor));
            }
        }
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        ModelWriter.Save(model, path, new SaveOptions { Layout = TensorLayout.External, Durable = false });
        return path;
    }

    [Fact]
    public void IncludeLmHead_TiedTable_LmHeadQuantizedEmbeddingKeepsFloat()
    {
        using var temp = new TempFolder("int4-head");
        string source = Stories(temp);
        var windows = CalibratedModel.Windows(seqLen: 32, maxTokens: 32, model: source);
        foreach (var settings in new[] { new Int4Settings(Int4Format.MatMulNBits, 64, includeLmHead: true), new Int4Settings(Int4Format.BlockedDequantize, 64, includeLmHead: true) })
        {
            string path = temp.Path(settings.Format.ToString(), "model.onnx");
            using (var model = ModelReader.Load(source))
            {
                var structure = CalibratedModel.Recognize(model);
                string table = structure.Embedding!.TokenTable.Name;
                var report = Int4Quantizer.Quantize(model, settings, structure);
                Assert.Contains(report.Linears, l => l.Role == "lm-head" && l.Quantized);
                // The Gather still reads the float table.
                Assert.Equal(TensorDataType.Float, model.Graph.FindInitializer(table)!.ConstValue!.DataType);
                ModelWriter.Save(model, path, new SaveOptions { Layout = TensorLayout.External, Durable = false });
            }
            string reference = DequantizedReference(source, path, settings, temp.Path(settings.Format + "-reference", "model.onnx"));
            var (quantized, expected) = (Run(path, windows), Run(reference, windows));
            double diff = MaxAbsDiff(quantized, expected), scale = expected.Max(Math.Abs);
            output.WriteLine($"LM head included, {settings.Format}: max |logit - reference| {diff:G3} of {scale:G3}");
            Assert.True(diff <= 1e-3 * scale, $"{settings.Format}: {diff}");
        }
    }

    [Fact]
    public void OnlyWeights_QuantizesJustTheNamedLinear()
    {
        using var model = ModelReader.Load(CalibratedModel.Planted);
        var structure = CalibratedModel.Recognize(model);
        string down = structure.Blocks[1].Ffn!.Down.Weight.Name;
        var report = Int4Quantizer.Quantize(model, new Int4Settings() { OnlyWeights = new HashSet<string> { down } }, structure);
        Assert.Equal([down], report.Linears.Where(l => l.Quantized).Select(l => l.Weight));
        Assert.Single(model.Graph.Nodes, n => n.Is("MatMulNBits", "com.microsoft"));
    }

    internal static float[] Run(string path, IReadOnlyList<int[]> windows, SessionSettings? settings = null)
    {
        using var session = SessionFactory.Open(path, settings ?? SessionSettings.CpuUnoptimized);
        var plan = FeedPlan.Create(session.ModelPath, session.Inputs, session.OutputNames);
        var all = new List<float>();
        foreach (var w in windows) all.AddRange(session.Run(plan.Build(1, w.Length, w, 0, null), ["logits"])[0].Tensor.ToSingleArray());
        return all.ToArray();
    }

    private static double MaxAbsDiff(float[] a, float[] b)
    {
        Assert.Equal(a.Length, b.Length);
        double max = 0;
        for (int i = 0; i < a.Length; i++) max = Math.Max(max, Math.Abs((double)a[i] - b[i]));
        return max;
    }

    [Fact]
    public void Quantize_ModelWithoutRecognizedLinears_OneLine()
    {
        using var temp = new TempFolder("int4-bad");
        var graph = new Graph("g");
        var x = graph.AddInput("x", TensorDataType.Float, [new Dim(2), new Dim(4)]);
        var y = new GraphEditor(graph, NameAuthority.For(graph)).Op("Relu", x);
        graph.AddOutput(y);
        using var model = new Model(graph);
        model.OpsetImports.Add(new OpsetId("", 17));
        var ex = Assert.Throws<Int4QuantizationException>(() => Int4Quantizer.Quantize(model, new Int4Settings(), display: "bad.onnx"));
        Assert.StartsWith("bad.onnx: ", ex.Message);
        Assert.DoesNotContain('\n', ex.Message);
        output.WriteLine(ex.Message);
    }
}
