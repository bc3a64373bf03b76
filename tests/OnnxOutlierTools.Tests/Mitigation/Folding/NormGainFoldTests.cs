using OnnxOutlierTools.Mitigation.Folding;
using OnnxOutlierTools.Tests.Runtime;

namespace OnnxOutlierTools.Tests.Mitigation.Folding;

/// <summary>Norm-gain folding on every exported fixture flavour it applies to: the rewritten model's outputs match the
/// original's on ORT, and every norm site of a pre-norm decoder folds exactly.</summary>
public sealed class NormGainFoldTests
{
    [Theory]
    [InlineData("llama-torch-nopast", 1e-4)]           // decomposed RMSNorm (Optimum-like), separate q/k/v, gate/up
    [InlineData("llama-torch-past", 1e-4)]             // the same with a KV cache
    [InlineData("llama-genai-gqa-fp32", 1e-4)]         // SkipSimplifiedLayerNormalization, packed QKV, GQA, external data
    [InlineData("llama-genai-mha-fp16", 2e-2)]         // fp16 weights, MultiHeadAttention, external data
    [InlineData("gpt2-ort-fused-fp32", 1e-4)]          // SkipLayerNormalization with bias, com.microsoft Attention (packed weights as op inputs)
    [InlineData("gpt2-ort-fused-fp16", 2e-2)]
    [InlineData("gpt2-torch-nopast", 1e-4)]            // decomposed LayerNorm with bias, Gemm
    [InlineData("llama-mobius-opset24", 1e-4)]         // RMSNormalization, ai.onnx Attention
    public void FoldNormGains_PreNormFixture_PreservesOutputsAndFoldsEveryNormSiteExactly(string fixture, double rtol)
    {
        using var temp = new TempFolder("fold-gains");
        var recipe = FixtureRecipes.Get(fixture);
        var run = FoldKit.Run(recipe.ModelPath, recipe.Inputs, s => new NormGainFoldPass(s), temp);
        run.AssertEquivalent(rtol);
        Assert.NotEmpty(run.Pass.Outcomes);
        Assert.All(run.Pass.Outcomes, o => Assert.True(o.Outcome == FoldOutcome.Exact, $"{o.SiteId}: {o.Outcome} {o.Reason}"));
        Assert.True(run.Result.Count("qkv") > 0 && run.Result.Count("gate-up") + run.Result.Count("fc1") > 0, run.Result.ToString());
    }
}
