using System.Globalization;
using OnnxOutlierTools.Evaluation.FlipRate;
using OnnxOutlierTools.IO;
using OnnxOutlierTools.Mitigation.Folding;
using OnnxOutlierTools.Mitigation.Pipeline;
using OnnxOutlierTools.Quantization.Int4;
using OnnxOutlierTools.Quantization.Int4.Awq;
using OnnxOutlierTools.Runtime;
using OnnxOutlierTools.Tests.Mitigation.Measurement;
using Xunit.Abstractions;

namespace OnnxOutlierTools.Tests.Quantization;

/// <summary>Flip rate of next-token argmax against the FP32 planted models (the massive activation born in block 1, the attention
/// sink on BOS) for int4 MatMulNBits at accuracy_level 0 and 4, before and after mitigation (fold-norms; fold-norms + sink-bias
/// through MitigationPipeline, proven exact), on the TinyStories sample. Printed as a table; only the certain facts are asserted
/// (the FP32 model against itself flips nothing; every measured rate is a rate).</summary>
public class Int4FlipRateTests(ITestOutputHelper output)
{
    [Theory]
    [InlineData("planted-llama-decomposed")]
    [InlineData("planted-llama-genai")]
    public void FlipRate_Int4AccuracyLevels_BeforeAndAfterMitigation(string name)
    {
        using var temp = new TempFolder("fliprate");
        string fp32 = Path.Combine(CalibratedModel.RepoRoot(), "onnx-models", name, "model.onnx");
        var windows = CalibratedModel.Windows(seqLen: 64, maxTokens: 1024, model: fp32);
        var session = SessionSettings.CpuUnoptimized;
        var proof = windows.Take(2).ToList();

        // AWQ is calibrated on the first 128 tokens of the sample (inside the first evaluation windows).
        var calibration = CalibratedModel.Windows(seqLen: 32, maxTokens: 128, model: fp32);
        var variants = new List<(string Name, string Path, int Dropped, bool Awq)> { ("none", fp32, 0, false), ("none, AWQ weights", fp32, 0, true) };
        variants.Add(("fold-norms", Mitigate(fp32, [new FoldNormsStep(false, FoldSiteKinds.NormSites, InexactPolicy.Mul)], temp.Folder("fold"), proof, session), 0, false));
        variants.Add(("fold-norms + sink-bias", Mitigate(fp32,
            [new FoldNormsStep(false, FoldSiteKinds.NormSites, InexactPolicy.Mul), new SinkBiasStep()], temp.Folder("sink"), proof, session), 1, false));

        using var reference = SessionFactory.Open(fp32, session);
        using (var self = SessionFactory.Open(fp32, session))
        {
            var same = FlipRateMeter.Measure(reference, self, windows);
            Assert.Equal(0, same.Flips);
            Assert.Equal(0, same.NearTieFlips);
            Assert.True(same.NearTiePositions >= same.Positions / 10, same.ToString());
        }

        var lines = new List<string>
        {
            $"{name}: int4 MatMulNBits (symmetric, block 32) vs the FP32 model, {windows.Count} windows of {windows[0].Length} tokens (TinyStories sample)",
            "| mitigation | accuracy_level | flip rate | near-tie flip rate | level 4 vs level 0 of the same model | positions (near ties) |",
            "|---|---|---|---|---|---|",
        };
        foreach (var (variant, path, dropped, awq) in variants)
        {
            string? levelZero = null;
            foreach (int level in new[] { 0, 4 })
            {
                string quantized = temp.Path($"{variant.Replace(' ', '_').Replace('+', 'p').Replace(',', '_')}-acc{level}", "model.onnx");
                using (var model = ModelReader.Load(path))
                {
                    var settings = new Int4Settings(Int4Format.MatMulNBits, 32, symmetric: true, accuracyLevel: level);
                    var report = awq ? AwqQuantizer.Quantize(model, calibration, settings, new AwqSettings { Alphas = [0, 0.25, 0.5, 0.75, 1] }, session).Int4
                        : Int4Quantizer.Quantize(model, settings);
                    Assert.True(report.QuantizedCount > 0);
                    ModelWriter.Save(model, quantized, new SaveOptions { Layout = TensorLayout.External, Durable = false });
                }
                using var candidate = SessionFactory.Open(quantized, session);
                var flips = FlipRateMeter.Measure(reference, candidate, windows,
                    new FlipRateOptions { CandidateDropsPrefix = dropped });
                Assert.InRange(flips.FlipRate, 0, 1);
                Assert.InRange(flips.NearTieFlipRate, 0, 1);
                // What the int8 activations of accuracy_level 4 alone change: level 4 against level 0 of the same int4 weights.
                string versusZero = "-";
                if (levelZero is null) levelZero = quantized;
                else
                {
                    using var zero = SessionFactory.Open(levelZero, session);
                    var own = FlipRateMeter.Measure(zero, candidate, dropped == 0 ? windows : windows.Select(w => w[dropped..]).ToList());
                    versusZero = string.Create(CultureInfo.InvariantCulture, $"{own.FlipRate:P2} ({own.Flips}), near ties {own.NearTieFlipRate:P2}");
                }
                lines.Add(string.Create(CultureInfo.InvariantCulture,
                    $"| {variant} | {level} | {flips.FlipRate:P2} ({flips.Flips}) | {flips.NearTieFlipRate:P2} ({flips.NearTieFlips}) | {versusZero} | {flips.Positions} ({flips.NearTiePositions}, margin <= {flips.NearTieThreshold:G3}) |"));
            }
        }
        foreach (var line in lines) output.WriteLine(line);
    }

    [Fact]
    public void FlipRate_DifferentVocabularies_OneLine()
    {
        var windows = CalibratedModel.Windows(seqLen: 8, maxTokens: 8);
        using var planted = SessionFactory.Open(CalibratedModel.Planted, SessionSettings.CpuUnoptimized);
        using var gpt2 = SessionFactory.Open(Fixtures.Export("gpt2-ort-fused-fp32", "past.onnx"), SessionSettings.CpuUnoptimized);
        var ex = Assert.Throws<OnnxOutlierTools.Mitigation.MitigationInputException>(() => FlipRateMeter.Measure(planted, gpt2, windows));
        Assert.Contains("512 and 1000", ex.Message);
        Assert.DoesNotContain('\n', ex.Message);
    }

    private static string Mitigate(string model, IReadOnlyList<MitigationStep> steps, string staging, IReadOnlyList<int[]> proof, SessionSettings session)
    {
        var outcome = MitigationPipeline.Run(model, steps, staging, null, null, proof, session);
        Assert.All(outcome.Stages, s => Assert.True(s.Proof is null || s.Proof.Exact, s.ModelPath));
        return outcome.ModelPath;
    }
}
