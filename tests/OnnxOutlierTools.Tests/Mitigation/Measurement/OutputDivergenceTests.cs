using System.Text.Json;
using OnnxOutlierTools.Calibration;
using OnnxOutlierTools.Import;
using OnnxOutlierTools.Import.Planted;
using OnnxOutlierTools.Mitigation;
using OnnxOutlierTools.Mitigation.Measurement;
using OnnxOutlierTools.Runtime;

namespace OnnxOutlierTools.Tests.Mitigation.Measurement;

/// <summary>OutputDivergence on real ONNX Runtime sessions of the planted model: a model against itself, its perplexity
/// against a float64 computation from the logits in the test and against the perplexity ground-truth.json publishes.</summary>
public class OutputDivergenceTests
{
    [Fact]
    public void Measure_ModelAgainstItself_KlZeroAgreementOneAndPerplexityFromLogits()
    {
        var windows = CalibratedModel.Windows(seqLen: 48, maxTokens: 192);
        using var a = SessionFactory.Open(CalibratedModel.Planted, SessionSettings.CpuUnoptimized);
        using var b = SessionFactory.Open(CalibratedModel.Planted, SessionSettings.CpuUnoptimized);
        var report = OutputDivergence.Measure(a, b, windows, new DivergenceOptions { BatchSize = 2 });

        Assert.Equal(windows.Count, report.Windows);
        Assert.Equal(windows.Sum(w => (long)w.Length), report.Positions);
        Assert.Equal(windows.Sum(w => (long)w.Length - 1), report.ScoredTokens);
        Assert.Equal(0, report.MeanKl);
        Assert.Equal(0, report.MaxKl);
        Assert.Equal(1, report.Top1Agreement);
        Assert.Equal(report.Original, report.Rewritten);
        Assert.Equal(0, report.Original.NonFinitePositions);

        // float64 reference from the logits of a plain run (fed by the calibration layer's FeedPlan, one window at a time).
        var plan = FeedPlan.Create(a.ModelPath, a.Inputs, a.OutputNames);
        double nll = 0;
        long count = 0;
        foreach (var w in windows)
        {
            var logits = a.Run(plan.Build(1, w.Length, w, 0, null), ["logits"])[0].Tensor.ToSingleArray();
            int vocab = logits.Length / w.Length;
            for (int t = 0; t + 1 < w.Length; t++)
            {
                var row = logits.AsSpan(t * vocab, vocab);
                double max = double.NegativeInfinity;
                foreach (float v in row) max = Math.Max(max, v);
                double sum = 0;
                foreach (float v in row) sum += Math.Exp(v - max);
                nll += max + Math.Log(sum) - row[w[t + 1]];
                count++;
            }
        }
        Assert.Equal(count, report.ScoredTokens);
        Assert.Equal(Math.Exp(nll / count), report.Original.Perplexity, 1e-9);
        Assert.Equal(nll / count, report.Original.MeanNll, 1e-12);
    }

    [Fact]
    public void Measure_PlantedProtocol_PerplexityIsTheGroundTruthFigure()
    {
        // ground-truth.json's perplexity was computed by the generator's own float64 forward pass of the planted weights
        // (PlantedMeasurement), on its own 32 windows of 256 tokens: the ONNX model on ORT must give the same figure.
        using var truth = JsonDocument.Parse(File.ReadAllText(CalibratedModel.PlantedTruth));
        var perplexity = truth.RootElement.GetProperty("perplexity");
        double expected = perplexity.GetProperty("after").GetDouble();
        var windows = PlantedCorpus.Windows(File.ReadAllText(CalibratedModel.Text), Llama2cTokenizer.Load(CalibratedModel.Tokenizer, 512), perplexity.GetProperty("windows").GetInt32());
        using var a = SessionFactory.Open(CalibratedModel.Planted, SessionSettings.CpuUnoptimized);
        using var b = SessionFactory.Open(CalibratedModel.Planted);
        var report = OutputDivergence.Measure(a, b, windows, new DivergenceOptions { BatchSize = 8 });
        Assert.Equal(perplexity.GetProperty("scoredTokens").GetInt64(), report.ScoredTokens);
        Assert.Equal(expected, report.Original.Perplexity, expected * 1e-4);
        // ORT with and without graph optimizations: the same model, so the distributions agree to fp32 rounding.
        Assert.InRange(report.MaxKl, 0, 1e-6);
        Assert.True(report.Top1Agreement > 0.999, report.ToString());
    }

    [Fact]
    public void Measure_NoLogitsOutput_IsBadInput()
    {
        using var a = SessionFactory.Open(CalibratedModel.Planted, SessionSettings.CpuUnoptimized);
        var e = Assert.Throws<MitigationInputException>(() => OutputDivergence.Measure(a, a, [[1, 2, 3]], new DivergenceOptions { LogitsOutput = "hidden" }));
        Assert.Contains("no output 'hidden'", e.Message);
    }
}
