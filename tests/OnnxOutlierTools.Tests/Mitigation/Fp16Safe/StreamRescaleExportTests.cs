using OnnxOutlierTools.Calibration.Text;
using OnnxOutlierTools.IO;
using OnnxOutlierTools.Mitigation.Fp16Safe;
using OnnxOutlierTools.Passes;
using OnnxOutlierTools.Probes;
using OnnxOutlierTools.Runtime;
using OnnxOutlierTools.Tests.Mitigation.Measurement;
using Xunit.Abstractions;

namespace OnnxOutlierTools.Tests.Mitigation.Fp16Safe;

/// <summary>The whole-stream rescale on real exports: torch.onnx's HF Llama (decomposed RMSNorm with a Constant epsilon,
/// float -> float Casts on the stream, tied-head copy) and the genai builder's (SkipSimplifiedLayerNormalization with
/// epsilon attributes, GroupQueryAttention). The ceiling is set below each model's own stream maximum so the pass has to
/// act; the logits on ORT CPU must stay bit-identical.</summary>
public class StreamRescaleExportTests(ITestOutputHelper output)
{
    [Theory]
    [InlineData("llama-torch-nopast", "model.onnx", true)]
    [InlineData("llama-genai-gqa-fp32", "model.onnx", false)]
    public void Fp16Safe_StreamOfARealExport_RescaledBitExact(string flavour, string file, bool llama2cTokenizer)
    {
        string path = Fixtures.Export(flavour, file);
        var windows = CalibrationInputs.Prepare(new CalibrationRequest(path, CalibratedModel.Text, null, llama2cTokenizer ? CalibratedModel.Tokenizer : null,
            16, 64, BosMode.Auto, false)).Corpus.Windows.Select(w => w.Ids).ToArray();
        var (stats, _) = CalibratedModel.Calibrate(path, windows);
        double streamMax = stats.Manifest.Points.Where(p => p.Kind is ProbeKind.Embedding or ProbeKind.Residual or ProbeKind.ResidualSum)
            .Max(p => Enumerable.Range(0, stats.Points[p.Id].Channels).Max(stats.Points[p.Id].ChannelAbsMax));
        var settings = new Fp16SafeSettings { Fp16Max = streamMax / 3, Margin = 1 };

        using var model = ModelReader.Load(path);
        var pass = new Fp16SafePass(CalibratedModel.Recognize(model), stats, settings);
        var result = pass.Run(new PassContext(model));
        foreach (var skipped in result.Skipped) output.WriteLine(skipped.ToString());
        Assert.Equal(1, result.Count(Fp16SafePlan.ResidualRule));
        Assert.Equal(2, pass.Stream!.Exponent);

        using var original = SessionFactory.Open(path, SessionSettings.CpuUnoptimized);
        using var rewritten = OnnxOutlierTools.Calibration.InMemoryModel.Open(model, SessionSettings.CpuUnoptimized);
        var plan = OnnxOutlierTools.Calibration.FeedPlan.Create(path, original.Inputs, original.OutputNames);
        foreach (var w in windows.Take(2))
        {
            var feeds = plan.Build(1, w.Length, w, 0, null);
            Assert.Equal(original.Run(feeds, ["logits"])[0].Tensor.ToSingleArray(), rewritten.Run(feeds, ["logits"])[0].Tensor.ToSingleArray());
        }
    }
}
