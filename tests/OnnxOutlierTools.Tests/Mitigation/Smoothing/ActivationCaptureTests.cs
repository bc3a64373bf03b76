using System.Text.Json;
using OnnxOutlierTools.Calibration;
using OnnxOutlierTools.Calibration.Text;
using OnnxOutlierTools.IO;
using OnnxOutlierTools.Mitigation.Smoothing;
using OnnxOutlierTools.Runtime;
using OnnxOutlierTools.Structure.Recognition;
using OnnxOutlierTools.Structure.Roles;
using Xunit.Abstractions;

namespace OnnxOutlierTools.Tests.Mitigation.Smoothing;

/// <summary>Activation capture on the planted models run by ONNX Runtime: a norm's captured input and output agree with a
/// float64 RMSNorm of the same rows (the rows are the same tokens, in place), the bounds hold, the model is left as it was; and
/// the alpha search on the captured gate/up input of the planted block.</summary>
public sealed class ActivationCaptureTests(ITestOutputHelper output)
{
    private static string Repo(params string[] parts) => RepositoryFiles.Path(parts);

    private static IReadOnlyList<int[]> Windows(string modelPath, int seqLen, int maxTokens) =>
        CalibrationInputs.Prepare(new CalibrationRequest(modelPath, Fixtures.Path("text", "tinystories-sample.txt"), null, null, seqLen, maxTokens, BosMode.Auto, false))
            .Corpus.Windows.Select(w => w.Ids).ToArray();

    private static ActivationCaptureOptions Cpu(int rows) => new() { MaxRowsPerTensor = rows, Session = new SessionSettings { Device = ExecutionDevice.Cpu } };

    /// <param name="block">The block whose FFN norm is captured; -1: the final norm (in the genai layout a
    /// SkipSimplifiedLayerNormalization whose residual sum, output 3, the model does not emit).</param>
    [Theory]
    [InlineData("planted-llama-decomposed", 2)]
    [InlineData("planted-llama-genai", 2)]
    [InlineData("planted-llama-genai", -1)]
    public void Capture_NormInputAndOutput_AgreeWithAFloat64RmsNorm(string folder, int block)
    {
        string path = Repo("onnx-models", folder, "model.onnx");
        using var model = ModelReader.Load(path);
        var structure = StructureRecognizer.Recognize(model).Structure!;
        var norm = block >= 0 ? structure.Blocks[block].FfnNorm! : structure.FinalNorm!;
        // A fused skip norm normalizes input + skip, its residual sum (materialized when the model does not emit it).
        var normalized = norm.ResidualSum ?? norm.Input;
        if (block < 0) Assert.False(normalized.IsEmitted);
        int outputsBefore = model.Graph.Outputs.Count, nodesBefore = model.Graph.Nodes.Count;
        var windows = Windows(path, 128, 256);
        var captured = ActivationCapture.Capture(model, [normalized, TensorRef.Of(norm.Output)], windows, Cpu(100));

        Assert.Equal(outputsBefore, model.Graph.Outputs.Count);
        Assert.Equal(nodesBefore, model.Graph.Nodes.Count);
        var (x, y) = (captured[0], captured[1]);
        Assert.Equal(100, x.RowCount);
        Assert.Equal(256, x.TokensSeen);
        Assert.Equal(x.TokenIndices, y.TokenIndices);
        Assert.True(x.TokenIndices.Zip(x.TokenIndices.Skip(1)).All(p => p.First < p.Second));
        Assert.All(x.TokenIndices, t => Assert.InRange(t, 0, 255));

        var gain = norm.Gain.ConstValue!.ToSingleArray();
        double eps = norm.Epsilon!.Value, worst = 0, scale = 0;
        for (int r = 0; r < x.RowCount; r++)
        {
            var row = x.Row(r);
            double meanSquare = 0;
            foreach (float v in row) meanSquare += (double)v * v;
            meanSquare /= row.Length;
            for (int c = 0; c < row.Length; c++)
            {
                double expected = row[c] / Math.Sqrt(meanSquare + eps) * gain[c];
                worst = Math.Max(worst, Math.Abs(expected - y.Row(r)[c]));
                scale = Math.Max(scale, Math.Abs(expected));
            }
        }
        Assert.True(worst <= 1e-5 * scale, $"captured norm output differs from RMSNorm of the captured input by {worst} (scale {scale})");
        // The exact maxima cover the sampled rows, and see the planted gain-caused outliers (channels 21 and 50) on top.
        for (int c = 0; c < y.Channels; c++)
            Assert.True(y.ChannelAbsMax[c] >= Enumerable.Range(0, y.RowCount).Max(r => Math.Abs(y.Row(r)[c])));
        if (block != 2) return;
        var top = y.ChannelAbsMax.Select((m, c) => (m, c)).OrderByDescending(p => p.m).Take(2).Select(p => p.c).Order();
        Assert.Equal([21, 50], top);
    }

