using OnnxOutlierTools.IO;
using OnnxOutlierTools.Ir;
using OnnxOutlierTools.Mitigation;
using OnnxOutlierTools.Mitigation.Fp16Safe;
using OnnxOutlierTools.Mitigation.Measurement;
using OnnxOutlierTools.Passes;
using OnnxOutlierTools.Probes;
using OnnxOutlierTools.Runtime;
using OnnxOutlierTools.Structure.Roles;
using OnnxOutlierTools.Tests.Mitigation.Measurement;
using Xunit.Abstractions;

namespace OnnxOutlierTools.Tests.Mitigation.Fp16Safe;

/// <summary>--fp16-safe on a model whose down-projection input overflows fp16 (<see cref="OverflowingModels"/>): in the fp16
/// model y6 is infinite on BOS, in the rewritten fp16 model it is finite and the logits equal the float32 reference within
/// fp16 tolerance; the same rewrite of the float32 model is bit-exact. (ORT's CPU provider computes fp16 MatMul and Mul in
/// fp32, so there the overflow is seen on y6 fetched as an fp16 output; on fp16 hardware it turns the logits into NaN.)</summary>
public class Fp16SafePassTests(OverflowingModels models, ITestOutputHelper output) : IClassFixture<OverflowingModels>
{
    private static (Fp16SafePass Pass, PassResult Result) Rewrite(Model model, CalibrationStatistics stats, Fp16SafeSettings? settings = null)
    {
        var pass = new Fp16SafePass(CalibratedModel.Recognize(model), stats, settings);
        return (pass, pass.Run(new PassContext(model)));
    }

    private static float[] Logits(ModelSession session, int[] window)
    {
        var plan = OnnxOutlierTools.Calibration.FeedPlan.Create(session.ModelPath, session.Inputs, session.OutputNames);
        return session.Run(plan.Build(1, window.Length, window, 0, null), ["logits"])[0].Tensor.ToSingleArray();
    }

    /// <summary>Runs <paramref name="model"/> on one window with block 1's down-projection input y6 (fp16 in an fp16 model)
    /// also fetched as a graph output: ORT's CPU provider has no fp16 kernels for MatMul, Mul or Sigmoid and computes
    /// them in fp32 between Casts it inserts, so on CPU an fp16 overflow shows only where an fp16 tensor is materialized
    /// (a graph output, an explicit Cast, an op with an fp16 kernel); on fp16 hardware it is every y6.</summary>
    private static (float[] Logits, float[] DownInput) RunExposingDownInput(Model model, int[] window)
    {
        var y6 = CalibratedModel.Recognize(model).Blocks[OverflowingModels.Block].Ffn!.DownInput;
        var type = model.Graph.Initializers.First(i => i.ConstValue!.Dims.Count == 2).ConstValue!.DataType;
        y6.SetTensorType(type, [Dim.Unknown, Dim.Unknown, Dim.Unknown]);
        model.Graph.AddOutput(y6);
        using var session = OnnxOutlierTools.Calibration.InMemoryModel.Open(model, SessionSettings.CpuUnoptimized);
        var plan = OnnxOutlierTools.Calibration.FeedPlan.Create(session.ModelPath, session.Inputs, session.OutputNames);
        var outputs = session.Run(plan.Build(1, window.Length, window, 0, null), ["logits", y6.Name]);
        return (outputs[0].Tensor.ToSingleArray(), outputs[1].Tensor.ToSingleArray());
    }

