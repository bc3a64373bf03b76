using OnnxOutlierTools.IO;
using OnnxOutlierTools.Mitigation.Folding;
using OnnxOutlierTools.Passes;
using OnnxOutlierTools.Runtime;
using OnnxOutlierTools.Tests.Runtime;

namespace OnnxOutlierTools.Tests.Mitigation.Folding;

/// <summary>The exactness condition and the refusals: post-norm encoders (the norm output also feeds the residual add) get
/// an explicit Mul or are skipped, as the policy says; a gain shared by several norms is copied before editing; quantized
/// weights are refused before anything is edited.</summary>
public sealed class FoldConditionTests
{
    [Theory]
    [InlineData("bert-toy-torch")]
    [InlineData("distilbert-optimum")]
    public void PostNorm_MulPolicy_InsertsMulsAndPreservesOutputs(string fixture)
    {
        using var temp = new TempFolder("fold-postnorm");
        var recipe = FixtureRecipes.Get(fixture);
        var run = FoldKit.Run(recipe.ModelPath, recipe.Inputs, s => new NormGainFoldPass(s, policy: InexactPolicy.Mul), temp);
        run.AssertEquivalent(1e-4);
        Assert.NotEmpty(run.Pass.Outcomes);
        Assert.All(run.Pass.Outcomes, o =>
        {
            Assert.Equal(FoldOutcome.MulInserted, o.Outcome);
            Assert.Contains("also feeds Add", o.Reason);
        });
        using var model = ModelReader.Load(run.Output);
        Assert.Equal(run.Pass.Outcomes.Count, model.Graph.Nodes.Count(n => n.Is("Mul") && NodeOriginOf(n) == NormGainFoldPass.PassName));
    }

    [Theory]
    [InlineData("bert-toy-torch")]
    [InlineData("distilbert-optimum")]
    public void PostNorm_SkipPolicy_LeavesTheModelAloneWithReasons(string fixture)
    {
        using var temp = new TempFolder("fold-postnorm-skip");
        var recipe = FixtureRecipes.Get(fixture);
        var run = FoldKit.Run(recipe.ModelPath, recipe.Inputs, s => new NormGainFoldPass(s, policy: InexactPolicy.Skip), temp);
        Assert.False(run.Result.Changed);
        Assert.Equal(run.Pass.Outcomes.Count, run.Result.Skipped.Count);
        Assert.All(run.Pass.Outcomes, o => Assert.Equal(FoldOutcome.Skipped, o.Outcome));
        Assert.All(run.Result.Skipped, s => Assert.Contains("post-norm residual path", s.Reason));
        Assert.True(TensorComparison.Compare(run.Expected, run.Actual).AllBitwiseEqual);
    }

    [Fact]
    public void PostNorm_TwoPassesWithMuls_Compose()
    {
        // The second pass finds the first one's Mul in front of the linears and puts its own after it.
        using var temp = new TempFolder("fold-postnorm-compose");
        var recipe = FixtureRecipes.Get("bert-toy-torch");
        var statistics = FoldKit.Calibrate(recipe.ModelPath, FoldKit.RandomWindows(99, 2, 8));
        var run = FoldKit.Run(recipe.ModelPath, recipe.Inputs,
            s => [new NormGainFoldPass(s), new SmoothQuantPass(s, statistics, 0.5, kinds: FoldSiteKinds.All)], temp);
        run.AssertEquivalent(1e-4);
        Assert.All(run.Passes[1].Outcomes.Where(o => o.Kind != FoldSiteKind.VO), o => Assert.Equal(FoldOutcome.MulInserted, o.Outcome));
        Assert.All(run.Passes[1].Outcomes.Where(o => o.Kind == FoldSiteKind.VO), o => Assert.Equal(FoldOutcome.Exact, o.Outcome));
        using var model = ModelReader.Load(run.Output);
        Assert.Contains(model.Graph.Nodes, n => n.Is("Mul") && n.Input(0)?.Producer is { } p && NodeOriginOf(p) == NormGainFoldPass.PassName
            && NodeOriginOf(n) == SmoothQuantPass.PassName);
    }

