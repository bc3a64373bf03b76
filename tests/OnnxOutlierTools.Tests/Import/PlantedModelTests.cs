using System.Text.Json;
using OnnxOutlierTools.Import;
using OnnxOutlierTools.Import.Planted;
using OnnxOutlierTools.Inspection;
using Xunit.Abstractions;

namespace OnnxOutlierTools.Tests.Import;

/// <summary>Ground truth for onnx-models/planted-llama-*: generated once per test class (float64), shared.</summary>
public sealed class PlantedModels
{
    public PlantedModels()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "OnnxOutlierTools.sln"))) { Root = Path.Combine(dir.FullName, "onnx-models"); break; }
        if (Root is null) throw new InvalidOperationException("repository root (OnnxOutlierTools.sln) not found");
        Original = Stories260K.Weights;
        Planted = new OutlierPlanter(Original, PlantedOutlierPlan.Default).Plant();
        Windows = PlantedCorpus.Windows(File.ReadAllText(Fixtures.Path("text", "tinystories-sample.txt")), Stories260K.Tokenizer);
    }

    public string Root { get; } = null!;
    public DecoderWeights Original { get; }
    public DecoderWeights Planted { get; }
    public IReadOnlyList<int[]> Windows { get; }

    public string Folder(LlamaOnnxFlavour flavour) => Path.Combine(Root, PlantedModelFolder.FolderName(flavour));

    public PlantedGroundTruth Truth(LlamaOnnxFlavour flavour) =>
        JsonSerializer.Deserialize<PlantedGroundTruth>(File.ReadAllText(Path.Combine(Folder(flavour), "ground-truth.json")), JsonOutput.Options)!;
}

public class PlantedModelTests(PlantedModels models, ITestOutputHelper output) : IClassFixture<PlantedModels>
{
    private static readonly LlamaOnnxFlavour[] Flavours = [LlamaOnnxFlavour.Decomposed, LlamaOnnxFlavour.GenAiGqa];

    [Fact]
    public void Widening_Alone_LeavesTheLogitsUnchanged()
    {
        var widened = ResidualWidening.Widen(models.Original, newHeads: 10, newKvHeads: 5, extraHidden: 2);
        var tokens = Stories260K.Tokenizer.Encode(Stories260K.Sentence);
        double diff = MaxAbs(Llama2cReference.Forward(models.Original, tokens), Llama2cReference.Forward(widened, tokens));
        output.WriteLine($"widened vs original: max |logit diff| {diff:E2}");
        Assert.True(diff < 1e-5, $"max |diff| {diff}");
    }

    [Fact]
    public void Trace_AgreesWithTheRunCReference_OnThePlantedModel()
    {
        var tokens = models.Windows[0][..64];
        double diff = MaxAbs(Llama2cReference.Forward(models.Planted, tokens), new DecoderTrace(models.Planted).Run(tokens).Logits);
        Assert.True(diff < 1e-9, $"max |diff| {diff}");
    }

