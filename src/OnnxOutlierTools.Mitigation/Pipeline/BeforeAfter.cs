using OnnxOutlierTools.Probes;

namespace OnnxOutlierTools.Mitigation.Pipeline;

/// <summary>One probe point's outlier figures before and after a mitigation: max |x| over every channel and token, and the
/// worst channel ratio (the largest channel max |x| over the median channel's), the quantity a per-tensor int8 scale
/// suffers from.</summary>
public sealed record PointChange(string Point, ProbeKind Kind, int? Block, double MaxAbsBefore, double MaxAbsAfter, double ChannelRatioBefore, double ChannelRatioAfter);

public static class BeforeAfter
{
    /// <summary>Points present in both runs (by id), activation points only, in the order of the first run.</summary>
    public static IReadOnlyList<PointChange> Compare(CalibrationStatistics before, CalibrationStatistics after)
    {
        var list = new List<PointChange>();
        foreach (var point in before.Manifest.Points)
        {
            if (point.Kind == ProbeKind.AttentionProbabilities) continue;
            if (before[point.Id] is not { Tokens: > 0 } b || after[point.Id] is not { Tokens: > 0 } a || a.Channels != b.Channels) continue;
            list.Add(new PointChange(point.Id, point.Kind, point.Block, MaxAbs(b), MaxAbs(a), ChannelRatio(b), ChannelRatio(a)));
        }
        return list;
    }

    public static double MaxAbs(PointStatistics p)
    {
        double max = 0;
        for (int c = 0; c < p.Channels; c++) max = Math.Max(max, p.ChannelAbsMax(c));
        return max;
    }

    /// <summary>max over channels of max |x_c| divided by the median over channels of max |x_c|.</summary>
    public static double ChannelRatio(PointStatistics p)
    {
        var maxima = Enumerable.Range(0, p.Channels).Select(p.ChannelAbsMax).Where(double.IsFinite).Order().ToArray();
        if (maxima.Length == 0) return double.NaN;
        double median = maxima[maxima.Length / 2];
        return median > 0 ? maxima[^1] / median : double.PositiveInfinity;
    }
}