    [Fact]
    public void Fp16Safe_OverflowingFp16Model_FiniteAndEqualToTheFp32Reference()
    {
        // The statistics of the fp32 twin measure how far y6 goes (153600 on BOS): the fp16 model itself would only see inf.
        Assert.InRange(CalibratedModel.ChannelMax(models.Fp32Stats, ProbeKind.DownInput, OverflowingModels.Block, 172), 65504, 2e5);
        string rewritten = Path.Combine(models.Folder, "fp16-safe", "model.onnx");
        Directory.CreateDirectory(Path.GetDirectoryName(rewritten)!);
        Fp16SafePass pass;
        using (var model = ModelReader.Load(models.Fp16))
        {
            (pass, var result) = Rewrite(model, models.Fp32Stats);
            Assert.Equal(1, result.Count(Fp16SafePlan.UpDownRule));
            ModelWriter.Save(model, rewritten, new SaveOptions { Layout = TensorLayout.External });
        }
        var site = Assert.Single(pass.Applied!);
        Assert.Equal(OverflowingModels.Block, site.Block);
        Assert.Equal(OverflowingModels.Neurons, site.Neurons.Select(n => n.Neuron));
        Assert.All(site.Neurons, n => Assert.True(n.MaxAbsAfter < 65504 / 4.0 && n.MaxAbsAfter >= 65504 / 8.0, n.ToString()));
        // The residual stream (2400 on BOS) is in range: nothing refused.
        Assert.Empty(pass.Refused!);

        // y6 in fp16: infinite on BOS as converted, finite (and 2^-k times the fp32 value) after the rewrite.
        var window = models.Windows[0];
        int width = (int)site.Ffn.Down.InFeatures;
        float[] y6Fp32, y6Broken, y6Safe;
        using (var m = ModelReader.Load(models.Fp32)) y6Fp32 = RunExposingDownInput(m, window).DownInput;
        using (var m = ModelReader.Load(models.Fp16)) y6Broken = RunExposingDownInput(m, window).DownInput;
        using (var m = ModelReader.Load(rewritten)) y6Safe = RunExposingDownInput(m, window).DownInput;
        Assert.All(OverflowingModels.Neurons, n => Assert.True(float.IsInfinity(y6Broken[n]), $"neuron {n} at BOS: {y6Broken[n]}"));
        Assert.All(y6Safe, v => Assert.True(float.IsFinite(v)));
        foreach (var n in site.Neurons)
            Assert.Equal(y6Fp32[n.Neuron] / Math.ScaleB(1, n.Exponent), y6Safe[n.Neuron], Math.Abs(y6Fp32[n.Neuron]) * 2e-3 / Math.ScaleB(1, n.Exponent));
        output.WriteLine($"y6 neuron 172 on BOS: fp32 {y6Fp32[172]}, fp16 as converted {y6Broken[172]}, fp16 rewritten {y6Safe[172]} (k = {site.Neurons[0].Exponent}); {width} neurons");

        using var reference = SessionFactory.Open(models.Fp32, SessionSettings.CpuUnoptimized);
        using var original = SessionFactory.Open(models.Fp16, SessionSettings.CpuUnoptimized);
        using var safe = SessionFactory.Open(rewritten, SessionSettings.CpuUnoptimized);
        var asConverted = OutputDivergence.Measure(reference, original, models.Windows);
        var fixedUp = OutputDivergence.Measure(reference, safe, models.Windows);
        output.WriteLine($"fp16 as converted against fp32 on ORT CPU (MatMul/Mul run in fp32 there): {asConverted}, {asConverted.Rewritten.NonFinitePositions} non-finite positions");
        output.WriteLine($"fp16 rewritten against fp32: {fixedUp}");
        Assert.Equal(0, fixedUp.Rewritten.NonFinitePositions);
        Assert.True(fixedUp.MaxKl < 1e-3, fixedUp.ToString());
        Assert.True(fixedUp.Top1Agreement > 0.97, fixedUp.ToString());
        Assert.Equal(fixedUp.Original.Perplexity, fixedUp.Rewritten.Perplexity, fixedUp.Original.Perplexity * 2e-3);

        // Element-wise against fp32: |d| <= 5e-2 + 1e-2 |ref|, the rounding of the weights to fp16 (2^-11 relative each)
        // carried through five blocks (the converted model shows the same differences: they are not the rewrite's).
        // On ORT CPU the fp16 ops run in fp32, so the rewritten logits equal the converted model's bit for bit there: the
        // power-of-two fold changed no product.
        foreach (var w in models.Windows.Take(2))
        {
            var a = Logits(reference, w);
            var b = Logits(safe, w);
            double worst = 0, worstAbs = 0;
            for (int i = 0; i < a.Length; i++)
            {
                Assert.True(float.IsFinite(b[i]));
                worst = Math.Max(worst, Math.Abs(a[i] - b[i]) / (5e-2 + 1e-2 * Math.Abs(a[i])));
                worstAbs = Math.Max(worstAbs, Math.Abs(a[i] - b[i]));
            }
            output.WriteLine($"max |fp16 - fp32| {worstAbs:G4}, worst / tolerance {worst:F3}");
            Assert.True(worst <= 1, $"worst {worst}");
            Assert.Equal(Logits(original, w), b);
        }
    }

    [Fact]
    public void Fp16Safe_Fp32Model_LogitsBitExactAndWeightsExactPowersOfTwo()
    {
        using var model = ModelReader.Load(models.Fp32);
        var structure = CalibratedModel.Recognize(model);
        var ffn = structure.Blocks[OverflowingModels.Block].Ffn!;
        var upBefore = ffn.Up.Weight.ConstValue!.ToSingleArray();
        var downBefore = ffn.Down.Weight.ConstValue!.ToSingleArray();
        var pass = new Fp16SafePass(structure, models.Fp32Stats);
        pass.Run(new PassContext(model));
        var site = Assert.Single(pass.Applied!);
        var upAfter = ffn.Up.Weight.ConstValue!.ToSingleArray();
        var downAfter = ffn.Down.Weight.ConstValue!.ToSingleArray();
        long outs = ffn.Up.OutFeatures;
        Assert.Equal(WeightLayout.InOut, ffn.Up.Layout);
        for (int i = 0; i < upBefore.Length; i++)
        {
            int neuron = (int)(i % outs);
            var n = site.Neurons.FirstOrDefault(x => x.Neuron == neuron);
            Assert.Equal(n is null ? upBefore[i] : upBefore[i] / MathF.Pow(2, n.Exponent), upAfter[i]);
        }
        for (int i = 0; i < downBefore.Length; i++)
        {
            int neuron = (int)(i / ffn.Down.OutFeatures);
            var n = site.Neurons.FirstOrDefault(x => x.Neuron == neuron);
            Assert.Equal(n is null ? downBefore[i] : downBefore[i] * MathF.Pow(2, n.Exponent), downAfter[i]);
        }

        using var original = SessionFactory.Open(models.Fp32, SessionSettings.CpuUnoptimized);
        using var rewritten = OnnxOutlierTools.Calibration.InMemoryModel.Open(model, SessionSettings.CpuUnoptimized);
        foreach (var w in models.Windows.Take(2))
            Assert.Equal(Logits(original, w), Logits(rewritten, w));
    }

