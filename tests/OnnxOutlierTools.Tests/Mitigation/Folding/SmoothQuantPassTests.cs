using OnnxOutlierTools.Mitigation.Folding;
using OnnxOutlierTools.Mitigation.Smoothing;
using OnnxOutlierTools.Passes;
using OnnxOutlierTools.Tests.Runtime;

namespace OnnxOutlierTools.Tests.Mitigation.Folding;

/// <summary>SmoothQuant at every site kind on the fixture flavours, with statistics calibrated on the model itself: outputs
/// preserved on ORT; where the value cache would hold v / s (v-o with a KV cache), the site gets an explicit Mul.</summary>
public sealed class SmoothQuantPassTests
{
    [Theory]
    [InlineData("llama-torch-nopast", 1e-4)]
    [InlineData("llama-torch-past", 1e-4)]
    [InlineData("llama-genai-gqa-fp32", 1e-4)]
    [InlineData("llama-genai-mha-fp16", 2e-2)]
    [InlineData("gpt2-ort-fused-fp32", 1e-4)]
    [InlineData("gpt2-torch-nopast", 1e-4)]
    [InlineData("llama-mobius-opset24", 1e-4)]
    public void Smooth_AllSiteKinds_PreservesOutputs(string fixture, double rtol)
    {
        using var temp = new TempFolder("smooth");
        var recipe = FixtureRecipes.Get(fixture);
        var statistics = FoldKit.Calibrate(recipe.ModelPath, FoldKit.RandomWindows((int)Math.Min(recipe.Inputs.IdUpperBound, 20), 2, 6));
        var run = FoldKit.Run(recipe.ModelPath, recipe.Inputs, s => new SmoothQuantPass(s, statistics, 0.5, kinds: FoldSiteKinds.All), temp);
        run.AssertEquivalent(rtol);
        Assert.Contains(run.Pass.Outcomes, o => o.Outcome != FoldOutcome.Skipped);
        foreach (var o in run.Pass.Outcomes.Where(o => o.Outcome != FoldOutcome.Skipped))
            Assert.True(o.ScaleMin > 0 && o.ScaleMax >= o.ScaleMin && double.IsFinite(o.ScaleMax), o.ToString());
    }

    [Fact]
    public void Smooth_DecomposedGqaWithoutCache_VoAndUpDownExact_ScalesTiedPerKvHead()
    {
        using var temp = new TempFolder("smooth-vo");
        var recipe = FixtureRecipes.Get("llama-torch-nopast");
        var statistics = FoldKit.Calibrate(recipe.ModelPath, FoldKit.RandomWindows(512, 2, 16));
        var run = FoldKit.Run(recipe.ModelPath, recipe.Inputs, s => new SmoothQuantPass(s, statistics, 0.8, kinds: [FoldSiteKind.VO, FoldSiteKind.UpDown]), temp);
        run.AssertEquivalent(1e-4);
        Assert.Equal(5, run.Result.Count("v-o"));
        Assert.Equal(5, run.Result.Count("up-down"));
        Assert.All(run.Pass.Outcomes, o => Assert.Equal(FoldOutcome.Exact, o.Outcome));
        // 8 heads share 4 KV heads of size 8: o_proj's 64 inputs take 32 free scales, channel h*8+d that of KV head h/2.
        var site = run.Pass.Sites.First(s => s.Kind == FoldSiteKind.VO);
        Assert.Equal(64, site.Channels);
        Assert.Equal(32, site.GroupCount);
        Assert.Equal(site.Groups![0 * 8 + 3], site.Groups[1 * 8 + 3]);
        Assert.Equal(site.Groups[2 * 8 + 3], site.Groups[3 * 8 + 3]);
        Assert.NotEqual(site.Groups[1 * 8 + 3], site.Groups[2 * 8 + 3]);
        Assert.Equal(8 + 3, site.Groups[2 * 8 + 3]);
    }

    [Fact]
    public void Smooth_ScaleIsTheReferenceFormula_OverTheSiteLinearsJointly()
    {
        using var temp = new TempFolder("smooth-formula");
        var recipe = FixtureRecipes.Get("llama-torch-nopast");
        var statistics = FoldKit.Calibrate(recipe.ModelPath, FoldKit.RandomWindows(512, 2, 16));
        using var model = OnnxOutlierTools.IO.ModelReader.Load(recipe.ModelPath);
        var structure = FoldKit.Recognize(model);
        var ffn = structure.Blocks[1].Ffn!;
        // Independent reference: max over gate and up rows (float64) and the probe's channel maxima.
        var gate = ffn.Gate!.Weight.ConstValue!.ToSingleArray();
        var up = ffn.Up.Weight.ConstValue!.ToSingleArray();
        int inF = (int)ffn.Up.InFeatures, outF = (int)ffn.Up.OutFeatures;
        var point = statistics["block1.ffn-input"]!;
        var expected = new double[inF];
        for (int j = 0; j < inF; j++)
        {
            double w = 0;
            for (int k = 0; k < outF; k++) w = Math.Max(w, Math.Max(Math.Abs(gate[j * outF + k]), Math.Abs(up[j * outF + k])));
            expected[j] = Math.Pow(Math.Max(point.ChannelAbsMax(j), 1e-5), 0.85) / Math.Pow(Math.Max(w, 1e-5), 0.15);
        }
        var alphas = new Dictionary<string, double> { ["block1.gate-up"] = 0.85 };
        var pass = new SmoothQuantPass(structure, statistics, 0.5, alphas);
        Assert.Equal(0.85, pass.AlphaOf("block1.gate-up"));
        Assert.Equal(0.5, pass.AlphaOf("block0.gate-up"));
        var upBefore = up.ToArray();
        model.Apply(pass);
        var o = pass.Outcomes.Single(x => x.SiteId == "block1.gate-up");
        Assert.Equal(expected.Min(), o.ScaleMin, 1e-9);
        Assert.Equal(expected.Max(), o.ScaleMax, 1e-9);
        // The up weight's rows took exactly s (one fp32 rounding).
        var upAfter = model.Graph.Nodes.First(n => n == ffn.Up.Node).Inputs[1]!.ConstValue!.ToSingleArray();
        for (int j = 0; j < inF; j += 7)
            Assert.Equal((float)(upBefore[j * outF] * (double)(float)expected[j]), upAfter[j * outF], 1e-6f);
        Assert.Equal(SmoothQuantScale.MinMagnitude, 1e-5);
    }

    [Fact]
    public void Constructor_BadAlpha_Refused()
    {
        using var model = OnnxOutlierTools.IO.ModelReader.Load(FixtureRecipes.Get("llama-torch-nopast").ModelPath);
        var structure = FoldKit.Recognize(model);
        var statistics = new OnnxOutlierTools.Probes.CalibrationStatistics(new OnnxOutlierTools.Probes.ProbeManifest
        {
            Model = "x", Settings = new(), Points = [], OriginalOutputs = [],
        });
        Assert.Throws<ArgumentOutOfRangeException>(() => new SmoothQuantPass(structure, statistics, 1.5));
        Assert.Throws<ArgumentOutOfRangeException>(() => new SmoothQuantPass(structure, statistics, 0.5, new Dictionary<string, double> { ["block0.qkv"] = -0.1 }));
        // No statistics: every site is skipped with the reason, nothing changes.
        var pass = new SmoothQuantPass(structure, statistics);
        var result = model.Apply(pass);
        Assert.False(result.Changed);
        Assert.All(pass.Outcomes, o => Assert.StartsWith("no calibration statistics at block", o.Reason));
        Assert.Equal(pass.Outcomes.Count, result.Skipped.Count);
    }
}
