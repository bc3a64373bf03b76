using OnnxOutlierTools.Probes;
using OnnxOutlierTools.Runtime;

namespace OnnxOutlierTools.Tests.Probes;

/// <summary>In-graph statistics equal the float64 host statistics of the full tensors (dumped by the same run).</summary>
public sealed class ProbeStatisticsTests
{
    private static readonly ProbeSettings Settings = new() { TopK = 16, AttentionPositions = 4, AboveThreshold = 0.5f };

    [Fact]
    public void TinyLlama_EveryStatistic_MatchesHostFloat64()
    {
        using var temp = new TempFolder("probe-tiny");
        var inputs = new InputSynthesisOptions { IdUpperBound = 256, Dims = new Dictionary<string, long> { ["batch_size"] = 2, ["sequence_length"] = 7 } };
        var run = ProbeHarness.ProbeAndRun(Path.Combine(RepoRoot, "onnx-models", "tiny-llama", "model.onnx"), temp, inputs, Settings);

        Assert.Equal(15, run.Manifest.Points.Count);
        Assert.Equal(2, run.Result.Count("attention"));
        foreach (var point in run.Manifest.Points.Where(p => p.Kind != ProbeKind.AttentionProbabilities))
            HostStatistics.AssertActivation(run, point, Settings);
        foreach (var point in run.Manifest.Points.Where(p => p.Kind == ProbeKind.AttentionProbabilities))
        {
            Assert.Equal("softmax", point.Source);
            var p = run[point.Tensor];
            var d = p.Dims.Select(v => (int)v).ToArray();
            var expected = HostStatistics.MassFromProbabilities(p.ToDoubleArray(), d[0], d[1], d[2], d[3], Settings.AttentionPositions);
            HostStatistics.AssertClose(expected, HostStatistics.Floats(run, point, ProbeStatistic.AttentionMass), 1e-5, point.Id);
            Assert.Equal([2L, 4L, 4L], run[point.Outputs[ProbeStatistic.AttentionMass]].Dims);
        }

        // The probed model (without the dumps) read as the calibration runner reads it: ProbeOutputDecoder.Merge.
        var merged = ProbeHarness.Merge(run, batch: 2, sequence: 7);
        Assert.Equal(15, merged.Points.Count);
        var down = run.Manifest["block1.down-input"]!;
        var statistics = merged["block1.down-input"]!;
        Assert.Equal(14, statistics.Tokens);
        Assert.Equal(176, statistics.Channels);
        Assert.Equal(HostStatistics.Floats(run, down, ProbeStatistic.ChannelMax).Select(v => (double)v), statistics.ChannelMax);
        var top = run[down.Outputs[ProbeStatistic.TopKIndex]].ToInt64Array()[0];
        Assert.Equal((int)(top % 176), statistics.Top[0].Channel);
        Assert.Equal((int)(top / 176 % 7), statistics.Top[0].Token.Position);
        Assert.Equal(14L, merged["block0.attention"]!.AttentionQueries);
    }

    internal static string RepoRoot
    {
        get
        {
            for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
                if (File.Exists(Path.Combine(dir.FullName, "OnnxOutlierTools.sln"))) return dir.FullName;
            throw new InvalidOperationException("repository root not found");
        }
    }
}
