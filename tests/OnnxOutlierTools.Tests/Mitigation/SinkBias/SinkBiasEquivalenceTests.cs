using OnnxOutlierTools.IO;
using OnnxOutlierTools.Import;
using OnnxOutlierTools.Mitigation.SinkBias;
using OnnxOutlierTools.Passes;
using OnnxOutlierTools.Runtime;
using OnnxOutlierTools.Tests.Import;
using Xunit.Abstractions;

namespace OnnxOutlierTools.Tests.Mitigation.SinkBias;

/// <summary>The sink bias on stories260K in each importer flavour: the rewritten model fed the text alone reproduces the
/// original on BOS (or a multi-token prefix) + text, for the whole prompt and token by token with the KV cache. fp32
/// models; the rewrite adds the same keys and values the original computes, so the tolerance is fp32 round-off.</summary>
public sealed class SinkBiasEquivalenceTests(Stories260KModels models, ITestOutputHelper output) : IClassFixture<Stories260KModels>
{
    private const double Fp32Tolerance = 1e-4;
    private const int Bos = 1;

    private static int[] Text => Stories260K.Tokenizer.Encode(Stories260K.Sentence).SkipWhile(t => t == Bos).ToArray();

    [Theory]
    [InlineData(LlamaOnnxFlavour.Decomposed, SinkForm.Inline)]
    [InlineData(LlamaOnnxFlavour.DecomposedWithPast, SinkForm.Cache)]
    [InlineData(LlamaOnnxFlavour.GenAiGqa, SinkForm.Cache)]
    public void BosSink_TextAlone_MatchesOriginalOnBosPlusText(LlamaOnnxFlavour flavour, SinkForm form)
    {
        using var temp = new TempFolder("sink-" + flavour);
        var (path, sink, result) = SinkBiasHarness.Rewrite(models.PathOf(flavour), temp.Path("out"), SinkPrefix.Bos(Bos));
        Assert.Equal(form, sink.Plan.Form);
        Assert.Equal(5, sink.Layers.Count);
        Assert.Equal(5, result.Count(form == SinkForm.Cache ? SinkBiasPass.PastRule : SinkBiasPass.InlineRule));
        if (form == SinkForm.Cache) Assert.Equal(10, result.Count(SinkBiasPass.PresentRule));
        Assert.True(result.Count(SinkBiasPass.MaskRule) >= 1);
        double diff = SinkBiasHarness.Compare(models.PathOf(flavour), path, [Bos], Text, split: 7, output);
        Assert.True(diff <= Fp32Tolerance, $"{flavour}: max |diff| {diff} > {Fp32Tolerance}");

        using var saved = ModelReader.Load(path);
        Assert.Equal([Bos], SinkContract.PrefixOf(saved));
        var contract = saved.Metadata.Single(m => m.Key == SinkContract.ContractKey).Value;
        Assert.Contains("WITHOUT the prefix tokens [1]", contract);
        Assert.Equal(10, saved.Graph.Initializers.Count(i => i.Name.StartsWith("sink_bias.layers.", StringComparison.Ordinal)));
    }

    [Theory]
    [InlineData(LlamaOnnxFlavour.Decomposed)]
    [InlineData(LlamaOnnxFlavour.DecomposedWithPast)]
    [InlineData(LlamaOnnxFlavour.GenAiGqa)]
    public void MultiTokenPrefix_TextAlone_MatchesOriginalOnPrefixPlusText(LlamaOnnxFlavour flavour)
    {
        // "Once upon a" as a baked prefix (PrefixQuant-style), then the rest of the sentence.
        int[] prefix = Stories260K.OnceUponATime[..3];
        int[] text = [.. Stories260K.OnceUponATime[3..], .. Stories260K.GreedyContinuation[..12]];
        using var temp = new TempFolder("sink-prefix-" + flavour);
        var (path, sink, _) = SinkBiasHarness.Rewrite(models.PathOf(flavour), temp.Path("out"), SinkPrefix.Explicit(prefix));
        Assert.Equal(3, sink.Length);
        Assert.All(sink.Layers, l => Assert.Equal(3, l.Value.Dims[2]));
        double diff = SinkBiasHarness.Compare(models.PathOf(flavour), path, prefix, text, split: 4, output);
        Assert.True(diff <= Fp32Tolerance, $"{flavour}: max |diff| {diff} > {Fp32Tolerance}");
        using var saved = ModelReader.Load(path);
        Assert.Equal(prefix, SinkContract.PrefixOf(saved));
        Assert.Contains("positions 3 onward", saved.Metadata.Single(m => m.Key == SinkContract.ContractKey).Value);
    }