    [Fact]
    public void Fp16Safe_ResidualStreamOutOfRange_WholeStreamDividedAndLogitsBitExact()
    {
        // A lower ceiling on the unboosted planted model: the stream (2400 on BOS) is divided by 2^3 as a whole, y6 neuron
        // 172 (600) by 2 at its up -> down pair, 173 (450) stays; the float32 logits are bit-identical, and probing the
        // rewritten model shows every point below the ceiling.
        var windows = CalibratedModel.Windows(seqLen: 32, maxTokens: 128);
        var (stats, _) = CalibratedModel.Calibrate(CalibratedModel.Planted, windows);
        var settings = new Fp16SafeSettings { Fp16Max = 500, Margin = 1 };
        using var temp = new TempFolder("fp16-stream");
        string rewritten = temp.Path("model.onnx");
        using var model = ModelReader.Load(CalibratedModel.Planted);
        var (pass, result) = Rewrite(model, stats, settings);
        Assert.Equal((1, 1), (result.Count(Fp16SafePlan.ResidualRule), result.Count(Fp16SafePlan.UpDownRule)));
        Assert.DoesNotContain(pass.Refused!, r => r.Rule != Fp16SafePlan.LinearInputRule);
        Assert.Equal(3, pass.Stream!.Exponent);
        var neuron = Assert.Single(Assert.Single(pass.Applied!).Neurons);
        Assert.Equal((172, 1), (neuron.Neuron, neuron.Exponent));

        using (var original = SessionFactory.Open(CalibratedModel.Planted, SessionSettings.CpuUnoptimized))
        using (var session = OnnxOutlierTools.Calibration.InMemoryModel.Open(model, SessionSettings.CpuUnoptimized))
            foreach (var w in windows.Take(2)) Assert.Equal(Logits(original, w), Logits(session, w));

        ModelWriter.Save(model, rewritten, new SaveOptions { Layout = TensorLayout.External });
        var (after, _) = CalibratedModel.Calibrate(rewritten, windows);
        foreach (var point in after.Manifest.Points.Where(p => p.Kind is ProbeKind.Embedding or ProbeKind.Residual or ProbeKind.ResidualSum or ProbeKind.DownInput))
        {
            var s = after.Points[point.Id];
            double max = Enumerable.Range(0, s.Channels).Max(s.ChannelAbsMax);
            Assert.True(max < settings.Limit, $"{point.Id}: {max}");
        }
    }

    [Fact]
    public void Fp16Safe_PostNormStream_IsRefusedWithTheExactnessCondition()
    {
        // BERT (post-norm encoder): the stream is a norm's output, no uniform scale passes through it.
        using var model = ModelReader.Load(Fixtures.Export("bert-toy-torch", "bert_toy_optimized.onnx"));
        var structure = CalibratedModel.Recognize(model);
        var s = new OnnxOutlierTools.Tests.Analysis.SyntheticStatistics();
        var x = s.Noise(32, 0.1);
        x[0, 0, 3] = 1e5;
        s.Add("block0.residual-sum.ffn", ProbeKind.ResidualSum, 0, x);
        var plan = Fp16SafePlan.Create(structure, s.Build(), new Fp16SafeSettings());
        Assert.Null(plan.Stream);
        var refusal = Assert.Single(plan.Refusals);
        Assert.Equal(Fp16SafePlan.ResidualRule, refusal.Rule);
        Assert.StartsWith(Fp16SafePlan.ResidualReason, refusal.Reason);
        Assert.True(refusal.Reason.Length > Fp16SafePlan.ResidualReason.Length + 10, refusal.Reason);
        output.WriteLine(refusal.Reason[Fp16SafePlan.ResidualReason.Length..]);
    }

    [Fact]
    public void Fp16Safe_NothingNearTheRange_IsBadInput()
    {
        var windows = CalibratedModel.Windows(seqLen: 32, maxTokens: 64);
        var (stats, _) = CalibratedModel.Calibrate(CalibratedModel.Planted, windows);
        using var model = ModelReader.Load(CalibratedModel.Planted);
        var e = Assert.Throws<PassException>(() => Rewrite(model, stats));
        Assert.IsType<MitigationInputException>(e.InnerException);
        Assert.Contains("nothing to rescale", e.Message);
    }
}
