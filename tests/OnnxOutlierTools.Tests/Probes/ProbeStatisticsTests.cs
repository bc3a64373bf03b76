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
