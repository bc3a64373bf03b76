using OnnxOutlierTools.Probes;

namespace OnnxOutlierTools.Analysis;

/// <summary>Channel-wise outliers (SCIENCE.md 1): channels whose max |x| over all tokens is far above the median channel's,
/// classified by their kurtosis as persistent (large on many tokens) or token-specific (a max that few tokens reach).</summary>
internal static class ChannelOutlierFinder
{
    public static IReadOnlyList<ChannelOutlier> Find(AnalysisContext context)
    {
        var findings = new List<ChannelOutlier>();
        foreach (var point in context.Points.Where(p => AnalysisContext.IsAny(p, context.Settings.ChannelKinds)))
        {
            var stats = context.Stats(point);
            if (stats.AttentionMass is not null || stats.Tokens == 0) continue;
            var all = Outliers(context, point, stats);
            if (all is null) { context.Note(NoteKind.Info, point.Id, "the median channel's max |x| is 0: channel ratios undefined, point skipped"); continue; }
            findings.AddRange(all.Take(context.Settings.MaxChannelOutliersPerPoint));
            if (all.Count > context.Settings.MaxChannelOutliersPerPoint)
                context.Note(NoteKind.Info, point.Id, $"{all.Count} channel-wise outliers; the {context.Settings.MaxChannelOutliersPerPoint} largest are listed");
        }
        return findings;
    }

    /// <summary>The median over channels of the channel max |x| (channels never seen are left out).</summary>
    internal static double MedianChannelMax(PointStatistics stats) =>
        Selection.Median(Enumerable.Range(0, stats.Channels).Select(stats.ChannelAbsMax).Where(double.IsFinite));

    /// <summary>Every outlier of one point, largest ratio first; null when the median channel max is 0.</summary>
    internal static List<ChannelOutlier>? Outliers(AnalysisContext context, ProbePoint point, PointStatistics stats)
    {
        var s = context.Settings;
        double median = MedianChannelMax(stats);
        if (!(median > 0)) return null;
        var list = new List<ChannelOutlier>();
        for (int c = 0; c < stats.Channels; c++)
        {
            double max = stats.ChannelAbsMax(c);
            if (!double.IsFinite(max) || max / median < s.ChannelRatio) continue;
            double fraction = stats.Tokens > 0 ? (double)stats.ChannelAboveCount[c] / stats.Tokens : 0;
            double kurtosis = stats.ChannelKurtosis(c);
            bool persistent = kurtosis <= s.PersistentMaxKurtosis;
            list.Add(new ChannelOutlier
            {
                Point = AnalysisContext.Ref(point),
                Channel = c,
                MaxAbs = max,
                MedianChannelMaxAbs = median,
                Ratio = max / median,
                FractionAbove = fraction,
                Kurtosis = double.IsFinite(kurtosis) ? kurtosis : 0,
                Mean = stats.ChannelMean(c),
                Rms = Math.Sqrt(stats.ChannelSumSquares[c] / stats.Tokens),
                Kind = persistent ? ChannelOutlierKind.Persistent : ChannelOutlierKind.TokenSpecific,
                ReadBy = point.ReadBy,
            });
        }
        list.Sort((a, b) => b.Ratio.CompareTo(a.Ratio));
        return list;
    }
}
