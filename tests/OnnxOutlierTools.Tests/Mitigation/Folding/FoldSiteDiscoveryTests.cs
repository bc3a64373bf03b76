using OnnxOutlierTools.Import;
using OnnxOutlierTools.IO;
using OnnxOutlierTools.Mitigation.Folding;
using OnnxOutlierTools.Runtime;
using OnnxOutlierTools.Tests.Import;

namespace OnnxOutlierTools.Tests.Mitigation.Folding;

/// <summary>Site discovery on graphs with packed projections and Gemma's 1 + gamma gains.</summary>
public sealed class FoldSiteDiscoveryTests
{
    [Fact]
    public void Phi4_PackedQkvWithGroupedKv_VTailTiedPerKvHead_PackedGateUpNotSplit()
    {
        // Graph only (its weights are absent): Phi-4-mini, hidden 3072, 24 q / 8 KV heads of 128, packed qkv_proj and gate_up_proj.
        using var model = ModelReader.Load(Fixtures.Path("exports-modern", "phi4-mini-2layer-torchexport", "microsoft_Phi-4-mini-reasoning-custom-default-f32-cpu.onnx"),
            new LoadOptions { RequireExternalData = false });
        var sites = FoldSites.Discover(FoldKit.Recognize(model));
        var qkv = sites.Single(s => s.Id == "block0.qkv");
        Assert.Single(qkv.Consumers);
        Assert.Equal(3072, qkv.Channels);
        var vo = sites.Single(s => s.Id == "block0.v-o");
        Assert.Equal(3072, vo.Channels);
        Assert.Equal(8 * 128, vo.GroupCount);
        Assert.Equal((24 + 8) * 128, vo.Producer!.ColumnOffset);
        // q head 5 reads KV head 5 / 3 = 1.
        Assert.Equal(1 * 128 + 17, vo.Groups![5 * 128 + 17]);
        var gateUp = sites.Single(s => s.Id == "block0.gate-up");
        Assert.Single(gateUp.Consumers);
        Assert.Contains("packed", sites.Single(s => s.Id == "block0.up-down").Unsupported);
    }

    [Theory]
    [InlineData("gpt2-torch-nopast", 8, 4)]      // Gemm c_attn, Reshape, Split [4, 4, 4]: v is the tail
    [InlineData("gpt2-ort-fused-fp32", 64, 32)]  // com.microsoft Attention's packed weight input
    [InlineData("llama-genai-gqa-fp32", 32, 16)] // GroupQueryAttention reading the packed projection
    public void PackedQkv_ValueColumnsLocated(string fixture, long offset, int groups)
    {
        using var model = ModelReader.Load(OnnxOutlierTools.Tests.Runtime.FixtureRecipes.Get(fixture).ModelPath);
        var vo = FoldSites.Discover(FoldKit.Recognize(model)).First(s => s.Kind == FoldSiteKind.VO);
        Assert.Null(vo.Unsupported);
        Assert.Equal(offset, vo.Producer!.ColumnOffset);
        Assert.Equal(groups, vo.GroupCount);
    }

    [Theory]
    [InlineData(InexactPolicy.Mul)]
    [InlineData(InexactPolicy.Skip)]
    public void OnePlusGamma_GainCannotTakeTheScale_MulOrSkip(InexactPolicy policy)
    {
        using var temp = new TempFolder("fold-oneplus");
        string path = temp.Path("original", "model.onnx");
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        using (var built = LlamaOnnxBuilder.Build(Stories260K.Weights, new LlamaOnnxOptions { Variants = new DecoderVariants { GainStyle = NormGainStyle.OnePlus } }))
            ModelWriter.Save(built, path, new SaveOptions { Durable = false });
        long[] ids = Stories260K.OnceUponATime.Select(t => (long)t).ToArray();
        var inputs = new InputSynthesisOptions
        {
            Dims = new Dictionary<string, long> { ["batch_size"] = 1, ["sequence_length"] = ids.Length },
            Generators = new Dictionary<string, InputGenerator> { ["input_ids"] = (input, dims) => TensorData.Create(input.Name, ids, dims) },
        };
        var run = FoldKit.Run(path, inputs, s => new NormGainFoldPass(s, policy: policy), temp);
        run.AssertEquivalent(1e-4);
        Assert.Equal(10, run.Pass.Outcomes.Count);
        Assert.All(run.Pass.Outcomes, o =>
        {
            Assert.Equal(policy == InexactPolicy.Mul ? FoldOutcome.MulInserted : FoldOutcome.Skipped, o.Outcome);
            Assert.Contains("1 + gamma", o.Reason);
        });
        if (policy == InexactPolicy.Mul)
            Assert.All(run.Pass.Outcomes, o => Assert.True(o.ScaleMin != o.ScaleMax)); // s = 1 + gamma, not 1
    }
}
