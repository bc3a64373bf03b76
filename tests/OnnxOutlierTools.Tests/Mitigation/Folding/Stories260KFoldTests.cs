using OnnxOutlierTools.Import;
using OnnxOutlierTools.IO;
using OnnxOutlierTools.Mitigation.Folding;
using OnnxOutlierTools.Runtime;
using OnnxOutlierTools.Tensors;
using OnnxOutlierTools.Tests.Import;
using OnnxOutlierTools.Tests.Runtime;

namespace OnnxOutlierTools.Tests.Mitigation.Folding;

/// <summary>The trained stories260K in every importer flavour (fp32 and fp16, external data): norm-gain folding followed by
/// SmoothQuant at every site (calibrated on its own greedy text) keeps the logits and the greedy next tokens.</summary>
public sealed class Stories260KFoldTests
{
    [Theory]
    [InlineData(LlamaOnnxFlavour.Decomposed, TensorDataType.Float, 1e-4)]
    [InlineData(LlamaOnnxFlavour.DecomposedWithPast, TensorDataType.Float, 1e-4)]
    [InlineData(LlamaOnnxFlavour.GenAiGqa, TensorDataType.Float, 1e-4)]
    [InlineData(LlamaOnnxFlavour.Decomposed, TensorDataType.Float16, 2e-2)]
    public void FoldGainsThenSmooth_EveryExactRewriteIsExact(LlamaOnnxFlavour flavour, TensorDataType weights, double rtol)
    {
        using var temp = new TempFolder("fold-stories");
        string path = temp.Path("original", "model.onnx");
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        using (var built = LlamaOnnxBuilder.Build(Stories260K.Weights, new LlamaOnnxOptions { Flavour = flavour, WeightType = weights }))
            ModelWriter.Save(built, path, new SaveOptions { Layout = TensorLayout.External, Durable = false });
        int[] text = [.. Stories260K.OnceUponATime, .. Stories260K.GreedyContinuation];
        var statistics = FoldKit.Calibrate(path, [text[..24], text[20..]]);
        long[] ids = text.Take(12).Select(t => (long)t).ToArray();
        var inputs = new InputSynthesisOptions
        {
            IdUpperBound = 512,
            Dims = new Dictionary<string, long> { ["batch_size"] = 1, ["sequence_length"] = ids.Length, ["past_sequence_length"] = 0, ["total_sequence_length"] = ids.Length },
            Generators = new Dictionary<string, InputGenerator> { ["input_ids"] = (input, dims) => TensorData.Create(input.Name, ids, dims) },
        };
        var run = FoldKit.Run(path, inputs, s => [new NormGainFoldPass(s), new SmoothQuantPass(s, statistics, 0.85, kinds: FoldSiteKinds.All)], temp);
        run.AssertEquivalent(rtol);
        var gains = run.Passes[0].Outcomes;
        Assert.Equal(10, gains.Count);
        Assert.All(gains, o => Assert.Equal(FoldOutcome.Exact, o.Outcome));
        var smooth = run.Pass.Outcomes;
        Assert.Equal(20, smooth.Count);
        Assert.All(smooth, o => Assert.Equal(flavour == LlamaOnnxFlavour.Decomposed || o.Kind != FoldSiteKind.VO ? FoldOutcome.Exact : FoldOutcome.MulInserted, o.Outcome));
        // The greedy next token at every position is unchanged.
        int vocab = 512;
        var e = run.Expected[0].ToDoubleArray();
        var a = run.Actual[0].ToDoubleArray();
        for (int p = 0; p < ids.Length; p++)
            Assert.Equal(ArgMax(e.AsSpan(p * vocab, vocab)), ArgMax(a.AsSpan(p * vocab, vocab)));
    }

    [Fact]
    public void ExternalData_StaysMapped_TheFoldIsAViewOfTheMappedTensor()
    {
        using var temp = new TempFolder("fold-external");
        var recipe = FixtureRecipes.Get("llama-genai-gqa-fp32");
        var run = FoldKit.Run(recipe.ModelPath, recipe.Inputs, s => [new NormGainFoldPass(s)], temp, model =>
        {
            var qkv = model.Graph.Initializers.First(v => v.Name == "model.layers.0.attn.qkv_proj.MatMul.weight");
            var scaled = Assert.IsType<ScaledTensor>(qkv.ConstValue);
            Assert.Equal(TensorStorage.External, scaled.Source.Storage);
        });
        run.AssertEquivalent(1e-4);
    }

    private static int ArgMax(ReadOnlySpan<double> values)
    {
        int best = 0;
        for (int i = 1; i < values.Length; i++) if (values[i] > values[best]) best = i;
        return best;
    }
}
