using Xunit.Abstractions;
using System.Text.Json;
using OnnxOutlierTools.Analysis;
using OnnxOutlierTools.Calibration;
using OnnxOutlierTools.IO;
using OnnxOutlierTools.Mitigation;
using OnnxOutlierTools.Mitigation.Clipping;
using OnnxOutlierTools.Mitigation.Measurement;
using OnnxOutlierTools.Passes;
using OnnxOutlierTools.Probes;
using OnnxOutlierTools.Runtime;
using OnnxOutlierTools.Tests.Mitigation.Measurement;

namespace OnnxOutlierTools.Tests.Mitigation.Clipping;

/// <summary>--clip-ma on the planted models (onnx-models/planted-llama-decomposed and -genai, ground-truth.json): the clamp goes where
/// the ground truth planted the birth (block 1's down-projection input, neurons 172 and 173), the massive activation is
/// gone from the residual stream when the rewritten model is probed again, and the cost is measured on the text.</summary>
public class ClipMaPassTests(ITestOutputHelper output)
{
    [Theory]
    [InlineData("planted-llama-decomposed")]
    [InlineData("planted-llama-genai")]
    public void ClipMa_PlantedModel_RemovesTheMassiveActivationAndMeasuresItsCost(string folder)
    {
        string planted = Path.Combine(CalibratedModel.RepoRoot(), "onnx-models", folder, "model.onnx");
        using var truth = JsonDocument.Parse(File.ReadAllText(Path.Combine(Path.GetDirectoryName(planted)!, "ground-truth.json")));
        var ma = truth.RootElement.GetProperty("massiveActivation");
        int birthBlock = ma.GetProperty("block").GetInt32();
        var channels = ma.GetProperty("channels").EnumerateArray().Select(c => c.GetInt32()).ToArray();
        var neurons = ma.GetProperty("neurons").EnumerateArray().Select(c => c.GetInt32()).ToArray();
        var windows = CalibratedModel.Windows(seqLen: 64, maxTokens: 512, model: planted);
        var (stats, analysis) = CalibratedModel.Calibrate(planted, windows);

        using var temp = new TempFolder("clip-ma");
        string rewritten = temp.Path("model.onnx");
        ClipMaPass pass;
        using (var model = ModelReader.Load(planted))
        {
            pass = new ClipMaPass(CalibratedModel.Recognize(model), analysis, stats);
            var result = pass.Run(new PassContext(model));
            Assert.True(result.Changed);
            Assert.Equal(1, result.Count(ClipMaPlan.Rule));
            ModelWriter.Save(model, rewritten, new SaveOptions { Layout = TensorLayout.External });
        }
        var site = Assert.Single(pass.Applied!);
        Assert.Equal(birthBlock, site.Block);
        Assert.Equal(channels.Order(), site.MassiveChannels);
        Assert.Equal(neurons.Order(), site.Neurons.Select(n => n.Neuron));
        foreach (var n in site.Neurons)
        {
            // Planted at 600 and 450 on BOS; elsewhere the new neurons stay near zero.
            Assert.InRange(n.MaxAbs, 400, 700);
            Assert.InRange(n.Clamp, 0, n.MaxAbs / 50);
        }

        // Probe the rewritten model again: the planted channels are ordinary in every block after the birth.
        var (after, afterAnalysis) = CalibratedModel.Calibrate(rewritten, windows);
        foreach (int c in channels)
            for (int b = birthBlock; b < stats.Manifest.Points.Max(p => p.Block ?? 0) + 1; b++)
            {
                double before = CalibratedModel.ChannelMax(stats, ProbeKind.Residual, b, c);
                double now = CalibratedModel.ChannelMax(after, ProbeKind.Residual, b, c);
                Assert.True(before > 1000, $"block {b} channel {c}: {before} before");
                Assert.True(now < before / 100, $"block {b} channel {c}: {before} -> {now}");
            }
        Assert.DoesNotContain(afterAnalysis.MassiveActivations, m => channels.Contains(m.Channel));

        // Not exact: its cost is measured. The sink head of block 2 reads channel 66 on BOS, so the text gets harder.
        using var original = SessionFactory.Open(planted, SessionSettings.CpuUnoptimized);
        using var clipped = SessionFactory.Open(rewritten, SessionSettings.CpuUnoptimized);
        var cost = OutputDivergence.Measure(original, clipped, windows, new DivergenceOptions { BatchSize = 4 });
        Assert.True(cost.MeanKl > 1e-3, cost.ToString());
        Assert.True(cost.Rewritten.Perplexity > cost.Original.Perplexity, cost.ToString());
        Assert.InRange(cost.Top1Agreement, 0, 0.999);
        Assert.Equal(0, cost.Rewritten.NonFinitePositions);
        output.WriteLine($"clamps: {string.Join("; ", site.Neurons)}");
        output.WriteLine($"cost on {windows.Count} windows of {windows[0].Length} tokens: {cost}");
    }

    [Fact]
    public void ClipMa_NoMassiveActivation_IsBadInput()
    {
        var windows = CalibratedModel.Windows(seqLen: 32, maxTokens: 64);
        var (stats, analysis) = CalibratedModel.Calibrate(CalibratedModel.Planted, windows);
        using var model = ModelReader.Load(CalibratedModel.Planted);
        var pass = new ClipMaPass(CalibratedModel.Recognize(model), analysis with { MassiveActivations = [] }, stats);
        var e = Assert.Throws<PassException>(() => pass.Run(new PassContext(model)));
        Assert.IsType<MitigationInputException>(e.InnerException);
        Assert.Contains("no massive activation", e.Message);
    }
}