    [Theory]
    [InlineData(LlamaOnnxFlavour.DecomposedWithPast)]
    [InlineData(LlamaOnnxFlavour.GenAiGqa)]
    public void Float16Model_SinkStoredInFloat16_TextAlone_MatchesOriginal(LlamaOnnxFlavour flavour)
    {
        using var temp = new TempFolder("sink-fp16-" + flavour);
        string original = temp.Path("in", "model.onnx");
        Directory.CreateDirectory(Path.GetDirectoryName(original)!);
        using (var model = LlamaOnnxBuilder.Build(Stories260K.Weights, new LlamaOnnxOptions { Flavour = flavour, WeightType = Tensors.TensorDataType.Float16 }))
            ModelWriter.Save(model, original, new SaveOptions { Layout = TensorLayout.External, Durable = false });
        var (path, sink, _) = SinkBiasHarness.Rewrite(original, temp.Path("out"), SinkPrefix.Bos(Bos));
        Assert.All(sink.Layers, l => Assert.Equal(Tensors.TensorDataType.Float16, l.Key.DataType));
        // fp16 round-off at most: the decomposed graph computes the same operations on the same values (measured 0);
        // ORT's fp16 GroupQueryAttention kernel reads the prefix as cached keys rather than as new tokens of the run, a
        // different path (measured 0.023 = 1.5 ulp at |logit| 16..32, logits span -20..22). 0.05 = 3 ulp there.
        double diff = SinkBiasHarness.Compare(original, path, [Bos], Text, split: 7, output);
        Assert.True(diff <= 0.05, $"{flavour} fp16: max |diff| {diff}");
    }

    [Fact]
    public void Pass_RefusesAModelThatAlreadyHasASink()
    {
        using var temp = new TempFolder("sink-twice");
        var (path, _, _) = SinkBiasHarness.Rewrite(models.PathOf(LlamaOnnxFlavour.DecomposedWithPast), temp.Path("out"), SinkPrefix.Bos(Bos));
        using var model = ModelReader.Load(path);
        var structure = SinkBiasHarness.Recognize(model, path);
        var sink = SinkCapture.Capture(model, structure, SinkPrefix.Bos(Bos));
        var e = Assert.Throws<PassException>(() => model.Apply(new SinkBiasPass(structure, sink)));
        Assert.IsType<SinkBiasException>(e.InnerException);
        Assert.Contains("already has a baked sink prefix", e.Message);
    }

    [Theory]
    [InlineData(LlamaOnnxFlavour.Decomposed)]
    [InlineData(LlamaOnnxFlavour.DecomposedWithPast)]
    // Not GenAiGqa: ORT's GroupQueryAttention refuses a multi-token run after a non-empty past when batch > 1 ("batch_size
    // must be 1 when sequence_length > 1 and past context is given"), and with the sink every prompt has a past.
    public void BatchOfTwo_PrefixExpandedToTheBatch_MatchesOriginal(LlamaOnnxFlavour flavour)
    {
        using var temp = new TempFolder("sink-batch-" + flavour);
        var (path, _, _) = SinkBiasHarness.Rewrite(models.PathOf(flavour), temp.Path("out"), SinkPrefix.Bos(Bos));
        int[] a = Text[..10], b = Text[10..20];
        var original = Logits(models.PathOf(flavour), [Bos, .. a, Bos, .. b], batch: 2, sequence: 11);
        var rewritten = Logits(path, [.. a, .. b], batch: 2, sequence: 10);
        int vocab = rewritten.Length / 20;
        double diff = 0;
        for (int row = 0; row < 2; row++)
            for (int t = 0; t < 10; t++)
                for (int j = 0; j < vocab; j++)
                    diff = Math.Max(diff, Math.Abs(original[(row * 11 + t + 1) * vocab + j] - rewritten[(row * 10 + t) * vocab + j]));
        output.WriteLine($"{flavour}, batch 2 x 10 tokens: max |diff| = {diff:E3}");
        Assert.True(diff <= Fp32Tolerance, $"{flavour}: max |diff| {diff}");
    }

    private static float[] Logits(string path, int[] ids, int batch, int sequence)
    {
        using var session = SessionFactory.Open(path, SessionSettings.CpuUnoptimized);
        var plan = OnnxOutlierTools.Calibration.FeedPlan.Create(path, session.Inputs, session.OutputNames);
        return session.Run(plan.Build(batch, sequence, ids, 0, null), ["logits"])[0].ToSingleArray();
    }
}