    [Fact]
    public void BosCompensation_KeepsBosLogits_AndTheModelNeedsTheMassiveActivation()
    {
        // BOS at position 0 predicts exactly what stories260K predicts (its logits are restored through massive channel 66).
        var window = models.Windows[0][..48];
        var original = Llama2cReference.Forward(models.Original, window);
        var planted = Llama2cReference.Forward(models.Planted, window);
        double bos = MaxAbs(original[..1], planted[..1]);
        // Every other position differs only by the bias channel in the RMSNorm denominators (a few 1e-3) and what the
        // sink head adds with the mass it leaves off BOS (1 - 0.99 on average, down to 1 - 0.78) times its 60x values:
        // about 0.1 on logits of magnitude ~10 (the perplexity moves by 3e-5 relative).
        double rest = MaxAbs(original[1..], planted[1..]);
        // Without the super weights there is no massive activation, the sink head loses its key on BOS, spreads
        // its attention and writes 60x an original head's values into every token.
        var plan = PlantedOutlierPlan.Default;
        var ablated = Llama2cReference.Forward(PlantedMeasurement.WithoutSuperWeights(models.Planted, plan, [172, 173]), window);
        double broken = MaxAbs(original[1..], ablated[1..]);
        output.WriteLine($"BOS logits: max |diff| {bos:E2}; other positions {rest:E2}; super weights zeroed {broken:F2}");
        Assert.True(bos < 1e-5, $"BOS logits differ by {bos}");
        Assert.True(rest < 0.3, $"logits differ by {rest}");
        Assert.True(broken > 1, $"zeroing the super weights changes the logits by only {broken}");
        var truth = models.Truth(LlamaOnnxFlavour.Decomposed).Perplexity;
        Assert.True(truth.SuperWeightsZeroed > 2 * truth.After, $"recorded ablation {truth.SuperWeightsZeroed}");
    }

    private static double MaxAbs(double[][] a, double[][] b)
    {
        Assert.Equal(a.Length, b.Length);
        double max = 0;
        for (int i = 0; i < a.Length; i++)
            for (int j = 0; j < a[i].Length; j++) max = Math.Max(max, Math.Abs(a[i][j] - b[i][j]));
        return max;
    }

    [Fact]
    public void Generator_ReproducesTheCommittedBytes()
    {
        using var temp = new TempFolder("planted");
        var (planted, truth) = PlantedModelFolder.Create(Stories260K.CheckpointPath, Stories260K.TokenizerPath, Fixtures.Path("text", "tinystories-sample.txt"));
        long total = 0;
        foreach (var flavour in Flavours)
        {
            string dir = temp.Folder(flavour.ToString());
            PlantedModelFolder.Write(dir, flavour, planted, truth, Stories260K.TokenizerPath, overwrite: false);
            foreach (string name in PlantedModelFolder.FileNames)
            {
                string committed = Path.Combine(models.Folder(flavour), name);
                Assert.True(File.Exists(committed), $"{committed} missing");
                total += new FileInfo(committed).Length;
                Assert.True(File.ReadAllBytes(committed).AsSpan().SequenceEqual(File.ReadAllBytes(Path.Combine(dir, name))),
                    $"{committed} differs from the generator's output; regenerate with: dotnet run --project tools/ModelGen -c Release -- planted {Path.GetRelativePath(Path.GetDirectoryName(models.Root)!, models.Folder(flavour))} --flavour {(flavour == LlamaOnnxFlavour.GenAiGqa ? "genai-gqa" : "decomposed")} --force");
            }
            Assert.Throws<OnnxOutlierTools.IO.OutputExistsException>(() => PlantedModelFolder.Write(dir, flavour, planted, truth, Stories260K.TokenizerPath, overwrite: false));
        }
        output.WriteLine($"committed planted folders: {total:N0} bytes");
        Assert.True(total < 4 << 20, $"{total} bytes committed");
    }

