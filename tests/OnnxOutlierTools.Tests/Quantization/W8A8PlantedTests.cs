using OnnxOutlierTools.Calibration.Text;
using OnnxOutlierTools.IO;
using OnnxOutlierTools.Ir;
using OnnxOutlierTools.Mitigation.Folding;
using OnnxOutlierTools.Mitigation.Pipeline;
using OnnxOutlierTools.Quantization.W8A8;
using OnnxOutlierTools.Runtime;
using OnnxOutlierTools.Tests.Mitigation.Measurement;
using Xunit.Abstractions;

namespace OnnxOutlierTools.Tests.Quantization;

/// <summary>W8A8 on the planted decoder (a massive activation of 2400 born at block 1's down-projection input on BOS, gain-caused
/// channel outliers at block 2's FFN input): the QDQ model runs on ONNX Runtime CPU, ORT's optimizer turns every quantized linear
/// into an int8 kernel, and the next-token KL against the FP32 model is measured (printed); per-tensor static W8A8 after folding
/// the norm gains and baking the BOS sink is strictly closer to FP32 than without.</summary>
public sealed class W8A8PlantedTests(ITestOutputHelper output)
{
    private const int Linears = 35, Sites = 20; // 5 blocks x (q, k, v | o | gate, up | down)

    [Fact]
    public void Static_Planted_EveryLinearBecomesAnInt8KernelInOrt()
    {
        var windows = CalibratedModel.Windows(64, 512);
        using var temp = new TempFolder("w8a8-static");
        var stats = QuantizeKit.Calibrate(CalibratedModel.Planted, windows);
        var (path, result) = QuantizeKit.Quantize(CalibratedModel.Planted, new W8A8Scheme(ActivationMode.StaticPerTensor), temp.Folder("q"), stats);
        Assert.Equal(Sites, result.Sites.Count);
        Assert.Equal(Linears, result.LinearCount);
        Assert.Contains(result.Skipped, s => s.Role == "lm-head");
        foreach (var site in result.Sites) output.WriteLine($"{site.Id}: {site.Activation}");
        // The massive activation (600 at block 1's down input) sets that site's scale: 600 / 127.
        Assert.Equal(600 / 127.0, result.Sites.Single(s => s.Id == "block1.down").Figures["inputScale"], 0.05);

        var ops = QuantizeKit.OptimizedOps(path, temp.Path("q", "optimized.onnx"));
        output.WriteLine(string.Join(", ", ops.Select(o => $"{o.Key}={o.Value}")));
        Assert.Equal(Linears, ops.GetValueOrDefault("com.microsoft.MatMulIntegerToFloat"));
        Assert.False(ops.ContainsKey("DequantizeLinear"), "every DequantizeLinear should be fused into an int8 kernel");

        using var saved = ModelReader.Load(path);
        var inserted = saved.Graph.Nodes.Where(n => n.OpType is "QuantizeLinear" or "DequantizeLinear").ToArray();
        Assert.Equal(3 * Linears, inserted.Length); // per linear: Q and DQ of its input, DQ of its weight
        Assert.All(inserted, n => Assert.Equal("w8a8-static", NodeOrigin.Of(n)?.Pass));
        var int8Weights = saved.Graph.Initializers.Where(i => i.ConstValue!.DataType == Tensors.TensorDataType.Int8 && i.ConstValue.Dims.Count == 2).ToArray();
        Assert.Equal(Linears, int8Weights.Length);

        var report = QuantizeKit.Divergence(CalibratedModel.Planted, path, windows);
        output.WriteLine($"static W8A8 vs FP32: {report}");
        Assert.True(double.IsFinite(report.MeanKl) && report.MeanKl > 0);
    }

    [Fact]
    public void Dynamic_Planted_RunsPerTokenWithMatMulInteger_AndBeatsStatic()
    {
        var windows = CalibratedModel.Windows(64, 512);
        using var temp = new TempFolder("w8a8-dynamic");
        var (path, result) = QuantizeKit.Quantize(CalibratedModel.Planted, new W8A8Scheme(ActivationMode.DynamicPerToken), temp.Folder("q"));
        Assert.Equal(Linears, result.LinearCount);
        var ops = QuantizeKit.OptimizedOps(path, temp.Path("q", "optimized.onnx"));
        output.WriteLine(string.Join(", ", ops.Select(o => $"{o.Key}={o.Value}")));
        Assert.Equal(Linears, ops.GetValueOrDefault("MatMulInteger"));

        var stats = QuantizeKit.Calibrate(CalibratedModel.Planted, windows);
        var (staticPath, _) = QuantizeKit.Quantize(CalibratedModel.Planted, new W8A8Scheme(ActivationMode.StaticPerTensor), temp.Folder("s"), stats);
        var dynamic = QuantizeKit.Divergence(CalibratedModel.Planted, path, windows);
        var @static = QuantizeKit.Divergence(CalibratedModel.Planted, staticPath, windows);
        output.WriteLine($"dynamic W8A8 vs FP32: {dynamic}");
        output.WriteLine($"static W8A8 vs FP32: {@static}");
        // Per-token scales confine the massive activation's coarse grid to the BOS rows; one per-tensor scale imposes it on every token.
        Assert.True(dynamic.MeanKl < @static.MeanKl, $"dynamic KL {dynamic.MeanKl} should be below static KL {@static.MeanKl}");
    }

    [Fact]
    public void Static_AfterFoldNormsAndSinkBias_IsStrictlyCloserToFp32()
    {
        var windows = CalibratedModel.Windows(64, 512);
        using var temp = new TempFolder("w8a8-mitigated");
        var scheme = new W8A8Scheme(ActivationMode.StaticPerTensor);

        var stats = QuantizeKit.Calibrate(CalibratedModel.Planted, windows);
        var (plainQ, _) = QuantizeKit.Quantize(CalibratedModel.Planted, scheme, temp.Folder("plain"), stats);
        var plain = QuantizeKit.Divergence(CalibratedModel.Planted, plainQ, windows);

        var (fullStats, analysis) = CalibratedModel.Calibrate(CalibratedModel.Planted, windows);
        var steps = StepOrder.Sort([new FoldNormsStep(false, FoldSiteKinds.NormSites, InexactPolicy.Mul), new SinkBiasStep()]);
        var outcome = MitigationPipeline.Run(CalibratedModel.Planted, steps, temp.Path("staging"), fullStats, analysis, windows.Take(2).ToList(),
            new SessionSettings { Device = ExecutionDevice.Cpu }, calibrationWindows: windows);
        // The mitigated model takes the text without BOS (its keys and values are baked in); it was proven equal to the original
        // on BOS + text, so it is the FP32 reference on the same text.
        var textOnly = windows.Select(w => w[1..]).ToArray();
        Assert.All(windows, w => Assert.Equal(1, w[0]));
        var mitigatedStats = QuantizeKit.Calibrate(outcome.ModelPath, textOnly);
        var (mitigatedQ, result) = QuantizeKit.Quantize(outcome.ModelPath, scheme, temp.Folder("mitigated"), mitigatedStats);
        var mitigated = QuantizeKit.Divergence(outcome.ModelPath, mitigatedQ, textOnly);

        output.WriteLine($"static W8A8, original: {plain}");
        output.WriteLine($"static W8A8, after fold-norms + sink-bias: {mitigated}");
        foreach (var site in result.Sites) output.WriteLine($"  {site.Id}: {site.Activation}");
        Assert.True(mitigated.MeanKl < plain.MeanKl, $"mitigated KL {mitigated.MeanKl} should be strictly below {plain.MeanKl}");
    }
}