    [Fact]
    public void Capture_AllTokensBelowTheCap_AndBoundedByBytes()
    {
        string path = Repo("onnx-models", "planted-llama-decomposed", "model.onnx");
        using var model = ModelReader.Load(path);
        var structure = StructureRecognizer.Recognize(model).Structure!;
        var down = structure.Blocks[1].Ffn!.DownInput;
        var windows = Windows(path, 64, 128);
        var all = ActivationCapture.Capture(model, [down.Name], windows, Cpu(10_000))[0];
        Assert.Equal(128, all.RowCount);
        Assert.Equal(Enumerable.Range(0, 128), all.TokenIndices);
        // The planted massive activation is born here on BOS (position 0 of each window): neurons 172, 173 = 600, 450.
        Assert.Equal(600, all.ChannelAbsMax[172], 1.0);
        Assert.Equal(600, all.Row(0)[172], 1.0);
        var bounded = ActivationCapture.Capture(model, [down.Name], windows, Cpu(10_000) with { MaxTotalBytes = 4 * 174 * 20 })[0];
        Assert.Equal(20, bounded.RowCount);
        Assert.Equal(all.ChannelAbsMax, bounded.ChannelAbsMax);
        for (int r = 0; r < bounded.RowCount; r++) Assert.Equal(all.Row(bounded.TokenIndices[r]).ToArray(), bounded.Row(r).ToArray());
        Assert.Contains("no tensor 'nope'", Assert.Throws<CalibrationException>(() => ActivationCapture.Capture(model, ["nope"], windows)).Message);
    }

    [Theory]
    [InlineData(ActivationScheme.PerTokenDynamic)]
    [InlineData(ActivationScheme.PerTensorStatic)]
    public void AlphaSearch_OnThePlantedGainOutliers_ChoosesTheGridMinimum(ActivationScheme scheme)
    {
        string modelDir = Repo("onnx-models", "planted-llama-decomposed"), path = System.IO.Path.Combine(modelDir, "model.onnx");
        using var truth = JsonDocument.Parse(File.ReadAllText(System.IO.Path.Combine(modelDir, "ground-truth.json")));
        int block = truth.RootElement.GetProperty("channelOutliers").GetProperty("block").GetInt32();
        using var model = ModelReader.Load(path);
        var structure = StructureRecognizer.Recognize(model).Structure!;
        var ffn = structure.Blocks[block].Ffn!;
        var x = ActivationCapture.Capture(model, [TensorRef.Of(structure.Blocks[block].FfnNorm!.Output)], Windows(path, 128, 512), Cpu(512))[0];
        var linears = new[] { ffn.Gate!, ffn.Up }.Select(l => new SiteLinear(l.Weight.Name, l.Weight.ConstValue!, l.Layout)).ToArray();
        var result = SmoothAlphaSearch.Search(x, linears, new SmoothAlphaSearchOptions { Scheme = scheme });
        output.WriteLine($"{scheme}: alpha {result.Alpha} error {result.Error:G4} (alpha 0 {result.Errors[0].Error:G4}, unsmoothed {result.UnsmoothedError:G4}), " +
            $"{result.Tokens} tokens x {x.Channels} x {string.Join("+", result.OutputChannels)} columns, {result.MultiplyAdds / 1e6:F1}M MACs, {result.Elapsed.TotalMilliseconds:F0} ms");
        Assert.Equal(21, result.Errors.Count);
        Assert.Equal(result.Errors.Min(e => e.Error), result.Error);
        Assert.Equal(result.Errors.First(e => e.Error == result.Error).Alpha, result.Alpha);
        Assert.True(result.Error < result.UnsmoothedError, $"{result.Error} vs unsmoothed {result.UnsmoothedError}");
    }
}

/// <summary>A one-token step model (GPT-2 with stacked past, input_ids [B, 1]) is captured token by token with its cache fed
/// back: two windows that share a prefix agree there, and a shared token after a different one does not (it would, were the
/// cache not fed).</summary>
public sealed class ActivationCaptureStepTests
{
    [Fact]
    public void Capture_StepModel_FeedsTheCacheBack()
    {
        using var model = ModelReader.Load(Fixtures.Export("gpt2-torch-past", "gpt2_past.onnx"));
        var structure = StructureRecognizer.Recognize(model).Structure!;
        var tensor = structure.Blocks[0].Ffn!.DownInput;
        int[][] windows = [[3, 5, 7, 9], [3, 5, 8, 9]];
        var x = ActivationCapture.Capture(model, [tensor.Name], windows,
            new ActivationCaptureOptions { Session = new SessionSettings { Device = ExecutionDevice.Cpu } })[0];
        Assert.Equal(8, x.RowCount);
        Assert.Equal(x.Row(0).ToArray(), x.Row(4).ToArray());
        Assert.Equal(x.Row(1).ToArray(), x.Row(5).ToArray());
        Assert.NotEqual(x.Row(2).ToArray(), x.Row(6).ToArray());
        Assert.NotEqual(x.Row(3).ToArray(), x.Row(7).ToArray());
    }
}
