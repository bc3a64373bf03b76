using OnnxOutlierTools.Calibration.Text;
using OnnxOutlierTools.Quantization.Common;
using OnnxOutlierTools.Quantization.W8A8;
using OnnxOutlierTools.Tests.Mitigation.Measurement;
using Xunit.Abstractions;

namespace OnnxOutlierTools.Tests.Quantization;

/// <summary>W8A8 on real exports: stories260K (trained, torch.onnx, all activations small: residual max about 8.6) is close to
/// FP32 under both schemes; the attention matmuls and the LM head are quantized when asked; the genai builder's packed QKV and
/// fused GroupQueryAttention run on ORT quantized.</summary>
public sealed class W8A8FixtureTests(ITestOutputHelper output)
{
    private static string Stories => Fixtures.Export("llama-torch-nopast", "model.onnx");

    private static IReadOnlyList<int[]> StoriesWindows() =>
        CalibrationInputs.Prepare(new CalibrationRequest(Stories, Fixtures.Path("text", "tinystories-sample.txt"), null, Fixtures.Path("llama2c", "tok512.bin"),
            64, 512, BosMode.Auto, false)).Corpus.Windows.Select(w => w.Ids).ToArray();

    [Theory]
    [InlineData(ActivationMode.StaticPerTensor, 0.1)]
    [InlineData(ActivationMode.DynamicPerToken, 0.1)]
    public void Stories260K_SmallActivations_StayCloseToFp32(ActivationMode mode, double bound)
    {
        var windows = StoriesWindows();
        using var temp = new TempFolder("w8a8-stories");
        var stats = mode == ActivationMode.StaticPerTensor ? QuantizeKit.Calibrate(Stories, windows) : null;
        var (path, result) = QuantizeKit.Quantize(Stories, new W8A8Scheme(mode), temp.Folder("q"), stats);
        Assert.Equal(35, result.LinearCount); // 5 blocks x 7 linears; the head (a transposed copy of the embedding) left in float
        var report = QuantizeKit.Divergence(Stories, path, windows);
        output.WriteLine($"{result.Scheme} on stories260K: {report}");
        // Loose: a model without outliers loses little at 8 bits (measured 0.007 static, 0.002 dynamic); NOT a claim of quality.
        Assert.True(report.MeanKl < bound, $"KL {report.MeanKl}");
        Assert.True(report.Top1Agreement > 0.8, $"top-1 {report.Top1Agreement}");
    }

    [Theory]
    [InlineData(ActivationMode.StaticPerTensor)]
    [InlineData(ActivationMode.DynamicPerToken)]
    public void AttentionAndHead_WhenAsked_AreQuantizedToo(ActivationMode mode)
    {
        var windows = StoriesWindows();
        using var temp = new TempFolder("w8a8-attention");
        var options = new QuantizationOptions { Attention = true, IncludeLmHead = true };
        CalibrationStatisticsOrNull(mode, windows, options, out var stats);
        var (path, result) = QuantizeKit.Quantize(Stories, new W8A8Scheme(mode), temp.Folder("q"), stats, options, windows);
        output.WriteLine(string.Join(", ", result.Sites.Select(s => s.Id)) + "; skipped: " + string.Join("; ", result.Skipped));
        Assert.Equal(36, result.LinearCount);
        Assert.Contains(result.Sites, s => s.Id == "lm-head");
        Assert.Equal(10, result.Sites.Count(s => s.Kind is "attention-scores" or "attention-values"));
        Assert.Equal(10, result.Counts[W8A8Pass.AttentionRule]);
        if (mode == ActivationMode.StaticPerTensor)
            Assert.All(result.Sites.Where(s => s.Kind == "attention-values"), s => Assert.Equal(1 / 127.0, s.Figures["input0Scale"], 1e-7)); // P in [0, 1]
        var report = QuantizeKit.Divergence(Stories, path, windows);
        output.WriteLine($"{result.Scheme} + attention matmuls + head on stories260K: {report}");
        Assert.True(double.IsFinite(report.MeanKl));
        var ops = QuantizeKit.OptimizedOps(path, temp.Path("q", "optimized.onnx"));
        output.WriteLine(string.Join(", ", ops.Select(o => $"{o.Key}={o.Value}")));
        // Every linear and every attention matmul runs an int8 kernel (static: ORT fused the Q/DQ pairs; measured 41
        // MatMulIntegerToFloat + 5 QLinearMatMul).
        if (mode == ActivationMode.DynamicPerToken) Assert.Equal(36 + 10, ops.GetValueOrDefault("MatMulInteger"));
        else Assert.Equal(36 + 10, ops.GetValueOrDefault("com.microsoft.MatMulIntegerToFloat") + ops.GetValueOrDefault("QLinearMatMul"));
    }

    [Theory]
    [InlineData(ActivationMode.StaticPerTensor)]
    [InlineData(ActivationMode.DynamicPerToken)]
    public void GenaiPackedQkv_WithGroupQueryAttention_RunsQuantized(ActivationMode mode)
    {
        string model = Fixtures.Export("llama-genai-gqa-fp32", "model.onnx");
        var windows = CalibrationInputs.Prepare(new CalibrationRequest(model, Fixtures.Path("text", "tinystories-sample.txt"), null, null, 64, 256, BosMode.Auto, false))
            .Corpus.Windows.Select(w => w.Ids).ToArray();
        using var temp = new TempFolder("w8a8-genai");
        var stats = mode == ActivationMode.StaticPerTensor ? QuantizeKit.Calibrate(model, windows) : null;
        var (path, result) = QuantizeKit.Quantize(model, new W8A8Scheme(mode), temp.Folder("q"), stats);
        output.WriteLine(string.Join(", ", result.Sites.Select(s => $"{s.Id} ({string.Join(" ", s.Linears.Select(l => l.Split(' ')[0]))})")));
        Assert.Contains(result.Sites, s => s.Linears.Any(l => l.StartsWith("qkv ", StringComparison.Ordinal)));
        var report = QuantizeKit.Divergence(model, path, windows);
        output.WriteLine($"{result.Scheme} on llama-genai-gqa-fp32: {report}");
        Assert.True(double.IsFinite(report.MeanKl));
    }

    private static void CalibrationStatisticsOrNull(ActivationMode mode, IReadOnlyList<int[]> windows, QuantizationOptions options, out OnnxOutlierTools.Probes.CalibrationStatistics? stats)
    {
        stats = null;
        if (mode != ActivationMode.StaticPerTensor) return;
        using var model = OnnxOutlierTools.IO.ModelReader.Load(Stories);
        var extra = W8A8Scheme.ExtraTensors(QuantizeKit.Recognize(model), options);
        stats = QuantizeKit.Calibrate(Stories, windows, extra);
    }
}
