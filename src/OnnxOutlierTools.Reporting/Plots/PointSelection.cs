using OnnxOutlierTools.Probes;

namespace OnnxOutlierTools.Reporting.Plots;

/// <summary>The probe points whose per-channel picture a reader needs first: the residual-stream point with the largest
/// |x| (where a massive activation is largest), the linear input whose top channel stands furthest above the median
/// channel (the worst channel-wise outlier, what breaks per-tensor activation scales), and the down-projection input with
/// the largest |x| (where massive activations are born).</summary>
internal static class PointSelection
{
    private static readonly ProbeKind[] Stream = [ProbeKind.Embedding, ProbeKind.Residual, ProbeKind.ResidualSum];
    private static readonly ProbeKind[] LinearInputs = [ProbeKind.AttentionInput, ProbeKind.FfnInput, ProbeKind.OutputProjectionInput, ProbeKind.DownInput];

    public static IReadOnlyList<(ProbePoint Point, string Why)> WorstPoints(CalibrationStatistics statistics)
    {
        var seen = statistics.Manifest.Points.Where(p => statistics[p.Id] is { Tokens: > 0, Channels: > 0 } s && s.Top.Count > 0).ToList();
        var picks = new List<(ProbePoint, string)>();
        void Add(ProbePoint? point, string why)
        {
            if (point is not null && !picks.Any(p => p.Item1.Id == point.Id)) picks.Add((point, why));
        }
        Add(seen.Where(p => Stream.Contains(p.Kind)).MaxBy(p => statistics[p.Id]!.Top[0].Abs), "largest |x| of the residual stream");
        Add(seen.Where(p => LinearInputs.Contains(p.Kind)).MaxBy(p => ChannelRatio(statistics[p.Id]!)), "largest channel max / median channel max among linear inputs");
        Add(seen.Where(p => p.Kind == ProbeKind.DownInput).MaxBy(p => statistics[p.Id]!.Top[0].Abs), "largest |x| among down-projection inputs");
        return picks;
    }

    /// <summary>Per-channel max |x| (NaN for a channel never seen).</summary>
    public static double[] ChannelAbsMax(PointStatistics stats) =>
        Enumerable.Range(0, stats.Channels).Select(c => stats.ChannelAbsMax(c)).Select(v => double.IsFinite(v) ? v : double.NaN).ToArray();

    public static double Median(IEnumerable<double> values)
    {
        var sorted = values.Where(double.IsFinite).Order().ToArray();
        return sorted.Length == 0 ? double.NaN : sorted[sorted.Length / 2];
    }

    private static double ChannelRatio(PointStatistics stats)
    {
        var max = ChannelAbsMax(stats);
        double median = Median(max);
        double top = max.Where(double.IsFinite).DefaultIfEmpty(0).Max();
        return median > 0 ? top / median : top > 0 ? double.PositiveInfinity : 0;
    }
}
