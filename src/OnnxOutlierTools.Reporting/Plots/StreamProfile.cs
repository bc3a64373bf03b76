using OnnxOutlierTools.Probes;

namespace OnnxOutlierTools.Reporting.Plots;

/// <summary>One residual-stream point of the massive-activation plot: where it sits on the block axis, its three largest
/// |x| and its median |x| (the median over tokens of each token's median |x|). Sun et al. plot the top-3 magnitudes of one
/// sequence's hidden state; over a corpus of windows that all start with BOS the global top-k list repeats the same site
/// (position 0, one channel) once per window, so the top-3 here are the largest of distinct (position, channel) sites,
/// filled from the plain list where the kept entries hold fewer than three.</summary>
internal sealed record StreamSample(ProbePoint Point, double X, IReadOnlyList<double> Top, double Median);

internal static class StreamProfile
{
    /// <summary>The x of a point on the block axis: the embedding at -1, block b's points at b (several residual sums of
    /// one block, as in a post-norm block, spread around b in graph order).</summary>
    public static IReadOnlyList<StreamSample> Of(CalibrationStatistics statistics, ProbeKind kind)
    {
        var points = statistics.Manifest.Points
            .Where(p => p.Kind == kind || p.Kind == ProbeKind.Embedding)
            .Where(p => statistics[p.Id] is { Tokens: > 0 })
            .ToList();
        if (!points.Any(p => p.Kind == kind)) return [];
        var samples = new List<StreamSample>();
        foreach (var group in points.GroupBy(p => p.Block ?? -1))
        {
            var inBlock = group.ToList();
            for (int j = 0; j < inBlock.Count; j++)
            {
                var point = inBlock[j];
                double x = point.Kind == ProbeKind.Embedding ? -1 : group.Key + (inBlock.Count > 1 ? (j - (inBlock.Count - 1) / 2.0) * 0.5 / inBlock.Count : 0);
                var stats = statistics[point.Id]!;
                samples.Add(new StreamSample(point, x, TopThree(stats), stats.TokenMedianAbs.Median));
            }
        }
        return samples.OrderBy(s => s.X).ToList();
    }

    public static IReadOnlyList<double> TopThree(PointStatistics stats)
    {
        var distinct = stats.Top.DistinctBy(e => (e.Token.Position, e.Channel)).Take(3).ToList();
        var fill = stats.Top.Where(e => !distinct.Contains(e)).Take(3 - distinct.Count);
        return distinct.Concat(fill).Select(e => e.Abs).OrderDescending().ToList();
    }

    public static string BlockLabel(double x) => x switch
    {
        -1 => "emb",
        _ when x == Math.Round(x) && x >= 0 => ((int)x).ToString(System.Globalization.CultureInfo.InvariantCulture),
        _ => "",
    };
}