    [Theory]
    [InlineData(LlamaOnnxFlavour.Decomposed)]
    [InlineData(LlamaOnnxFlavour.GenAiGqa)]
    public void GroundTruth_HoldsOnOnnxRuntime(LlamaOnnxFlavour flavour)
    {
        var truth = models.Truth(flavour);
        var c = models.Planted.Config;
        using var temp = new TempFolder("planted-ort");
        using var probe = new PlantedOrtProbe(Path.Combine(models.Folder(flavour), "model.onnx"), temp, c);
        var windows = models.Windows.Take(2).ToArray(); // 512 tokens
        var run = probe.Run(windows);

        // Logits: ORT vs the float64 reference.
        double logitDiff = 0;
        for (int w = 0; w < windows.Length; w++) logitDiff = Math.Max(logitDiff, MaxAbs(new DecoderTrace(models.Planted).Run(windows[w]).Logits, run.Logits[w]));
        output.WriteLine($"{flavour}: ORT vs float64 max |logit diff| {logitDiff:E2}");
        Assert.True(logitDiff < 1e-4, $"logits differ by {logitDiff}");

        // (a) Massive activation: born at block 1's down input on position 0, carried by blocks 1..4.
        var ma = truth.MassiveActivation;
        Assert.Equal(("ffn.down.input", 1, 0), (ma.BirthPoint, ma.Block, ma.TokenPosition));
        for (int w = 0; w < windows.Length; w++)
        {
            var y6 = run.Row($"block{ma.Block}.down_in", w, 0);
            foreach (var birth in ma.AtBirth) Assert.Equal(birth.Value, y6[birth.Neuron], birth.Value * 1e-4);
            foreach (var carried in ma.Carried)
                Assert.Equal(carried.Value, run.Row($"block{carried.Block}.out", w, 0)[carried.Channel], Math.Abs(carried.Value) * 1e-4);
            Assert.All(run.Row($"block{ma.Block - 1}.out", w, 0).Where((_, j) => ma.Channels.Contains(j)), v => Assert.Equal(0, v));
        }

        // Nothing else meets the Sun et al. rule: every token, every block output and down input.
        var found = new List<(int Block, string Point, int Position, int Index)>();
        for (int w = 0; w < windows.Length; w++)
            for (int l = 0; l < c.Layers; l++)
                for (int t = 0; t < windows[w].Length; t++)
                    foreach (var (point, key) in new[] { ("out", $"block{l}.out"), ("down", $"block{l}.down_in") })
                    {
                        var x = run.Row(key, w, t);
                        double median = PlantedMeasurement.MedianAbs(x);
                        for (int j = 0; j < x.Length; j++)
                            if (Math.Abs(x[j]) > 100 && Math.Abs(x[j]) >= 1000 * median) found.Add((l, point, t, j));
                    }
        var expected = new List<(int, string, int, int)>();
        foreach (var n in ma.Neurons) expected.Add((ma.Block, "down", 0, n));
        for (int l = ma.Block; l < c.Layers; l++) foreach (int ch in ma.Channels) expected.Add((l, "out", 0, ch));
        Assert.Equal(expected.Order().ToArray(), found.Distinct().Order().ToArray());
        Assert.Equal(expected.Count * windows.Length, found.Count);

        // (b) Gain-channel outliers at block 2's FFN-norm output on every token but BOS.
        var co = truth.ChannelOutliers;
        var channelMax = new double[c.Dim];
        for (int w = 0; w < windows.Length; w++)
            for (int t = 0; t < windows[w].Length; t++)
            {
                var y = run.Row($"block{co.Block}.ffn_norm_out", w, t);
                for (int j = 0; j < c.Dim; j++) channelMax[j] = Math.Max(channelMax[j], Math.Abs(y[j]));
            }
        double medianMax = channelMax.Take(truth.Model.OriginalDim).Order().Skip(31).Take(2).Average();
        foreach (var g in co.Measured)
        {
            double ratio = channelMax[g.Channel] / medianMax;
            output.WriteLine($"{flavour}: gain channel {g.Channel}: max {channelMax[g.Channel]:F2}, {ratio:F1}x the median channel (recorded {g.RatioToMedianChannelMax})");
            Assert.True(ratio > 20, $"channel {g.Channel} only {ratio:F1}x");
        }
        Assert.True(Enumerable.Range(0, c.Dim).Where(j => !co.Channels.Contains(j)).All(j => channelMax[j] / medianMax < 5));

        // (c) Attention sink.
        var sink = truth.AttentionSink;
        double sum = 0;
        int count = 0;
        for (int w = 0; w < windows.Length; w++)
            for (int t = 1; t < windows[w].Length; t++) { sum += run.Probabilities[sink.Block][w][sink.Head][t][0]; count++; }
        output.WriteLine($"{flavour}: sink block {sink.Block} head {sink.Head}: mean mass on position 0 {sum / count:F4} (recorded {sink.MeanMassOnPosition0})");
        Assert.True(sum / count > 0.9);
        Assert.Equal(sink.MeanMassOnPosition0, sum / count, 0.01);
        for (int l = 0; l < c.Layers; l++)
            for (int h = 0; h < c.Heads; h++)
                if ((l, h) != (sink.Block, sink.Head))
                    Assert.True(windows.Select((_, w) => run.Probabilities[l][w][h].Skip(1).Average(p => p[0])).Max() < 0.5, $"block {l} head {h} is also a sink");
    }