    [Fact]
    public void MiniLm_BothPolicies_MulExactSkipUntouched()
    {
        var vocab = File.ReadAllLines(MiniLm.VocabPath);
        long[] ids = "[CLS] the cat sat on the mat and looked at the dog . [SEP]".Split(' ').Select(w => (long)Array.IndexOf(vocab, w)).ToArray();
        var inputs = new InputSynthesisOptions
        {
            Dims = new Dictionary<string, long> { ["batch"] = 1, ["sequence"] = ids.Length },
            Generators = new Dictionary<string, InputGenerator>
            {
                ["input_ids"] = (input, dims) => TensorData.Create(input.Name, ids, dims),
                ["token_type_ids"] = InputSynthesizer.Fill(0),
            },
        };
        using var temp = new TempFolder("fold-minilm");
        var mul = FoldKit.Run(MiniLm.ModelPath, inputs, s => new NormGainFoldPass(s, policy: InexactPolicy.Mul), temp);
        mul.AssertEquivalent(1e-4);
        Assert.Equal(12, mul.Pass.Outcomes.Count(o => o.Outcome == FoldOutcome.MulInserted)); // 6 layers x (qkv, fc1)
        using var temp2 = new TempFolder("fold-minilm-skip");
        var skip = FoldKit.Run(MiniLm.ModelPath, inputs, s => new NormGainFoldPass(s, policy: InexactPolicy.Skip), temp2);
        Assert.False(skip.Result.Changed);
        Assert.All(skip.Pass.Outcomes, o => Assert.Equal(FoldOutcome.Skipped, o.Outcome));
    }

    [Fact]
    public void SharedGain_IsCopiedPerNorm_OriginalDataUntouched()
    {
        // The ORT-optimized GPT-2 reads one LayerNorm gain initializer from several norms (exporter deduplication).
        using var temp = new TempFolder("fold-shared");
        var recipe = FixtureRecipes.Get("gpt2-ort-fused-fp32");
        using var model = ModelReader.Load(recipe.ModelPath);
        var structure = FoldKit.Recognize(model);
        var shared = structure.SharedInitializers.Select(s => s.Initializer).Where(v => v.Name.Contains("ln_1.weight")).ToArray();
        Assert.NotEmpty(shared);
        var before = shared.Select(v => v.ConstValue!.ToSingleArray()).ToArray();
        var pass = new NormGainFoldPass(structure);
        model.Apply(pass);
        for (int i = 0; i < shared.Length; i++) Assert.Equal(before[i], shared[i].ConstValue!.ToSingleArray());
        // Each folded norm now reads a gain of its own, all ones (s = gamma).
        var gains = pass.Sites.Select(s => s.GainSlot!.Current).ToArray();
        Assert.Equal(gains.Length, gains.Distinct().Count());
        Assert.All(gains, g => Assert.All(g.ConstValue!.ToSingleArray(), x => Assert.Equal(1f, x)));
        Assert.DoesNotContain(gains, g => shared.Contains(g));
    }

    [Fact]
    public void QuantizedWeights_Refused_BeforeAnyEdit()
    {
        using var model = ModelReader.Load(Fixtures.Path("exports-modern", "glm52-mla-moe-int4-mobius", "model.onnx"));
        var structure = FoldKit.Recognize(model);
        var e = Assert.Throws<FoldRefusedException>(() => new NormGainFoldPass(structure));
        Assert.Matches(@"^\S+: already quantized \(MatMulNBits\); fold before quantizing$", e.Message);
        Assert.Throws<FoldRefusedException>(() => new SmoothQuantPass(structure, new OnnxOutlierTools.Probes.CalibrationStatistics(
            new OnnxOutlierTools.Probes.ProbeManifest { Model = "m", Settings = new(), Points = [], OriginalOutputs = [] }), kinds: FoldSiteKinds.All));
    }

    [Fact]
    public void SiteKinds_ParseAndName()
    {
        Assert.Equal([FoldSiteKind.Qkv, FoldSiteKind.UpDown, FoldSiteKind.VO], FoldSiteKinds.Parse("qkv, up-down,v-o,qkv"));
        Assert.Equal("gate-up", FoldSiteKind.GateUp.Name());
        var e = Assert.Throws<ArgumentException>(() => FoldSiteKinds.Parse("qkv,down"));
        Assert.Contains("unknown fold site 'down'", e.Message);
    }

    private static string? NodeOriginOf(OnnxOutlierTools.Ir.Node node) => OnnxOutlierTools.Ir.NodeOrigin.Of(node)?.Pass;
}
