using System.Text.Json;
using OnnxOutlierTools.Calibration.Text;
using OnnxOutlierTools.Mitigation.Folding;
using OnnxOutlierTools.Probes;
using OnnxOutlierTools.Runtime;
using Xunit.Abstractions;

namespace OnnxOutlierTools.Tests.Mitigation.Folding;

/// <summary>The planted decoder (stories260K widened, block 2's ffn_norm gain multiplied by 32 at channels 21 and 50 and
/// the gate/up rows divided to compensate): norm-gain folding moves the gain into gate/up, so those channels, 28-33x the
/// median channel at the FFN input before, are ordinary after, measured by probing both models on the same text.</summary>
public sealed class PlantedFoldTests(ITestOutputHelper output)
{
    private static string Repo(params string[] parts) => RepositoryFiles.Path(parts);

    [Fact]
    public void FoldNormGains_PlantedGainOutliers_GoneFromTheFfnInput()
    {
        string folder = Repo("onnx-models", "planted-llama-decomposed");
        string model = Path.Combine(folder, "model.onnx");
        using var truth = JsonDocument.Parse(File.ReadAllText(Path.Combine(folder, "ground-truth.json")));
        var planted = truth.RootElement.GetProperty("channelOutliers");
        int block = planted.GetProperty("block").GetInt32();
        int[] channels = planted.GetProperty("channels").EnumerateArray().Select(c => c.GetInt32()).ToArray();
        var windows = CalibrationInputs.Prepare(new CalibrationRequest(model, Fixtures.Path("text", "tinystories-sample.txt"), null, null, 256, 512,
            BosMode.Auto, IsEncoder: false)).Corpus.Windows.Select(w => w.Ids).ToArray();

        using var temp = new TempFolder("fold-planted");
        var inputs = new InputSynthesisOptions
        {
            IdUpperBound = 512,
            Dims = new Dictionary<string, long> { ["batch_size"] = 1, ["sequence_length"] = 32 },
        };
        var run = FoldKit.Run(model, inputs, s => new NormGainFoldPass(s), temp);
        run.AssertEquivalent(1e-4);
        Assert.All(run.Pass.Outcomes, o => Assert.Equal(FoldOutcome.Exact, o.Outcome));

        string point = $"block{block}.ffn-input";
        var before = FoldKit.Calibrate(model, windows)[point]!;
        var after = FoldKit.Calibrate(run.Output, windows)[point]!;
        foreach (int c in channels)
        {
            output.WriteLine($"channel {c}: ratio to the median channel {Ratio(before, c):F2} before, {Ratio(after, c):F2} after");
            Assert.True(Ratio(before, c) > 20, $"channel {c} should be a planted outlier before the fold ({Ratio(before, c):F2})");
            Assert.True(Ratio(after, c) < 4, $"channel {c} should be ordinary after the fold ({Ratio(after, c):F2})");
        }
        double worstBefore = Enumerable.Range(0, before.Channels).Max(c => Ratio(before, c));
        double worstAfter = Enumerable.Range(0, after.Channels).Max(c => Ratio(after, c));
        output.WriteLine($"{point}: max channel ratio {worstBefore:F2} before, {worstAfter:F2} after");
        Assert.True(worstAfter < worstBefore / 4, $"max channel ratio {worstBefore:F2} -> {worstAfter:F2}");
    }

    /// <summary>A channel's max |x| over the median channel's.</summary>
    private static double Ratio(PointStatistics point, int channel)
    {
        var maxima = Enumerable.Range(0, point.Channels).Select(point.ChannelAbsMax).Order().ToArray();
        return point.ChannelAbsMax(channel) / maxima[maxima.Length / 2];
    }
}