    [Fact]
    public void BothFlavours_AgreeOnOnnxRuntime()
    {
        var window = models.Windows[3];
        using var decomposed = new OnnxOutlierTools.Runtime.KvCacheDecoder(Path.Combine(models.Folder(LlamaOnnxFlavour.Decomposed), "model.onnx"), OnnxOutlierTools.Runtime.SessionSettings.CpuUnoptimized);
        using var genai = new OnnxOutlierTools.Runtime.KvCacheDecoder(Path.Combine(models.Folder(LlamaOnnxFlavour.GenAiGqa), "model.onnx"), OnnxOutlierTools.Runtime.SessionSettings.CpuUnoptimized);
        double diff = Diff.MaxAbs(decomposed.Run(window).Logits, genai.Run(window).Logits);
        output.WriteLine($"decomposed vs genai on ORT: max |logit diff| {diff:E2}");
        Assert.True(diff < 1e-4, $"flavours differ by {diff}");
    }

    [Fact]
    public void Perplexity_OnOnnxRuntime_MatchesTheRecordedValuesWithinTheBound()
    {
        var truth = models.Truth(LlamaOnnxFlavour.Decomposed);
        var ppl = truth.Perplexity;
        Assert.True(ppl.RelativeChange <= 0.05, $"recorded change {ppl.RelativeChange}");
        var windows = models.Windows.Take(ppl.Windows).ToArray();
        using var temp = new TempFolder("planted-ppl");
        string original = temp.Path("original.onnx");
        using (var model = LlamaOnnxBuilder.Build(models.Original))
            OnnxOutlierTools.IO.ModelWriter.Save(model, original, new OnnxOutlierTools.IO.SaveOptions { Layout = OnnxOutlierTools.IO.TensorLayout.External, Durable = false });
        double before = OrtPerplexity(original, windows, out int scored);
        Assert.Equal(ppl.ScoredTokens, scored);
        Assert.Equal(ppl.Before, before, ppl.Before * 1e-4);
        foreach (var flavour in Flavours)
        {
            double after = OrtPerplexity(Path.Combine(models.Folder(flavour), "model.onnx"), windows, out _);
            output.WriteLine($"{flavour}: ORT perplexity {before:F5} -> {after:F5} ({(after / before - 1) * 100:+0.00}%); recorded {ppl.Before} -> {models.Truth(flavour).Perplexity.After}");
            Assert.Equal(models.Truth(flavour).Perplexity.After, after, after * 1e-4);
            Assert.True(after / before - 1 <= 0.05);
        }
    }

    private static double OrtPerplexity(string path, int[][] windows, out int scored)
    {
        using var decoder = new OnnxOutlierTools.Runtime.KvCacheDecoder(path, OnnxOutlierTools.Runtime.SessionSettings.CpuUnoptimized);
        double sum = 0;
        scored = 0;
        foreach (var window in windows)
        {
            var logits = decoder.Run(window).Logits;
            for (int t = 0; t + 1 < window.Length; t++)
            {
                sum += DecoderTrace.NegativeLogLikelihood(Array.ConvertAll(logits[t], f => (double)f), window[t + 1]);
                scored++;
            }
        }
        return Math.Exp(sum / scored);
    }
}
