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
    public void Measure_TwoExportsOfStories260K_PublishedPerplexityAndTheSameDistributions()
    {
        // MANIFEST.md "Reference numbers", perplexity protocol A: stories = the text split at blank lines, trimmed, empty
        // dropped; stream = each story's llama2.c encoding with its BOS; 78 windows of 256 cut from the first 20,000
        // tokens; positions 1..255 scored: 19890 tokens, mean NLL 1.427811, perplexity 4.1696 (PyTorch float32).
        var tokenizer = Llama2cTokenizer.Load(CalibratedModel.Tokenizer, 512);
        var stream = new List<int>();
        foreach (string chunk in File.ReadAllText(CalibratedModel.Text).Split("\n\n"))
        {
            if (chunk.Trim().Length == 0) continue;
            stream.AddRange(tokenizer.Encode(chunk.Trim(), bos: true));
            if (stream.Count >= 20_000) break;
        }
        var windows = Enumerable.Range(0, 20_000 / 256).Select(i => stream.GetRange(i * 256, 256).ToArray()).ToArray();
        // The same weights exported without and with a KV cache (fed an empty past): the calibration feeds drive both.
        using var plain = SessionFactory.Open(Fixtures.Export("llama-torch-nopast", "model.onnx"));
        using var cached = SessionFactory.Open(Fixtures.Export("llama-torch-past", "model.onnx"));
        var report = OutputDivergence.Measure(plain, cached, windows, new DivergenceOptions { BatchSize = 13 });
        Assert.Equal(78, report.Windows);
        Assert.Equal(19890, report.ScoredTokens);
        Assert.Equal(1.427811, report.Original.MeanNll, 2e-6);
        Assert.Equal(4.1696, report.Original.Perplexity, 1e-4);
        Assert.Equal(report.Original.MeanNll, report.Rewritten.MeanNll, 1e-6);
        Assert.InRange(report.MaxKl, 0, 1e-8);
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
